"""Masked-frame modelling for feature sequences: the generative half of a sequence tower.

The tower replaces the masked tokens by [MASK] (:func:`hybridssl.models.masking.frame_token_masking`)
and :class:`hybridssl.models.decoders.MaskedFrameHead` predicts each token's ``patch`` normalised frames
from the encoder output. With pred, target (B, N, p·D) (target = the frames grouped p per token),
``masked`` (B, N) bool and ``frame_valid`` (B, N, p) bool (padding frames of the last token excluded):

    L = Σ_{b,n,f} masked_{bn} · valid_{bnf} · ‖pred_{bnf} − target_{bnf}‖² / (D · Σ_{b,n,f} masked_{bn} · valid_{bnf})

i.e. the mean squared error per value over the real frames of the masked tokens.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["count_masked_frames", "frame_targets", "masked_frame_loss"]


def frame_targets(frames: Tensor, frame_mask: Tensor, patch: int) -> tuple[Tensor, Tensor]:
    """frames (B, T, D), frame_mask (B, T) → target (B, N, p·D), frame_valid (B, N, p) bool."""
    b, t, d = frames.shape
    return frames.reshape(b, t // patch, patch * d), frame_mask.bool().reshape(b, t // patch, patch)


def masked_frame_loss(pred: Tensor, target: Tensor, masked: Tensor, frame_valid: Tensor) -> Tensor:
    if pred.shape != target.shape or masked.shape != pred.shape[:2] or frame_valid.shape[:2] != masked.shape:
        raise ValueError(f"shape mismatch: pred {tuple(pred.shape)}, target {tuple(target.shape)}, "
                         f"masked {tuple(masked.shape)}, frame_valid {tuple(frame_valid.shape)}")
    b, n, p = frame_valid.shape
    err = (pred.float() - target.float()).pow(2).reshape(b, n, p, -1).mean(-1)     # (B, N, p) per-frame mean over D
    weight = (masked.unsqueeze(-1) & frame_valid).to(err.dtype)                    # (B, N, p)
    total = weight.sum()
    if total == 0:
        return err.sum() * 0.0
    return (err * weight).sum() / total


def count_masked_frames(masked: Tensor, frame_valid: Tensor) -> int:
    return int((masked.unsqueeze(-1) & frame_valid).sum())

