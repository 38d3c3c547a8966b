"""Learnable softmax temperature of the contrastive losses (CLIP, Radford et al. 2021).

The logits of InfoNCE are ``scale · cos(a, b)`` with ``scale = 1 / T``.  As in CLIP the scale is
parameterised by its logarithm, ``log_scale = log(1 / T)``, so that gradient steps are
multiplicative, and it is clamped to ``[1 / max_T, 1 / min_T]`` (CLIP caps the scale at 100,
i.e. ``min_T = 0.01``).  ``torch.clamp`` passes the gradient through unchanged inside the range
and blocks it outside, so a parameter that drifted past a bound stops being pushed further.

Shapes: ``forward() -> ()`` (a 0-d tensor, the scale).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["LearnableTemperature"]


def _check_temperatures(init: float, low: float, high: float) -> None:
    for name, v in (("init_temperature", init), ("min_temperature", low), ("max_temperature", high)):
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a finite positive number, got {v!r}")
    if not low <= init <= high:
        raise ValueError(
            f"need min_temperature <= init_temperature <= max_temperature, got {low} <= {init} <= {high}"
        )


class LearnableTemperature(nn.Module):
    """The contrastive logit scale ``exp(log_scale)``, clamped to ``[1/max_T, 1/min_T]``."""

    log_scale: Tensor

    def __init__(
        self,
        init_temperature: float = 0.07,
        min_temperature: float = 0.01,
        max_temperature: float = 1.0,
        learnable: bool = True,
    ) -> None:
        super().__init__()
        init_temperature, min_temperature, max_temperature = (
            float(init_temperature), float(min_temperature), float(max_temperature)
        )
        _check_temperatures(init_temperature, min_temperature, max_temperature)
        self.min_scale = 1.0 / max_temperature
        self.max_scale = 1.0 / min_temperature
        self.learnable = learnable
        value = torch.tensor(math.log(1.0 / init_temperature))  # () in the default dtype
        if learnable:
            self.log_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_scale", value)

    def forward(self) -> Tensor:
        """The scale ``1 / T`` as a 0-d tensor (differentiable w.r.t. ``log_scale`` inside the range)."""
        return self.log_scale.exp().clamp(self.min_scale, self.max_scale)  # ()

    @property
    def temperature(self) -> float:
        """The current (clamped) temperature ``T = 1 / scale`` as a Python float."""
        return 1.0 / float(self.forward().detach())

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature:.4g}, range=[{1 / self.max_scale:.4g}, "
                f"{1 / self.min_scale:.4g}], learnable={self.learnable}")
