from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hybridssl.losses.hard_negatives import mix_hard_negatives


def _unit(*shape, seed):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=-1)


def hard_set(q, negatives, n_hard):
    """Indices of the n_hard most similar negatives of q, by a plain sort of Python floats."""
    sims = [(float(torch.dot(q, n)), k) for k, n in enumerate(negatives)]
    return [k for _, k in sorted(sims, reverse=True)[:n_hard]]


def fit_pair(h, u, v):
    """Least-squares c with h ≈ c0·u + c1·v, and the residual norm."""
    m = torch.stack([u, v], dim=1)  # (D, 2)
    c = torch.linalg.lstsq(m, h[:, None]).solution[:, 0]
    return c, float((m @ c - h).norm())


def decompose_mix(h, hard):
    """(i, j, α) with h = normalise(α n_i + (1-α) n_j), i ≠ j in the hard set, or None."""
    for i in hard:
        for j in hard:
            if i < j:
                c, res = fit_pair(h, NEG[i], NEG[j])
                if res < 1e-9 and (c >= -1e-12).all():
                    return i, j, float(c[0] / c.sum())
    return None


B, K, D, N_HARD, N_MIX, N_QMIX = 16, 40, 24, 6, 10, 5
Q = _unit(B, D, seed=1)
NEG = _unit(K, D, seed=2)


def _mix(seed=0, **kw):
    args = dict(n_hard=N_HARD, n_mix=N_MIX, n_query_mix=N_QMIX, generator=torch.Generator().manual_seed(seed))
    args.update(kw)
    return mix_hard_negatives(Q, NEG, **args)


def test_shape_norm_and_detached():
    q = Q.clone().requires_grad_(True)
    out = mix_hard_negatives(q, NEG, n_hard=N_HARD, n_mix=N_MIX, n_query_mix=N_QMIX)
    assert out.shape == (B, N_MIX + N_QMIX, D)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(B, N_MIX + N_QMIX, dtype=torch.float64))
    assert not out.requires_grad


def test_mixes_are_convex_combinations_of_two_distinct_hard_negatives():
    out = _mix()
    alphas = []
    for b in range(B):
        hard = hard_set(Q[b], NEG, N_HARD)
        for s in range(N_MIX):
            found = decompose_mix(out[b, s], hard)
            assert found is not None, f"mix {s} of query {b} is not a mix of two of its hard negatives"
            alphas.append(found[2])
    # α ~ U(0, 1): the fitted coefficients (up to the symmetric i/j swap) fill [0, 1]
    sym = torch.tensor([min(a, 1 - a) for a in alphas])  # U(0, 0.5) if α is uniform
    assert abs(float(sym.mean()) - 0.25) < 0.04 and float(sym.max()) > 0.4


def test_query_mixes_lie_between_query_and_a_hard_negative():
    out = _mix(seed=3)
    betas = []
    for b in range(B):
        hard = hard_set(Q[b], NEG, N_HARD)
        for s in range(N_MIX, N_MIX + N_QMIX):
            h = out[b, s]
            fits = [(j, *fit_pair(h, Q[b], NEG[j])) for j in hard]
            j, c, res = min(fits, key=lambda t: t[2])
            assert res < 1e-9 and (c > 0).all()
            beta = float(c[0] / c.sum())
            assert 0.0 <= beta <= 0.5
            betas.append(beta)
            # the query mix is closer to the query than its negative component
            assert float(torch.dot(h, Q[b])) > float(torch.dot(NEG[j], Q[b]))
    assert abs(sum(betas) / len(betas) - 0.25) < 0.05  # β ~ U(0, 0.5)


def test_same_generator_same_mixes_other_seed_different():
    torch.testing.assert_close(_mix(seed=5), _mix(seed=5), rtol=0, atol=0)
    assert not torch.allclose(_mix(seed=5), _mix(seed=6))


def test_fewer_negatives_than_n_hard_uses_all():
    neg = NEG[:3]
    out = mix_hard_negatives(Q, neg, n_hard=10, n_mix=4, n_query_mix=0, generator=torch.Generator().manual_seed(0))
    assert out.shape == (B, 4, D)
    for b in range(B):
        for s in range(4):
            assert any(fit_pair(out[b, s], neg[i], neg[j])[1] < 1e-9 for i in range(3) for j in range(i + 1, 3))


def test_single_hard_negative_mixes_are_that_negative():
    out = _mix(n_hard=1, n_query_mix=0)
    top = torch.stack([NEG[hard_set(Q[b], NEG, 1)[0]] for b in range(B)])  # (B, D)
    torch.testing.assert_close(out, top[:, None].expand(-1, N_MIX, -1))


def test_empty_bank_and_zero_mixes():
    assert mix_hard_negatives(Q, NEG[:0], n_hard=4, n_mix=3, n_query_mix=2).shape == (B, 0, D)
    assert mix_hard_negatives(Q, NEG, n_hard=4, n_mix=0, n_query_mix=0).shape == (B, 0, D)


@pytest.mark.parametrize("q, neg, kw", [
    (torch.randn(4, 3), torch.randn(5, 2), {}),
    (torch.randn(4), torch.randn(5, 4), {}),
    (torch.randn(4, 3), torch.randn(5, 3), {"n_hard": 0}),
    (torch.randn(4, 3), torch.randn(5, 3), {"n_mix": -1}),
    (torch.randn(4, 3), torch.randn(5, 3), {"n_query_mix": -1}),
])
def test_bad_input(q, neg, kw):
    args = dict(n_hard=2, n_mix=1, n_query_mix=1)
    args.update(kw)
    with pytest.raises(ValueError):
        mix_hard_negatives(q, neg, **args)
