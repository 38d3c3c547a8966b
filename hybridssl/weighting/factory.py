"""Registry of loss-weighting strategies: ``create_weighting(name, loss_names, **options)``.

Names: "fixed" (FixedWeighting), "uncertainty" (Kendall et al. 2018), "dwa" (Liu et al. 2019),
"gradnorm" (Chen et al. 2018), "adaptive" (hssl default: difficulty + redundancy driven).
"""

from __future__ import annotations

from collections.abc import Sequence

from hybridssl.weighting.adaptive import AdaptiveWeighting
from hybridssl.weighting.base import LossWeighting
from hybridssl.weighting.dwa import DynamicWeightAverage
from hybridssl.weighting.fixed import FixedWeighting
from hybridssl.weighting.gradnorm import GradNorm
from hybridssl.weighting.uncertainty import UncertaintyWeighting

WEIGHTINGS: dict[str, type[LossWeighting]] = {
    cls.name: cls
    for cls in (FixedWeighting, UncertaintyWeighting, DynamicWeightAverage, GradNorm,
                AdaptiveWeighting)
}


def available_weightings() -> list[str]:
    return list(WEIGHTINGS)


def create_weighting(name: str, loss_names: Sequence[str], **options: object) -> LossWeighting:
    """Build the strategy ``name`` for ``loss_names``; unknown name → ValueError listing valid ones."""
    if name not in WEIGHTINGS:
        raise ValueError(f"unknown loss weighting {name!r}; valid names: {', '.join(WEIGHTINGS)}")
    return WEIGHTINGS[name](loss_names, **options)
