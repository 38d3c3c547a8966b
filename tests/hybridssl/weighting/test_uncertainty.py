from __future__ import annotations

import math

import pytest
import torch

import hybridssl.weighting.uncertainty as uncertainty_module
from hybridssl.weighting.base import WeightingContext
from hybridssl.weighting.uncertainty import UncertaintyWeighting

NAMES = ["contrastive/image-text", "mae/image", "mlm/text"]
CTX = WeightingContext(step=0, batch_sizes={})


def _reference(s: list[float], losses: dict[str, float], names: list[str]) -> float:
    total = 0.0
    for i, n in enumerate(names):
        if n in losses:
            total += (math.exp(-s[i]) * losses[n] + s[i]) / 2
    return total


def test_initial_state_is_plain_half_sum():
    m = UncertaintyWeighting(NAMES)
    assert isinstance(m.log_vars, torch.nn.Parameter)
    assert [p is m.log_vars for p in m.parameters()] == [True]
    total, w = m({n: torch.tensor(2.0) for n in NAMES}, CTX)
    assert total.item() == pytest.approx(3.0)
    assert w == {n: 0.5 for n in NAMES}


def test_total_weights_and_gradients_against_reference():
    m = UncertaintyWeighting(NAMES)
    s = [0.3, -0.7, 1.2]
    with torch.no_grad():
        m.log_vars.copy_(torch.tensor(s))
    vals = {"contrastive/image-text": 2.5, "mae/image": 0.4, "mlm/text": 3.0}
    losses = {n: torch.tensor(v, requires_grad=True) for n, v in vals.items()}
    total, w = m(losses, CTX)
    assert total.item() == pytest.approx(_reference(s, vals, NAMES), rel=1e-6)
    for i, n in enumerate(NAMES):
        assert w[n] == pytest.approx(0.5 * math.exp(-s[i]), rel=1e-6)
    total.backward()
    for i, n in enumerate(NAMES):
        assert m.log_vars.grad[i].item() == pytest.approx(0.5 * (1 - math.exp(-s[i]) * vals[n]),
                                                          rel=1e-5)
        assert losses[n].grad.item() == pytest.approx(0.5 * math.exp(-s[i]), rel=1e-6)


def test_missing_name_gets_no_gradient():
    m = UncertaintyWeighting(NAMES)
    vals = {"mlm/text": 1.5, "contrastive/image-text": 0.5}
    total, w = m({n: torch.tensor(v) for n, v in vals.items()}, CTX)
    assert set(w) == set(vals)
    assert total.item() == pytest.approx(_reference([0.0] * 3, vals, NAMES))
    total.backward()
    assert m.log_vars.grad[1].item() == 0.0
    assert m.log_vars.grad[2].item() == pytest.approx(0.5 * (1 - 1.5))


def test_optimizer_moves_sigma_towards_loss():
    m = UncertaintyWeighting(["mae/image"])
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    for _ in range(200):
        opt.zero_grad()
        m({"mae/image": torch.tensor(4.0)}, CTX)[0].backward()
        opt.step()
    assert m.log_vars.item() == pytest.approx(math.log(4.0), abs=1e-3)  # σ² = L at optimum


def test_state_dict_round_trip_and_docs():
    a = UncertaintyWeighting(NAMES)
    with torch.no_grad():
        a.log_vars.copy_(torch.tensor([0.1, 0.2, 0.3]))
    b = UncertaintyWeighting(NAMES)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.log_vars, b.log_vars)
    assert "(exp(−s_i)·L_i + s_i)/2" in repr(a)
    assert "total = Σ_i ( exp(−s_i) · L_i + s_i ) / 2" in uncertainty_module.__doc__
