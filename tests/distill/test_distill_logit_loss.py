"""Hinton logit distillation against its formula, written as loops (values and gradients)."""

import pytest
import torch

from distill.logit_loss import logit_distillation


def _reference(zs, zt, temp):
    total = 0.0
    for i in range(zs.shape[0]):
        k = zs.shape[1]
        ps = [torch.exp(zt[i, c] / temp) for c in range(k)]
        qs = [torch.exp(zs[i, c] / temp) for c in range(k)]
        p_sum, q_sum = sum(ps), sum(qs)
        total = total + sum((ps[c] / p_sum) * (torch.log(ps[c] / p_sum) - torch.log(qs[c] / q_sum)) for c in range(k))
    return temp**2 * total / zs.shape[0]


@pytest.mark.parametrize("temp", [1.0, 4.0])
def test_matches_the_loop_reference(temp):
    g = torch.Generator().manual_seed(0)
    zs = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    zt = torch.randn(3, 5, generator=g, dtype=torch.float64)
    loss = logit_distillation(zs, zt, temp)
    (grad,) = torch.autograd.grad(loss, zs)
    ref_in = zs.detach().clone().requires_grad_(True)
    ref = _reference(ref_in, zt, temp)
    (grad_ref,) = torch.autograd.grad(ref, ref_in)
    assert float(loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-10)
    assert torch.allclose(grad, grad_ref, atol=1e-12)


def test_t_squared_keeps_the_gradient_scale():
    """At high T the gradient tends to (z_s − z_t)/(B·K) (Hinton et al. §2.1, zero-mean logits): T² undoes the 1/T²."""
    g = torch.Generator().manual_seed(1)
    zs = torch.randn(2, 4, generator=g, dtype=torch.float64)
    zt = torch.randn(2, 4, generator=g, dtype=torch.float64)
    zs, zt = zs - zs.mean(1, keepdim=True), zt - zt.mean(1, keepdim=True)
    zs.requires_grad_(True)
    (grad,) = torch.autograd.grad(logit_distillation(zs, zt, 1000.0), zs)
    assert torch.allclose(grad, (zs.detach() - zt) / (2 * 4), atol=1e-4)
    assert float(logit_distillation(zt, zt, 3.0)) == pytest.approx(0.0, abs=1e-12)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        logit_distillation(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="K >= 2"):
        logit_distillation(torch.zeros(2, 1), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="temperature"):
        logit_distillation(torch.zeros(2, 3), torch.zeros(2, 3), -1.0)
