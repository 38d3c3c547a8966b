"""Affinity distillation against its formula, written as loops (values and gradients)."""

import math

import pytest
import torch

from distill.affinity_loss import affinity_distillation


def _softmax_row(logits):
    m = max(float(v.detach()) for v in logits)  # a constant shift: softmax is unchanged
    exps = [torch.exp(v - m) for v in logits]
    z = sum(exps)
    return [e / z for e in exps]


def _kl_direction(sa, sb, ta, tb, tau):
    """1/B Σ_i Σ_j P_ij (log P_ij − log Q_ij) with P from the teacher, Q from the student."""
    b = sa.shape[0]
    total = 0.0
    for i in range(b):
        p = _softmax_row([sum(ta[i, k] * tb[j, k] for k in range(ta.shape[1])) / tau for j in range(b)])
        q = _softmax_row([sum(sa[i, k] * sb[j, k] for k in range(sa.shape[1])) / tau for j in range(b)])
        total = total + sum(p[j] * (torch.log(p[j]) - torch.log(q[j])) for j in range(b))
    return total / b


def _reference(sa, sb, ta, tb, tau):
    return (_kl_direction(sa, sb, ta, tb, tau) + _kl_direction(sb, sa, tb, ta, tau)) / 2


def _unit(n, d, g):
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)


@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_matches_the_loop_reference(tau):
    g = torch.Generator().manual_seed(0)
    sa, sb, ta, tb = (_unit(4, 3, g) for _ in range(4))
    sa.requires_grad_(True)
    sb.requires_grad_(True)
    loss = affinity_distillation(sa, sb, ta, tb, tau)
    grads = torch.autograd.grad(loss, (sa, sb))
    ra, rb = sa.detach().clone().requires_grad_(True), sb.detach().clone().requires_grad_(True)
    ref = _reference(ra, rb, ta, tb, tau)
    ref_grads = torch.autograd.grad(ref, (ra, rb))
    assert float(loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-9)
    for a, r in zip(grads, ref_grads):
        assert torch.allclose(a, r, atol=1e-10)


def test_zero_iff_affinities_match_and_both_directions_count():
    g = torch.Generator().manual_seed(1)
    ta, tb = _unit(5, 4, g), _unit(5, 4, g)
    assert float(affinity_distillation(ta, tb, ta, tb, 0.1)) == pytest.approx(0.0, abs=1e-12)
    # a rotation of both student sides keeps every inner product: still zero
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    assert float(affinity_distillation(ta @ q, tb @ q, ta, tb, 0.1)) == pytest.approx(0.0, abs=1e-10)
    sa, sb = _unit(5, 4, g), _unit(5, 4, g)
    one_way = float(_kl_direction(sa, sb, ta, tb, 0.1))
    other_way = float(_kl_direction(sb, sa, tb, ta, 0.1))
    assert one_way != pytest.approx(other_way)
    assert float(affinity_distillation(sa, sb, ta, tb, 0.1)) == pytest.approx((one_way + other_way) / 2, rel=1e-9)
    assert not math.isnan(one_way) and one_way > 0


def test_bad_inputs():
    z = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="same B"):
        affinity_distillation(z, z, z, torch.zeros(2, 4), 0.1)
    with pytest.raises(ValueError, match="at least 2"):
        affinity_distillation(*(torch.zeros(1, 4),) * 4, 0.1)
    with pytest.raises(ValueError, match="temperature"):
        affinity_distillation(z, z, z, z, 0.0)
    with pytest.raises(ValueError, match="embedding dim"):
        affinity_distillation(z, torch.zeros(3, 5), z, z, 0.1)
