"""Homoscedastic-uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018,
"Multi-Task Learning Using Uncertainty to Weigh Losses").

Each loss i has a learnable log-variance s_i = log σ_i² (``log_vars``, nn.Parameter (K,),
initialised at 0, trained by the main optimizer together with the model):

    total = Σ_i ( exp(−s_i) · L_i + s_i ) / 2

so ∂total/∂s_i = ½ (1 − exp(−s_i) · L_i), minimised at σ_i² = L_i.  The reported weight of
loss i is its effective coefficient ½ · exp(−s_i).  Absent losses contribute nothing (their s_i
receives no gradient that step).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from hybridssl.weighting.base import LossWeighting, WeightingContext


class UncertaintyWeighting(LossWeighting):
    """total = Σ_i ( exp(−s_i)·L_i + s_i ) / 2, s_i = log σ_i² learnable; weight = ½·exp(−s_i)."""

    name = "uncertainty"

    def __init__(self, loss_names: Sequence[str]) -> None:
        super().__init__(loss_names)
        self.log_vars = nn.Parameter(torch.zeros(self.num_losses))  # (K,) s_i = log σ_i²

    def forward(self, losses: dict[str, Tensor],
                ctx: WeightingContext) -> tuple[Tensor, dict[str, float]]:
        items = self.present(losses)
        idx = torch.tensor([i for i, _, _ in items], device=self.log_vars.device)
        s = self.log_vars.index_select(0, idx)                                  # (P,)
        stacked = torch.stack([loss.to(s.dtype) for _, _, loss in items])       # (P,)
        total = 0.5 * (torch.exp(-s) * stacked + s).sum()
        w = (0.5 * torch.exp(-s.detach())).tolist()
        return total, {name: wi for (_, name, _), wi in zip(items, w)}

    def extra_repr(self) -> str:
        return (f"total = Σ_i (exp(−s_i)·L_i + s_i)/2, s_i = log σ_i² learnable, "
                f"weight_i = ½·exp(−s_i); losses={list(self.loss_names)}")
