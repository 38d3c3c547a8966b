"""hssl's default weighting ("adaptive"), driven by two measured signals.

* Modality difficulty of each contrastive loss p (N_p candidates, chance level log N_p):

      d_p = EMA_t( L_p(t) / log N_p(t) )          (momentum ``ema``, initialised at the first
                                                    observation of p)

  i.e. the EMA of the loss relative to chance (with a constant N this is EMA(L_p) / log N_p;
  taking the ratio per step keeps it meaningful when N varies, e.g. a short last batch).
* Feature redundancy r ∈ [0, 1] (``ctx.redundancy``, see ``signals.feature_redundancy``),
  EMA with the same momentum; r = 0 until a first value is seen; steps with None keep it.

Weights (constants: no gradient flows through the signals), with C the present contrastive
losses and G the present generative ones:

    w_p = clip( d_p / mean_{q∈C} d_q , w_min, w_max )          p ∈ C  (harder pair → more weight)
    w_g = clip( base_g · (1 + κ · r) , w_min, w_max )            g ∈ G  (more redundancy → more
                                                                 reconstruction)
    total = Σ_{p∈C} w_p L_p + Σ_{g∈G} w_g L_g

``base_generative`` is a float or a dict keyed by generative group (``"mae"``, ``"mlm"``,
``"vae"``) or full loss name (default 1.0).  The EMAs are buffers and are updated only in
training mode; in eval mode a contrastive loss never seen before uses its current ratio.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from hybridssl.weighting.base import LossWeighting, WeightingContext, is_contrastive, weighted_sum
from hybridssl.weighting.fixed import resolve_weights
from hybridssl.weighting.signals import contrastive_difficulty, feature_redundancy

__all__ = ["AdaptiveWeighting", "feature_redundancy"]

_EPS = 1e-12


def _check_redundancy(value: float | Tensor) -> float:
    r = float(value)
    if not math.isfinite(r) or r < -1e-6 or r > 1 + 1e-6:
        raise ValueError(f"ctx.redundancy must be a finite value in [0, 1], got {r}")
    return min(max(r, 0.0), 1.0)


class AdaptiveWeighting(LossWeighting):
    """w_p = clip(d_p/mean d, w_min, w_max) for contrastive, w_g = clip(base_g(1+κr), ...) else."""

    base: Tensor
    difficulty: Tensor
    difficulty_seen: Tensor
    redundancy: Tensor
    redundancy_seen: Tensor

    name = "adaptive"

    def __init__(self, loss_names: Sequence[str], base_generative: float | dict[str, float] = 1.0,
                 kappa: float = 1.0, ema: float = 0.9, w_min: float = 0.1,
                 w_max: float = 5.0) -> None:
        super().__init__(loss_names)
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"ema momentum must be in [0, 1), got {ema!r}")
        if not (0.0 <= w_min <= w_max and math.isfinite(w_max)):
            raise ValueError(f"need 0 <= w_min <= w_max < inf, got w_min={w_min!r}, w_max={w_max!r}")
        if not math.isfinite(kappa):
            raise ValueError(f"kappa must be finite, got {kappa!r}")
        self.kappa, self.ema, self.w_min, self.w_max = float(kappa), float(ema), float(w_min), float(w_max)
        self.register_buffer("base", torch.tensor(self._resolve_base(base_generative)))  # (K,)
        k = self.num_losses
        self.register_buffer("difficulty", torch.zeros(k))                          # (K,) d_p
        self.register_buffer("difficulty_seen", torch.zeros(k, dtype=torch.bool))   # (K,)
        self.register_buffer("redundancy", torch.zeros(()))                         # () r
        self.register_buffer("redundancy_seen", torch.zeros((), dtype=torch.bool))  # ()

    def _resolve_base(self, base: float | dict[str, float]) -> list[float]:
        if isinstance(base, dict):
            bad = [key for key in base if is_contrastive(key)]
            if bad:
                raise ValueError(f"base_generative applies to generative losses only, got {bad}")
            return resolve_weights(self.loss_names, base)
        if not isinstance(base, (int, float)) or not math.isfinite(base) or base < 0:
            raise ValueError(f"base_generative must be a float >= 0 or a dict, got {base!r}")
        return [float(base)] * self.num_losses

    def _observe_difficulty(self, items: list[tuple[int, str, Tensor]],
                            ctx: WeightingContext) -> dict[int, float]:
        """Difficulty d_p of each present contrastive loss (EMA updated in training mode)."""
        out: dict[int, float] = {}
        ema, seen = self.difficulty.tolist(), self.difficulty_seen.tolist()
        for i, name, loss in items:
            if not is_contrastive(name):
                continue
            if name not in ctx.batch_sizes:
                raise ValueError(f"ctx.batch_sizes has no candidate count for contrastive loss "
                                 f"{name!r} (got {sorted(ctx.batch_sizes)})")
            x = contrastive_difficulty(float(loss.detach()), ctx.batch_sizes[name])
            if self.training:
                d = self.ema * ema[i] + (1.0 - self.ema) * x if seen[i] else x
                self.difficulty[i] = d
                self.difficulty_seen[i] = True
                out[i] = d
            else:
                out[i] = ema[i] if seen[i] else x
        return out

    def _observe_redundancy(self, ctx: WeightingContext) -> float:
        if ctx.redundancy is not None:
            r = _check_redundancy(ctx.redundancy)
            if self.training:
                if bool(self.redundancy_seen):
                    r = self.ema * float(self.redundancy) + (1.0 - self.ema) * r
                self.redundancy.fill_(r)
                self.redundancy_seen.fill_(True)
        return float(self.redundancy)

    def _clip(self, w: float) -> float:
        return min(max(w, self.w_min), self.w_max)

    def forward(self, losses: dict[str, Tensor],
                ctx: WeightingContext) -> tuple[Tensor, dict[str, float]]:
        items = self.present(losses)
        diff = self._observe_difficulty(items, ctx)
        r = self._observe_redundancy(ctx)
        mean_d = sum(diff.values()) / len(diff) if diff else 0.0
        base = self.base.tolist()
        w: list[float] = []
        for i, _, _ in items:
            if i in diff:
                w.append(self._clip(diff[i] / mean_d) if mean_d > _EPS else self._clip(1.0))
            else:
                w.append(self._clip(base[i] * (1.0 + self.kappa * r)))
        return weighted_sum(items, w), {name: wi for (_, name, _), wi in zip(items, w)}

    def extra_repr(self) -> str:
        return (f"w_p = clip(d_p/mean_q d_q), d_p = EMA(L_p/log N_p) (contrastive); "
                f"w_g = clip(base_g·(1+κ·r)), r = EMA(redundancy) (generative); "
                f"kappa={self.kappa:g}, ema={self.ema:g}, w_min={self.w_min:g}, "
                f"w_max={self.w_max:g}, losses={list(self.loss_names)}")
