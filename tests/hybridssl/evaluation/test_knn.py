from __future__ import annotations

import math

import numpy as np
import pytest

from hybridssl.evaluation.knn import knn_classify, knn_predict

# Four 2-D train points and one query q = (1, 0):
#   t0 = (1, 0)  class 0   s0 = cos(q, t0) =  1
#   t1 = (0, 1)  class 1   s1 =  0
#   t2 = (1, 1)  class 1   s2 =  1/√2 ≈ 0.7071   (not unit norm: cosine must normalise)
#   t3 = (-2, 0) class 0   s3 = -1
TRAIN = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-2.0, 0.0]])
LABELS = np.array([0, 1, 1, 0])
QUERY = np.array([[1.0, 0.0]])


def test_hand_computed_votes_tau_1():
    # τ = 1, weights e^s:
    #   k=1: {t0}          → class 0: e^1 = 2.718                       → 0
    #   k=2: {t0, t2}      → class 0: 2.718, class 1: e^0.7071 = 2.028  → 0
    #   k=3: {t0, t2, t1}  → class 0: 2.718, class 1: 2.028 + e^0 = 3.028 → 1
    #   k=4: + t3          → class 0: 2.718 + e^-1 = 3.086, class 1: 3.028 → 0
    assert knn_predict(TRAIN, LABELS, QUERY, k=1, tau=1.0).tolist() == [0]
    assert knn_predict(TRAIN, LABELS, QUERY, k=2, tau=1.0).tolist() == [0]
    assert knn_predict(TRAIN, LABELS, QUERY, k=3, tau=1.0).tolist() == [1]
    assert knn_predict(TRAIN, LABELS, QUERY, k=4, tau=1.0).tolist() == [0]


def test_hand_computed_votes_small_tau():
    # τ = 0.07, k = 3: class 0: e^(1/0.07) = e^14.29 ≈ 1.6e6; class 1: e^10.10 + e^0 ≈ 2.4e4 → 0
    assert knn_predict(TRAIN, LABELS, QUERY, k=3, tau=0.07).tolist() == [0]


def test_k_larger_than_train_uses_all():
    a = knn_predict(TRAIN, LABELS, QUERY, k=100, tau=1.0)
    b = knn_predict(TRAIN, LABELS, QUERY, k=4, tau=1.0)
    assert a.tolist() == b.tolist() == [0]


def test_ties_go_to_smallest_class_index():
    # q = (1, 1) is equally similar (1/√2) to both train points: equal votes → smallest class
    train = np.array([[1.0, 0.0], [0.0, 1.0]])
    q = np.array([[1.0, 1.0]])
    for labels in ([3, 1], [1, 3]):
        assert knn_predict(train, np.array(labels), q, k=2, n_classes=4).tolist() == [1]
        assert knn_predict(train[::-1], np.array(labels), q, k=2, n_classes=4).tolist() == [1]


def _reference_knn(train_x, train_y, test_x, k, tau, n_classes):
    """Loop reference: sort by cosine, sum exp(s/τ) of the top k per class, first argmax."""
    out = []
    for q in test_x:
        sims = []
        for j, t in enumerate(train_x):
            sims.append((float(q @ t) / (np.linalg.norm(q) * np.linalg.norm(t)), j))
        sims.sort(key=lambda p: -p[0])
        votes = [0.0] * n_classes
        for s, j in sims[:k]:
            votes[int(train_y[j])] += math.exp(s / tau)
        out.append(max(range(n_classes), key=lambda c: (votes[c], -c)))
    return np.array(out)


@pytest.mark.parametrize("k, tau", [(1, 0.07), (5, 0.07), (7, 0.5), (40, 0.1)])
def test_matches_loop_reference_with_chunking(k, tau):
    rng = np.random.default_rng(k)
    train_x, test_x = rng.normal(size=(30, 5)), rng.normal(size=(11, 5))
    train_y = rng.integers(0, 4, size=30)
    ref = _reference_knn(train_x, train_y, test_x, k, tau, 4)
    got = knn_predict(train_x, train_y, test_x, k=k, tau=tau, n_classes=4, chunk_size=3)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, ref)


