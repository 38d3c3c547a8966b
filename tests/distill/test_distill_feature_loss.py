"""Feature distillation against its formula, written as loops (values and gradients)."""

import pytest
import torch

from distill.feature_loss import feature_distillation


def _reference(s, t, kind):
    total = 0.0
    for i in range(s.shape[0]):
        if kind == "cosine":
            dot = sum(s[i, k] * t[i, k] for k in range(s.shape[1]))
            ns = torch.sqrt(sum(s[i, k] ** 2 for k in range(s.shape[1])))
            nt = torch.sqrt(sum(t[i, k] ** 2 for k in range(s.shape[1])))
            total = total + (1 - dot / (ns * nt))
        else:
            total = total + sum((s[i, k] - t[i, k]) ** 2 for k in range(s.shape[1]))
    return total / s.shape[0]


@pytest.mark.parametrize("kind", ["cosine", "mse"])
def test_matches_the_loop_reference(kind):
    g = torch.Generator().manual_seed(0)
    s = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(5, 4, generator=g, dtype=torch.float64)
    loss = feature_distillation(s, t, kind)
    (grad,) = torch.autograd.grad(loss, s)
    s_ref = s.detach().clone().requires_grad_(True)
    ref = _reference(s_ref, t, kind)
    (grad_ref,) = torch.autograd.grad(ref, s_ref)
    assert float(loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-10)
    assert torch.allclose(grad, grad_ref, atol=1e-12)


def test_unit_rows_mse_is_twice_cosine_and_zero_at_the_teacher():
    g = torch.Generator().manual_seed(1)
    s = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=1)
    t = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=1)
    assert float(feature_distillation(s, t, "mse")) == pytest.approx(2 * float(feature_distillation(s, t, "cosine")),
                                                                    rel=1e-5)
    assert float(feature_distillation(t, t, "cosine")) == pytest.approx(0.0, abs=1e-6)
    assert float(feature_distillation(t, t, "mse")) == 0.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="kind"):
        feature_distillation(torch.zeros(2, 3), torch.zeros(2, 3), "l1")
    with pytest.raises(ValueError, match=r"\(B, E\)"):
        feature_distillation(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="empty"):
        feature_distillation(torch.zeros(0, 3), torch.zeros(0, 3))
