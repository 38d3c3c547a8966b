"""Signals that drive the adaptive weighting.

Feature redundancy (cross-correlation of Barlow Twins, Zbontar et al., ICML 2021): for
embeddings z1, z2 (B, D) of the same B samples in two modalities (or views), standardise each
column over the batch (mean 0, std 1, biased std), then

    C = z̃1ᵀ z̃2 / B                                    (D, D), C_ij ∈ [−1, 1]
    redundancy = Σ_{i≠j} C_ij² / (D (D − 1))           ∈ [0, 1]

the mean squared off-diagonal correlation: 0 for decorrelated features, 1 when every
dimension carries the same information.  Note: for independent features estimated on B
samples, E[C_ij²] ≈ 1/B, so the signal has a floor of about 1/B.

Modality difficulty of a contrastive loss (see ``adaptive``): L_p / log N_p, the InfoNCE loss
relative to its chance level log N_p (N_p candidates).
"""

from __future__ import annotations

import math
import operator

import torch
from torch import Tensor


def feature_redundancy(z1: Tensor, z2: Tensor, eps: float = 1e-5) -> Tensor:
    """Mean squared off-diagonal cross-correlation of z1, z2 (B, D) → detached scalar in [0, 1].

    Columns with std < eps are treated as std = eps (a constant column has zero correlation).
    """
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must both be (B, D) with the same shape, got "
                         f"{tuple(z1.shape)} and {tuple(z2.shape)}")
    b, d = z1.shape
    if b < 2:
        raise ValueError(f"feature_redundancy needs a batch of at least 2 samples, got B={b}")
    if d < 2:
        raise ValueError(f"feature_redundancy needs at least 2 feature dimensions, got D={d}")
    with torch.no_grad():
        a = _standardise(z1.detach().float(), eps)             # (B, D)
        c = _standardise(z2.detach().float(), eps)             # (B, D)
        if not (torch.isfinite(a).all() and torch.isfinite(c).all()):
            raise ValueError("feature_redundancy got non-finite embeddings")
        corr = a.T @ c / b                                     # (D, D)
        off = corr.pow(2).sum() - torch.diagonal(corr).pow(2).sum()
        return (off / (d * (d - 1))).clamp(0.0, 1.0)


def _standardise(z: Tensor, eps: float) -> Tensor:
    """Column-wise (z − mean) / max(std, eps) over the batch (biased std).  (B, D) → (B, D)."""
    mean = z.mean(dim=0, keepdim=True)                         # (1, D)
    std = z.std(dim=0, unbiased=False, keepdim=True)           # (1, D)
    return (z - mean) / std.clamp_min(eps)


def contrastive_difficulty(loss: float, num_candidates: int) -> float:
    """L / log N: 1 at chance level, → 0 as the pair is solved.  Requires an integer N ≥ 2."""
    try:
        n = operator.index(num_candidates)
    except TypeError:
        raise ValueError(f"the number of candidates must be an int, got {num_candidates!r}") from None
    if n < 2:
        raise ValueError(f"a contrastive loss needs N >= 2 candidates, got {n}")
    return loss / math.log(n)
