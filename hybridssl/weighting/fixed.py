"""Fixed (static) loss weights.

    total = Σ_i w_i · L_i

``weights`` maps a full loss name (``"mae/image"``) or a group (``"contrastive"``, ``"mae"``,
``"mlm"``, ``"vae"``) to a non-negative weight; a full name takes precedence over its group;
unspecified losses get 1.0.  The resolved weights (K,) are kept as a buffer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from hybridssl.weighting.base import KNOWN_GROUPS, LossWeighting, WeightingContext, loss_group, weighted_sum


def resolve_weights(loss_names: Sequence[str], weights: dict[str, float] | None,
                    default: float = 1.0) -> list[float]:
    """Per-name weight: full name > group > ``default``.  Unknown keys / bad values → ValueError."""
    weights = dict(weights or {})
    groups = set(KNOWN_GROUPS) | {loss_group(n) for n in loss_names}
    unknown = [k for k in weights if k not in loss_names and k not in groups]
    if unknown:
        raise ValueError(f"weights given for unknown losses/groups {unknown}; valid keys are "
                         f"{sorted(set(loss_names) | groups)}")
    for k, v in weights.items():
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"weight for {k!r} must be a finite float >= 0, got {v!r}")
    return [float(weights.get(n, weights.get(loss_group(n), default))) for n in loss_names]


class FixedWeighting(LossWeighting):
    """total = Σ_i w_i · L_i with constant weights (per full name or per group, default 1)."""

    weights: Tensor

    name = "fixed"

    def __init__(self, loss_names: Sequence[str], weights: dict[str, float] | None = None) -> None:
        super().__init__(loss_names)
        resolved = resolve_weights(self.loss_names, weights)
        self.register_buffer("weights", torch.tensor(resolved, dtype=torch.get_default_dtype()))  # (K,)

    def forward(self, losses: dict[str, Tensor],
                ctx: WeightingContext) -> tuple[Tensor, dict[str, float]]:
        items = self.present(losses)
        all_w = self.weights.tolist()
        w = [all_w[i] for i, _, _ in items]
        return weighted_sum(items, w), {name: wi for (_, name, _), wi in zip(items, w)}

    def extra_repr(self) -> str:
        pairs = ", ".join(f"{n}={w:g}" for n, w in zip(self.loss_names, self.weights.tolist()))
        return f"total = Σ_i w_i·L_i; {pairs}"
