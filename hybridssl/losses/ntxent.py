"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al. 2020, "A Simple
Framework for Contrastive Learning of Visual Representations", eq. 1).

Inputs: two views ``z1, z2`` (B, D) of the same B items (normalised here).  With
``z = normalise([z1; z2])`` (2B, D) and ``sim(u, v) = <u, v>``, every one of the 2B anchors k has
exactly one positive p(k) (its other view: p(k) = k ± B) and 2B − 2 negatives (every other row but
itself):

    ℓ_k = −log( exp(sim(z_k, z_p(k)) / τ) / Σ_{m ≠ k} exp(sim(z_k, z_m) / τ) )
    L   = 1/(2B) Σ_k ℓ_k

Shapes: z1, z2 (B, D) → () .  B = 1 is allowed (no negatives: the loss is 0).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["nt_xent", "second_text_view"]


def _check(z1: Tensor, z2: Tensor, temperature: float) -> None:
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(f"nt_xent expects two views of shape (B, D), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape[0] < 1 or z1.shape[1] < 1:
        raise ValueError(f"nt_xent needs B >= 1 and D >= 1, got shape {tuple(z1.shape)}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"nt_xent temperature must be a finite positive number, got {temperature!r}")


def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """SimCLR's NT-Xent over the 2B anchors of two views z1, z2 (B, D); returns a 0-d tensor."""
    temperature = float(temperature)
    _check(z1, z2, temperature)
    bsz = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)  # (2B, D)
    logits = z @ z.T / temperature  # (2B, 2B)
    self_mask = torch.eye(2 * bsz, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))  # an anchor is not its own candidate
    idx = torch.arange(bsz, device=z.device)
    targets = torch.cat([idx + bsz, idx])  # (2B,) the other view
    return F.cross_entropy(logits, targets)


def second_text_view(batch: dict, masked: Tensor, attention: Tensor, view: str) -> tuple[Tensor, Tensor]:
    """The second view of a batch's captions for ``ntxent/text``: ``(masked, attention)`` — a masking of
    each caption — for ``view="mask"``; for ``view="paraphrase"`` each caption's first paraphrase
    (``text_para_ids[:, 0]`` / ``text_para_attn[:, 0]``) where it has one (``text_para_count`` > 0), its
    masking elsewhere. A paraphrase says the same thing in other words: the pair matches by content only."""
    if view not in ("mask", "paraphrase"):
        raise ValueError(f"the second text view is 'mask' or 'paraphrase', got {view!r}")
    if view == "mask" or "text_para_ids" not in batch:
        return masked, attention
    has = (batch["text_para_count"] > 0).to(masked.device)[:, None]   # (Bt, 1)
    ids, attn = batch["text_para_ids"][:, 0], batch["text_para_attn"][:, 0]
    return torch.where(has, ids, masked), torch.where(has, attn, attention)