def test_scale_invariance_and_tiny_tau_is_nearest_neighbour():
    rng = np.random.default_rng(0)
    train_x, test_x = rng.normal(size=(25, 4)), rng.normal(size=(9, 4))
    train_y = rng.integers(0, 3, size=25)
    scaled = train_x * rng.uniform(0.1, 10.0, size=(25, 1))
    np.testing.assert_array_equal(knn_predict(train_x, train_y, test_x, k=5),
                                  knn_predict(scaled, train_y, test_x, k=5))
    # τ = 1e-4: exp(s/τ) would overflow without the per-query shift; the nearest point dominates
    np.testing.assert_array_equal(knn_predict(train_x, train_y, test_x, k=10, tau=1e-4),
                                  knn_predict(train_x, train_y, test_x, k=1))


def test_knn_classify_selects_k_on_val():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 6)) * 1.5

    def draw(n):
        y = rng.integers(0, 3, size=n)
        return centres[y] + rng.normal(size=(n, 6)), y

    (trx, try_), (vax, vay), (tex, tey) = draw(40), draw(30), draw(30)
    grid = (1, 5, 10, 20, 50)
    out = knn_classify(trx, try_, vax, vay, tex, tey, 3, k_grid=grid, tau=0.1)
    assert set(out) == {"accuracy", "macro_f1", "weighted_f1", "k", "val_accuracy", "n_train", "tau"}
    accs = {k: 100 * np.mean(knn_predict(trx, try_, vax, k=k, tau=0.1, n_classes=3) == vay) for k in grid}
    best = min(grid, key=lambda k: (-accs[k], k))             # best val accuracy, ties → smaller k
    assert out["k"] == best and out["val_accuracy"] == pytest.approx(accs[best])
    pred = knn_predict(trx, try_, tex, k=best, tau=0.1, n_classes=3)
    assert out["accuracy"] == pytest.approx(100 * np.mean(pred == tey))
    assert out["n_train"] == 40 and 0 <= out["macro_f1"] <= 100
    # the choice never looks at test labels
    again = knn_classify(trx, try_, vax, vay, tex, np.roll(tey, 3), 3, k_grid=grid, tau=0.1)
    assert again["k"] == out["k"]


def test_knn_classify_perfect_macro_f1():
    train = np.array([[1.0, 0.0], [0.0, 1.0]])
    out = knn_classify(train, np.array([0, 1]), train, np.array([0, 1]),
                       np.array([[2.0, 0.1], [0.1, 3.0]]), np.array([0, 1]), 2, k_grid=(1,))
    assert out["accuracy"] == 100.0 and out["macro_f1"] == 100.0 and out["k"] == 1


def test_bad_input_raises():
    with pytest.raises(ValueError, match="zero-norm"):
        knn_predict(np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([0, 1]), QUERY)
    with pytest.raises(ValueError, match="NaN"):
        knn_predict(TRAIN, LABELS, np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match="k must"):
        knn_predict(TRAIN, LABELS, QUERY, k=0)
    with pytest.raises(ValueError, match="tau"):
        knn_predict(TRAIN, LABELS, QUERY, tau=0.0)
    with pytest.raises(ValueError, match="dims"):
        knn_predict(TRAIN, LABELS, np.ones((1, 3)))
    with pytest.raises(ValueError, match="shape"):
        knn_predict(TRAIN, LABELS[:3], QUERY)
    with pytest.raises(ValueError, match="lie in"):
        knn_predict(TRAIN, LABELS, QUERY, n_classes=1)
    with pytest.raises(ValueError, match="empty"):
        knn_predict(TRAIN[:0], LABELS[:0], QUERY)
    with pytest.raises(ValueError, match="empty"):
        knn_classify(TRAIN, LABELS, TRAIN, LABELS, TRAIN, LABELS, 2, k_grid=())
