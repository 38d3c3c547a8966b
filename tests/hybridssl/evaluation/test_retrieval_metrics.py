from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from hybridssl.evaluation.retrieval import (
    bidirectional_retrieval,
    chance_recall_at_k,
    first_correct_ranks,
    retrieval_metrics,
)


def reference_ranks(queries, gallery, qkeys, gkeys):
    """Slow reference: sort the gallery per query by similarity, incorrect before correct on ties."""
    ranks = []
    for qi in range(len(qkeys)):
        q = queries[qi] / np.linalg.norm(queries[qi])
        items = []
        for gi in range(len(gkeys)):
            g = gallery[gi] / np.linalg.norm(gallery[gi])
            sim = float(sum(q[d] * g[d] for d in range(len(q))))
            correct = gkeys[gi] == qkeys[qi]
            items.append((-sim, 1 if correct else 0, gi))  # ties: incorrect (0) sorted first
        items.sort()
        ranks.append(next(pos + 1 for pos, (_, c, _) in enumerate(items) if c == 1))
    return np.array(ranks)


# Gallery (2-D):  g0=(1,0) "a", g1=(0,1) "b", g2=(-1,0) "c", g3=(1,1)/sqrt2 "a" (duplicate key "a").
GALLERY = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 1.0]])
GKEYS = ["a", "b", "c", "a"]
# q0=(1,0) "a": sims (1, 0, -1, .71); best correct g0=1; no incorrect >= 1            -> rank 1
# q1=(0,1) "c": sims (0, 1, 0, .71); best correct g2=0; incorrect >= 0: g0 (tie), g1, g3 -> rank 4
# q2=(0,1) "a": sims (0, 1, 0, .71); best correct g3=.71; incorrect >= .71: g1        -> rank 2
QUERIES = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])  # not normalised on purpose
QKEYS = ["a", "c", "a"]


def test_hand_computed_ranks_and_metrics():
    ranks, m = first_correct_ranks(QUERIES, GALLERY, QKEYS, GKEYS)
    np.testing.assert_array_equal(ranks, [1, 4, 2])
    np.testing.assert_array_equal(m, [2, 1, 2])
    out = retrieval_metrics(QUERIES, GALLERY, QKEYS, GKEYS, ks=(1, 2, 3))
    assert out["R@1"] == pytest.approx(100 / 3)
    assert out["R@2"] == pytest.approx(200 / 3)
    assert out["R@3"] == pytest.approx(200 / 3)
    assert out["median_rank"] == 2.0
    assert out["mean_rank"] == pytest.approx(7 / 3)
    assert out["n_queries"] == 3
    # chance R@1: m=2 -> 1 - C(2,1)/C(4,1) = 1/2; m=1 -> 1 - 3/4 = 1/4
    assert out["chance_R@1"] == pytest.approx(100 * (0.5 + 0.25 + 0.5) / 3)
    # chance R@2: m=2 -> 1 - C(2,2)/C(4,2) = 5/6; m=1 -> 1 - C(3,2)/C(4,2) = 1/2
    assert out["chance_R@2"] == pytest.approx(100 * (5 / 6 + 0.5 + 5 / 6) / 3)
    # expected first-hit rank (G+1)/(m+1): 5/3, 5/2, 5/3
    assert out["chance_median_rank"] == pytest.approx(5 / 3)
    assert out["chance_mean_rank"] == pytest.approx(35 / 18)


