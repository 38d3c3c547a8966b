"""Common interface of the dynamic loss-weighting strategies.

The trainer computes, each step, a dict of named scalar losses
``{"<group>/<what>": Tensor ()}`` — e.g. ``"contrastive/image-text"``, ``"mae/image"``,
``"mlm/text"``.  The group ``"contrastive"`` marks contrastive terms; every other group
(``"mae"``, ``"mlm"``, ``"vae"``, …) is generative.  A :class:`LossWeighting` turns them into

    total = Σ_i w_i · L_i      (or a strategy-specific differentiable form of it)

and reports the weights ``{name: float}`` it used (logged every step).

A strategy is built for a fixed, ordered list of ``loss_names``; the index of each name in
that list is the row of the strategy's buffers (so ``state_dict`` is stable across runs).
Any step may carry only a subset of those names (a batch without audio has no audio
losses): the present names are weighted, the state of the absent ones is kept.

State (EMAs, running sums, GradNorm's weights) is updated only in training mode
(``module.train()``); in eval mode the current weights are applied without update.

Distributed training: every strategy is a deterministic function of the loss VALUES and of the
context, so every rank computes the same weights when it receives the same values.  The hybrid
task therefore hands over losses whose values are the global (all-reduced, sample-weighted) means
and whose gradients are this rank's share, plus global candidate counts and redundancy; GradNorm
additionally all-reduces its gradient norms (see ``gradnorm``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

CONTRASTIVE_GROUP = "contrastive"
KNOWN_GROUPS = ("contrastive", "mae", "mlm", "vae")


def loss_group(name: str) -> str:
    """Group of a loss name: the part before the first ``/`` (the whole name if there is none)."""
    return name.split("/", 1)[0]


def is_contrastive(name: str) -> bool:
    return loss_group(name) == CONTRASTIVE_GROUP


@dataclass
class WeightingContext:
    """What a strategy may need besides the losses.

    step:              global optimisation step (≥ 0).
    batch_sizes:       for each contrastive loss name, the number of candidates N of its
                       softmax (chance level of the InfoNCE loss is log N).
    redundancy:        feature-redundancy signal in [0, 1] (see ``signals.feature_redundancy``),
                       or None when it could not be computed this step.
    shared_parameters: parameters of the last shared layer (GradNorm only).
    """

    step: int
    batch_sizes: dict[str, int]
    redundancy: float | None = None
    shared_parameters: list[nn.Parameter] | None = None


class LossWeighting(nn.Module):
    """Base class: ``forward(losses, ctx) -> (total_loss, {name: weight})``."""

    name: str = "base"

    def __init__(self, loss_names: Sequence[str], **options: object) -> None:
        super().__init__()
        if options:
            raise TypeError(f"{type(self).__name__} got unexpected options: {sorted(options)}")
        names = list(loss_names) if not isinstance(loss_names, str) else [loss_names]
        if not names:
            raise ValueError("a loss weighting needs at least one loss name")
        for n in names:
            if not isinstance(n, str) or not n:
                raise ValueError(f"loss names must be non-empty strings, got {n!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"loss names must be unique, got {names}")
        self.loss_names: tuple[str, ...] = tuple(names)
        self.index: dict[str, int] = {n: i for i, n in enumerate(names)}

    @property
    def num_losses(self) -> int:
        return len(self.loss_names)

    def present(self, losses: dict[str, Tensor]) -> list[tuple[int, str, Tensor]]:
        """Validate ``losses`` and return ``(index, name, loss)`` in declared order.

        Raises ValueError on an empty dict, an undeclared name, a non-scalar or non-finite loss.
        """
        if not isinstance(losses, dict) or not losses:
            raise ValueError("losses must be a non-empty dict {name: scalar tensor}")
        unknown = [n for n in losses if n not in self.index]
        if unknown:
            raise ValueError(f"unknown loss names {unknown}; this {self.name!r} weighting "
                             f"was built for {list(self.loss_names)}")
        out: list[tuple[int, str, Tensor]] = []
        for name in self.loss_names:
            if name not in losses:
                continue
            loss = losses[name]
            if not isinstance(loss, Tensor) or loss.numel() != 1:
                raise ValueError(f"loss {name!r} must be a scalar tensor, got "
                                 f"{type(loss).__name__}"
                                 f"{tuple(loss.shape) if isinstance(loss, Tensor) else ''}")
            value = float(loss.detach())
            if not math.isfinite(value):
                raise ValueError(f"loss {name!r} is not finite ({value})")
            out.append((self.index[name], name, loss.reshape(())))
        return out

    def forward(self, losses: dict[str, Tensor],
                ctx: WeightingContext) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError


def weighted_sum(items: list[tuple[int, str, Tensor]], weights: Sequence[float]) -> Tensor:
    """Σ_k weights[k] · loss_k with constant (python float) weights — no gradient to the weights."""
    total = items[0][2] * weights[0]
    for (_, _, loss), w in zip(items[1:], weights[1:]):
        total = total + loss * w
    return total
