"""Masked-autoencoder reconstruction loss and patch (un)folding (He et al. 2022, "Masked
Autoencoders Are Scalable Vision Learners").

* ``patchify``: x (B, C, H, W) → (B, N, ph·pw·C), N = (H/ph)·(W/pw), patches in row-major order
  (patch (r, c) at index r·(W/pw) + c), each patch flattened as (ph, pw, C) like the MAE code.
* ``unpatchify``: its exact inverse, given the patch size, the grid (H/ph, W/pw) and C.
* ``mae_loss``: pred, target (B, N, P), mask (B, N) with 1 = masked (reconstructed), 0 = visible:

      L = Σ_{b,n} mask_{bn} · mean_P (pred_{bn} − target_{bn})² / Σ_{b,n} mask_{bn}

  With ``norm_pix`` each target patch is first normalised by its own statistics over P, exactly
  as MAE does: ``(target − mean) / (var + eps) ** 0.5`` with torch's default (unbiased) ``var``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["mae_loss", "patchify", "unpatchify"]


def _pair(patch: Sequence[int] | int, what: str = "patch") -> tuple[int, int]:
    """(h, w) from a pair of positive ints (an int n means (n, n))."""
    if isinstance(patch, int):
        patch = (patch, patch)
    if not isinstance(patch, Sequence) or len(patch) != 2 or any(int(p) != p or p < 1 for p in patch):
        raise ValueError(f"{what} must be two positive integers, got {patch!r}")
    return int(patch[0]), int(patch[1])


def patchify(x: Tensor, patch: tuple[int, int]) -> Tensor:
    """(B, C, H, W) → (B, N, ph·pw·C) in row-major patch order."""
    ph, pw = _pair(patch)
    if x.ndim != 4:
        raise ValueError(f"patchify expects (B, C, H, W), got shape {tuple(x.shape)}")
    bsz, c, h, w = x.shape
    if h % ph or w % pw or h == 0 or w == 0:
        raise ValueError(f"image size {(h, w)} is not a positive multiple of the patch size {(ph, pw)}")
    gh, gw = h // ph, w // pw
    x = x.reshape(bsz, c, gh, ph, gw, pw)
    x = torch.einsum("bchpwq->bhwpqc", x)  # (B, gh, gw, ph, pw, C)
    return x.reshape(bsz, gh * gw, ph * pw * c)


def unpatchify(p: Tensor, patch: tuple[int, int], grid: tuple[int, int], channels: int) -> Tensor:
    """(B, N, ph·pw·C) → (B, C, gh·ph, gw·pw); the exact inverse of :func:`patchify`."""
    ph, pw = _pair(patch)
    gh, gw = _pair(grid, "grid")
    if channels < 1:
        raise ValueError(f"channels must be positive, got {channels}")
    if p.ndim != 3 or p.shape[1] != gh * gw or p.shape[2] != ph * pw * channels:
        raise ValueError(f"unpatchify expects (B, {gh * gw}, {ph * pw * channels}) for grid {(gh, gw)}, "
                         f"patch {(ph, pw)} and {channels} channels, got {tuple(p.shape)}")
    x = p.reshape(p.shape[0], gh, gw, ph, pw, channels)
    x = torch.einsum("bhwpqc->bchpwq", x)  # (B, C, gh, ph, gw, pw)
    return x.reshape(p.shape[0], channels, gh * ph, gw * pw)


def normalize_patches(target: Tensor, eps: float = 1e-6) -> Tensor:
    """MAE's per-patch normalisation of target (B, N, P) over its last dim (unbiased var)."""
    if target.shape[-1] < 2:
        raise ValueError("norm_pix needs at least 2 values per patch (the variance is unbiased)")
    mean = target.mean(dim=-1, keepdim=True)  # (B, N, 1)
    var = target.var(dim=-1, keepdim=True)  # (B, N, 1)
    return (target - mean) / (var + eps) ** 0.5


def _check(pred: Tensor, target: Tensor, mask: Tensor) -> None:
    if pred.ndim != 3 or pred.shape != target.shape:
        raise ValueError(f"mae_loss expects pred and target of the same shape (B, N, P), got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")
    if tuple(mask.shape) != tuple(pred.shape[:2]):
        raise ValueError(f"mask must have shape {tuple(pred.shape[:2])} (B, N), got {tuple(mask.shape)}")
    if pred.shape[2] < 1:
        raise ValueError("mae_loss needs at least one value per patch (P >= 1)")


def mae_loss(pred: Tensor, target: Tensor, mask: Tensor, norm_pix: bool = False, eps: float = 1e-6) -> Tensor:
    """Mean squared error over the masked patches (mask 1 = masked); returns a 0-d tensor."""
    _check(pred, target, mask)
    if norm_pix:
        target = normalize_patches(target, eps)
    per_patch = (pred - target).pow(2).mean(dim=-1)  # (B, N)
    weights = mask.to(per_patch.dtype)  # (B, N)
    denom = weights.sum()
    if not bool(denom > 0):
        raise ValueError("mae_loss: the mask selects no patch (mask.sum() == 0), nothing to reconstruct")
    return (per_patch * weights).sum() / denom
