"""The optimiser step's settings. Learning-rate schedule: linear warm-up then cosine decay to
``min_ratio`` of the peak,

    f(s) = (s+1)/W                                             for s < W
    f(s) = r + (1 − r)·½(1 + cos(π·(s − W)/(S − W)))            for W ≤ s < S   (r = min_ratio)

and the gradient-clipping norm (:func:`clip_norm`).
"""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> float:
    if step < warmup_steps:
        return (step + 1) / max(1, warmup_steps)
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def clip_norm(grad_clip: float) -> float:
    """The ``max_norm`` of gradient clipping for ``train.grad_clip``: itself, or ∞ (no clipping) for 0."""
    return grad_clip if grad_clip > 0 else math.inf
