from __future__ import annotations

import math

import pytest
import torch

from hybridssl.losses.temperature import LearnableTemperature


def test_initial_scale_and_temperature():
    t = LearnableTemperature(0.07)
    assert t().item() == pytest.approx(1 / 0.07, rel=1e-6)
    assert t.temperature == pytest.approx(0.07, rel=1e-6)
    assert t.log_scale.item() == pytest.approx(math.log(1 / 0.07), rel=1e-6)


def test_learnable_is_a_parameter_fixed_is_a_buffer():
    learn = LearnableTemperature(0.1, learnable=True)
    fixed = LearnableTemperature(0.1, learnable=False)
    assert [n for n, _ in learn.named_parameters()] == ["log_scale"]
    assert list(fixed.parameters()) == []
    assert "log_scale" in fixed.state_dict()
    assert not fixed().requires_grad


def test_gradient_inside_the_range_is_d_exp():
    t = LearnableTemperature(0.1)
    s = t()
    s.backward()
    assert t.log_scale.grad.item() == pytest.approx(s.item(), rel=1e-6)  # d exp(x)/dx = exp(x)


@pytest.mark.parametrize("log_scale, expected", [(math.log(1000.0), 100.0), (math.log(0.5), 1.0)])
def test_clamped_outside_the_range_without_gradient(log_scale, expected):
    t = LearnableTemperature(0.07, min_temperature=0.01, max_temperature=1.0)
    with torch.no_grad():
        t.log_scale.fill_(log_scale)
    s = t()
    assert s.item() == pytest.approx(expected, rel=1e-6)
    assert t.temperature == pytest.approx(1 / expected, rel=1e-6)
    s.backward()
    assert t.log_scale.grad.item() == 0.0


def test_optimiser_step_moves_the_temperature():
    t = LearnableTemperature(0.07)
    opt = torch.optim.SGD(t.parameters(), lr=0.1)
    (-t()).backward()  # maximise the scale → lower the temperature
    opt.step()
    assert t.temperature < 0.07


@pytest.mark.parametrize("args", [(0.005, 0.01, 1.0), (2.0, 0.01, 1.0), (0.1, 0.5, 0.2), (-0.1, 0.01, 1.0),
                                  (float("nan"), 0.01, 1.0), (0.1, 0.0, 1.0), (0.1, 0.01, float("inf"))])
def test_invalid_temperatures(args):
    with pytest.raises(ValueError):
        LearnableTemperature(*args)
