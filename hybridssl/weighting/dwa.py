"""Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019,
"End-to-End Multi-Task Learning with Attention").

    w_i(t) = K · exp(r_i(t−1)/T) / Σ_j exp(r_j(t−1)/T),   r_i(t−1) = L̄_i(t−1) / L̄_i(t−2)

where t indexes *periods* of ``period`` optimisation steps (the paper uses epochs), L̄_i(p) is
the mean of loss i over the steps of period p in which it was present, T the temperature and K
the number of losses weighted.  Period of a step: ``ctx.step // period``.  While a period runs,
the weights come from the two most recently completed periods; until a loss has two completed
periods, its weight is 1.

Missing names: the softmax runs over the present losses that have a ratio (K = their count);
present losses without a ratio yet get 1, so the mean present weight stays 1.  A loss absent
for a whole period keeps its last two averages.

State (buffers, rows in ``loss_names`` order): ``period_sum`` (K,), ``period_count`` (K,),
``avg_last`` (K,) = L̄(t−1), ``avg_prev`` (K,) = L̄(t−2), ``periods_done`` (K,),
``current_period`` () — so the schedule survives a checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hybridssl.weighting.base import LossWeighting, WeightingContext, weighted_sum

_EPS = 1e-12


def dwa_weights(ratios: Tensor, temperature: float) -> Tensor:
    """ratios (P,) → K·softmax(ratios/T) (P,), K = P."""
    return ratios.numel() * torch.softmax(ratios / temperature, dim=0)


class DynamicWeightAverage(LossWeighting):
    """w_i = K·softmax_i(r/T), r_i = L̄_i(t−1)/L̄_i(t−2) over periods of steps; 1 before 2 periods."""

    period_sum: Tensor
    period_count: Tensor
    avg_last: Tensor
    avg_prev: Tensor
    periods_done: Tensor
    current_period: Tensor

    name = "dwa"

    def __init__(self, loss_names: Sequence[str], period: int = 50,
                 temperature: float = 2.0) -> None:
        super().__init__(loss_names)
        if not isinstance(period, int) or period < 1:
            raise ValueError(f"period must be an int >= 1, got {period!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.period = period
        self.temperature = float(temperature)
        k = self.num_losses
        self.register_buffer("period_sum", torch.zeros(k))      # (K,)
        self.register_buffer("period_count", torch.zeros(k, dtype=torch.long))       # (K,)
        self.register_buffer("avg_last", torch.zeros(k))        # (K,)
        self.register_buffer("avg_prev", torch.zeros(k))        # (K,)
        self.register_buffer("periods_done", torch.zeros(k, dtype=torch.long))       # (K,)
        self.register_buffer("current_period", torch.tensor(-1, dtype=torch.long))   # ()

    def _close_period(self) -> None:
        """Shift L̄(t−1) → L̄(t−2) and this period's mean → L̄(t−1) for the losses it saw."""
        seen = self.period_count > 0                                             # (K,)
        mean = self.period_sum / self.period_count.clamp_min(1)                  # (K,)
        self.avg_prev.copy_(torch.where(seen, self.avg_last, self.avg_prev))
        self.avg_last.copy_(torch.where(seen, mean, self.avg_last))
        self.periods_done.add_(seen.long())
        self.period_sum.zero_()
        self.period_count.zero_()

    def _advance(self, step: int) -> None:
        if not isinstance(step, int) or step < 0:
            raise ValueError(f"ctx.step must be an int >= 0, got {step!r}")
        p = step // self.period
        if int(self.current_period) != p:
            if int(self.current_period) >= 0:
                self._close_period()
            self.current_period.fill_(p)

    def current_weights(self, indices: list[int]) -> list[float]:
        """Weights of the given loss rows from the two last completed periods."""
        idx = torch.tensor(indices, device=self.avg_last.device)
        ready = (self.periods_done.index_select(0, idx) >= 2)                     # (P,)
        w = torch.ones(len(indices), device=idx.device)      # (P,)
        if bool(ready.any()):
            last = self.avg_last.index_select(0, idx)[ready]
            prev = self.avg_prev.index_select(0, idx)[ready]
            w[ready] = dwa_weights(last / prev.clamp_min(_EPS), self.temperature)
        return w.tolist()

    def forward(self, losses: dict[str, Tensor],
                ctx: WeightingContext) -> tuple[Tensor, dict[str, float]]:
        items = self.present(losses)
        if self.training:
            self._advance(ctx.step)
        indices = [i for i, _, _ in items]
        w = self.current_weights(indices)
        if self.training:
            idx = torch.tensor(indices, device=self.period_sum.device)
            vals = torch.stack([loss.detach().to(self.period_sum) for _, _, loss in items])  # (P,)
            self.period_sum.index_add_(0, idx, vals)
            self.period_count.index_add_(0, idx, torch.ones_like(idx))
        return weighted_sum(items, w), {name: wi for (_, name, _), wi in zip(items, w)}

    def extra_repr(self) -> str:
        return (f"w_i = K·exp(r_i/T)/Σ_j exp(r_j/T), r_i = L̄_i(t−1)/L̄_i(t−2); "
                f"period={self.period}, T={self.temperature:g}, losses={list(self.loss_names)}")