def test_pessimistic_ties_constructed():
    # Query (1,0) key "x"; the correct item ties with two incorrect items, one incorrect is worse.
    gallery = np.array([[1.0, 0.0], [2.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    gkeys = ["y", "x", "z", "w"]
    ranks, _ = first_correct_ranks(np.array([[1.0, 0.0]]), gallery, ["x"], gkeys)
    assert ranks.tolist() == [3]  # both tying incorrect items rank ahead of the correct one
    # A collapsed model (all embeddings identical) gets the worst possible rank G - m + 1.
    keys = ["a", "a", "b", "c", "d"]
    same = np.ones((5, 3))
    ranks, m = first_correct_ranks(same, same, keys, keys)
    np.testing.assert_array_equal(ranks, 5 - m + 1)
    out = retrieval_metrics(same, same, keys, keys, ks=(1,))
    assert out["R@1"] == 0.0


def test_duplicate_keys_any_correct_item_counts():
    gallery = np.array([[0.0, 1.0], [1.0, 0.0], [0.7, 0.7], [1.0, 0.1]])
    gkeys = ["a", "b", "c", "a"]  # the second "a" (index 3) is the nearest to the query
    ranks, m = first_correct_ranks(np.array([[1.0, 0.05]]), gallery, ["a"], gkeys)
    assert ranks.tolist() == [1] and m.tolist() == [2]


@pytest.mark.parametrize("chunk", [1, 3, 256])
def test_matches_reference_with_ties_and_duplicates(chunk):
    rng = np.random.default_rng(0)
    # Gallery rows in {-1, 0, 1}^3 and queries +-e_i: every cosine is exactly one normalised
    # component, so many exact ties occur and both implementations see the same float values.
    gallery = rng.integers(-1, 2, size=(23, 3)).astype(float)
    gallery[np.all(gallery == 0, axis=1)] = [1.0, 0.0, 0.0]
    gkeys = [f"k{i}" for i in rng.integers(0, 9, size=23)]
    qkeys = [gkeys[i] for i in rng.integers(0, 23, size=17)]
    queries = np.eye(3)[rng.integers(0, 3, size=17)] * rng.choice([-1.0, 1.0], size=(17, 1))
    ref = reference_ranks(queries, gallery, qkeys, gkeys)
    ranks, _ = first_correct_ranks(queries, gallery, qkeys, gkeys, chunk_size=chunk)
    np.testing.assert_array_equal(ranks, ref)
    out = retrieval_metrics(queries, gallery, qkeys, gkeys, ks=(1, 5), chunk_size=chunk)
    assert out["R@1"] == pytest.approx(100 * np.mean(ref <= 1))
    assert out["R@5"] == pytest.approx(100 * np.mean(ref <= 5))
    assert out["median_rank"] == pytest.approx(np.median(ref))
    assert out["mean_rank"] == pytest.approx(np.mean(ref))


@pytest.mark.parametrize("chunk", [2, 256])
def test_matches_reference_continuous(chunk):
    rng = np.random.default_rng(4)
    gallery, queries = rng.normal(size=(30, 5)), rng.normal(size=(21, 5))
    gkeys = [f"k{i}" for i in rng.integers(0, 12, size=30)]
    qkeys = [gkeys[i] for i in rng.integers(0, 30, size=21)]
    ranks, m = first_correct_ranks(queries, gallery, qkeys, gkeys, chunk_size=chunk)
    np.testing.assert_array_equal(ranks, reference_ranks(queries, gallery, qkeys, gkeys))
    np.testing.assert_array_equal(m, [gkeys.count(k) for k in qkeys])


def test_perfect_embeddings_give_r1_100():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(50, 16))
    b = a + 1e-3 * rng.normal(size=a.shape)
    keys = [str(i) for i in range(50)]
    out = bidirectional_retrieval(a, b, keys, ("image", "text"))
    assert set(out) == {"image->text", "text->image"}
    for d in out.values():
        assert d["R@1"] == 100.0 and d["median_rank"] == 1.0 and d["mean_rank"] == 1.0
        assert d["chance_R@1"] == pytest.approx(100 / 50)
        assert d["chance_R@10"] == pytest.approx(100 * 10 / 50)
        assert d["chance_median_rank"] == pytest.approx(51 / 2)


def test_bidirectional_matches_single_direction_calls():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(12, 4)), rng.normal(size=(12, 4))
    keys = [str(i % 5) for i in range(12)]
    out = bidirectional_retrieval(a, b, keys, ("audio", "text"), ks=(1, 3))
    assert out["audio->text"] == retrieval_metrics(a, b, keys, keys, ks=(1, 3))
    assert out["text->audio"] == retrieval_metrics(b, a, keys, keys, ks=(1, 3))
    assert out["audio->text"] != out["text->audio"]


def test_chance_formula_exact_by_enumerating_permutations():
    g = 6
    for m in (1, 2, 3):
        correct = set(range(m))
        first_hits = [1 + min(perm.index(c) for c in correct) for perm in itertools.permutations(range(g))]
        first_hits = np.array(first_hits)
        for k in (1, 2, 4, 6, 9):
            exact = np.mean(first_hits <= k)
            assert chance_recall_at_k(g, np.array([m]), k)[0] == pytest.approx(exact, abs=1e-12)
            # closed form 1 - C(G-m, K)/C(G, K) (math.comb is 0 when K exceeds the top)
            kk = min(k, g)
            assert exact == pytest.approx(1 - math.comb(g - m, kk) / math.comb(g, kk))
        assert np.mean(first_hits) == pytest.approx((g + 1) / (m + 1))


def test_chance_levels_against_monte_carlo():
    rng = np.random.default_rng(3)
    g, trials = 40, 20000
    gkeys = [f"k{i}" for i in range(30)] + ["dup"] * 4 + ["tri"] * 3 + ["pair"] * 2 + ["solo"]
    qkeys = ["k0", "dup", "tri", "pair", "solo"]
    out = retrieval_metrics(rng.normal(size=(5, 8)), rng.normal(size=(g, 8)), qkeys, gkeys, ks=(1, 5, 10))
    is_correct = np.array([[gk == qk for gk in gkeys] for qk in qkeys])  # (5, G)
    hits = {1: 0.0, 5: 0.0, 10: 0.0}
    mean_rank = 0.0
    for _ in range(trials):
        order = rng.permutation(g)
        first = 1 + np.argmax(is_correct[:, order], axis=1)   # (5,) first correct position
        for k in hits:
            hits[k] += np.mean(first <= k)
        mean_rank += np.mean(first)
    for k in hits:
        assert out[f"chance_R@{k}"] == pytest.approx(100 * hits[k] / trials, abs=1.5)
    assert out["chance_mean_rank"] == pytest.approx(mean_rank / trials, rel=0.03)


@pytest.mark.parametrize(
    "queries, gallery, qkeys, gkeys, match",
    [
        (np.ones(3), np.ones((2, 3)), ["a"], ["a", "b"], "2-D"),
        (np.ones((1, 3)), np.ones((2, 4)), ["a"], ["a", "b"], "dims differ"),
        (np.ones((0, 3)), np.ones((2, 3)), [], ["a", "b"], "empty"),
        (np.ones((1, 3)), np.ones((0, 3)), ["a"], [], "empty"),
        (np.array([[np.nan, 1.0]]), np.ones((2, 2)), ["a"], ["a", "b"], "non-finite"),
        (np.ones((1, 2)), np.array([[np.inf, 1.0], [1.0, 1.0]]), ["a"], ["a", "b"], "non-finite"),
        (np.ones((1, 2)), np.ones((2, 2)), ["a", "b"], ["a", "b"], "query_keys"),
        (np.ones((1, 2)), np.ones((2, 2)), ["a"], ["a"], "gallery_keys"),
        (np.ones((1, 2)), np.ones((2, 2)), ["zz"], ["a", "b"], "no correct item"),
        (np.zeros((1, 2)), np.ones((2, 2)), ["a"], ["a", "b"], "all-zero"),
    ],
)
def test_invalid_inputs(queries, gallery, qkeys, gkeys, match):
    with pytest.raises(ValueError, match=match):
        retrieval_metrics(queries, gallery, qkeys, gkeys)


def test_invalid_ks_chunk_and_pairs():
    x = np.eye(3)
    keys = ["a", "b", "c"]
    for ks in [(), (0,), (1.5,), (True,)]:
        with pytest.raises(ValueError, match="ks"):
            retrieval_metrics(x, x, keys, keys, ks=ks)
    with pytest.raises(ValueError, match="chunk_size"):
        retrieval_metrics(x, x, keys, keys, chunk_size=0)
    with pytest.raises(ValueError, match="paired"):
        bidirectional_retrieval(x, np.eye(4, 3), keys, ("a", "b"))
    with pytest.raises(ValueError, match="keys"):
        bidirectional_retrieval(x, x, keys[:2], ("a", "b"))
    with pytest.raises(ValueError, match="pair"):
        bidirectional_retrieval(x, x, keys, ("a",))
