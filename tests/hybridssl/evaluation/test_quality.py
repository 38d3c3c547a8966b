from __future__ import annotations

import math

import numpy as np
import pytest

from hybridssl.evaluation.quality import alignment, effective_rank, uniformity


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_uniformity(x, t):
    x = _unit(x)
    vals = []
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            d2 = sum((x[i, k] - x[j, k]) ** 2 for k in range(x.shape[1]))
            vals.append(math.exp(-t * d2))
    return math.log(sum(vals) / len(vals))


def reference_effective_rank(x, center=True):
    if center:
        x = x - x.mean(axis=0)
    s = np.linalg.svd(x, compute_uv=False)
    s = [v for v in s if v > 1e-9]
    total = sum(s)
    return math.exp(-sum((v / total) * math.log(v / total) for v in s))


def test_alignment_matches_loop_and_normalises():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(9, 4)), rng.normal(size=(9, 4)) * 5
    xn, yn = _unit(x), _unit(y)
    for alpha in (1.0, 2.0, 3.5):
        ref = sum(math.sqrt(sum((xn[i, k] - yn[i, k]) ** 2 for k in range(4))) ** alpha for i in range(9)) / 9
        assert alignment(x, y, alpha) == pytest.approx(ref)
    assert alignment(x, 3 * x) == pytest.approx(0.0, abs=1e-24)
    assert alignment(np.array([[1.0, 0.0]]), np.array([[-1.0, 0.0]])) == pytest.approx(4.0)  # |2|^2


def test_uniformity_antipodal_pair_closed_form():
    x = np.array([[1.0, 0.0], [-3.0, 0.0]])  # unit vectors at distance 2: log exp(-4t) = -4t
    for t in (0.5, 2.0, 3.0):
        assert uniformity(x, t) == pytest.approx(-4 * t)
    # identical points: log exp(0) = 0
    assert uniformity(np.ones((3, 2))) == pytest.approx(0.0, abs=1e-12)


def test_uniformity_matches_reference():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(25, 3))
    for t in (1.0, 2.0):
        assert uniformity(x, t) == pytest.approx(reference_uniformity(x, t), rel=1e-10)


def test_uniformity_blocks_beyond_block_size():
    rng = np.random.default_rng(2)
    x = _unit(rng.normal(size=(700, 4)))  # > one 512-row block
    sq = np.clip(2 - 2 * x @ x.T, 0, None)
    iu = np.triu_indices(700, k=1)
    assert uniformity(x) == pytest.approx(np.log(np.mean(np.exp(-2 * sq[iu]))), rel=1e-10)


def test_uniformity_subsample_is_fixed_seed():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 3))
    rows = np.sort(np.random.default_rng(0).choice(80, size=30, replace=False))
    assert uniformity(x, max_rows=30) == pytest.approx(reference_uniformity(x[rows], 2.0), rel=1e-10)
    assert uniformity(x, max_rows=30) == uniformity(x, max_rows=30)
    assert uniformity(x, max_rows=80) == pytest.approx(reference_uniformity(x, 2.0), rel=1e-10)


def test_effective_rank_closed_forms():
    d = 6
    assert effective_rank(np.eye(d), center=False) == pytest.approx(d)
    assert effective_rank(np.eye(d)) == pytest.approx(d - 1)  # centring removes the mean direction
    assert effective_rank(np.vstack([np.eye(d), -np.eye(d)])) == pytest.approx(d)  # already centred
    rng = np.random.default_rng(4)
    rank1 = np.outer(rng.normal(size=20), rng.normal(size=7))
    assert effective_rank(rank1) == pytest.approx(1.0)
    assert effective_rank(rank1, center=False) == pytest.approx(1.0)
    assert effective_rank(np.full((5, 3), 0.1)) == 0.0  # complete collapse


def test_effective_rank_matches_reference_and_range():
    rng = np.random.default_rng(5)
    for n, d in [(10, 4), (4, 10), (30, 8)]:
        x = rng.normal(size=(n, d)) * rng.uniform(0.1, 3, size=d)
        er = effective_rank(x)
        assert er == pytest.approx(reference_effective_rank(x))
        assert 1.0 <= er <= min(n - 1, d) + 1e-9
        assert effective_rank(5 * x) == pytest.approx(er)
        assert effective_rank(x, center=False) == pytest.approx(reference_effective_rank(x, center=False))


def test_invalid_inputs():
    with pytest.raises(ValueError, match="non-finite"):
        alignment(np.array([[np.nan, 1.0]]), np.ones((1, 2)))
    with pytest.raises(ValueError, match="shapes"):
        alignment(np.ones((2, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="alpha"):
        alignment(np.ones((2, 2)), np.ones((2, 2)), alpha=0)
    with pytest.raises(ValueError, match="all-zero"):
        alignment(np.zeros((1, 2)), np.ones((1, 2)))
    with pytest.raises(ValueError, match="at least 2"):
        uniformity(np.ones((1, 3)))
    with pytest.raises(ValueError, match="t must"):
        uniformity(np.ones((3, 3)), t=-1.0)
    with pytest.raises(ValueError, match="2-D"):
        uniformity(np.ones(3))
    with pytest.raises(ValueError, match="at least 1"):
        effective_rank(np.ones((0, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        effective_rank(np.array([[np.inf, 1.0]]))
