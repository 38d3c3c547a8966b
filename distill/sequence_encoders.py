"""Student encoders for feature sequences (registered in :mod:`distill.students` as ``seq_tcn`` and
``seq_tiny``), and the masked mean they (and the text student) pool with. Inputs: normalised frames
(B, T, D) and the frame mask (B, T) bool, as the teacher's sequence towers take them."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


def masked_mean(tokens: Tensor, attention: Tensor) -> Tensor:
    """Mean of tokens (B, L, W) over the positions where attention (B, L) is true → (B, W)."""
    w = attention.to(tokens.dtype).unsqueeze(-1)                        # (B, L, 1)
    return (tokens * w).sum(1) / w.sum(1).clamp_min(1.0)


class TemporalCNN(nn.Module):
    """Frames (B, T, D) + frame mask (B, T) → Linear(D, W) → 3 × [x + GELU(LayerNorm_W(conv1d_k5,d(x)))] at
    dilations 1, 2, 4 (padding frames zeroed before each convolution; the norm is per frame, over channels,
    so an item's embedding does not depend on how far its batch is padded) → LayerNorm → masked mean (B, W)."""

    def __init__(self, dim: int, width: int = 96, dilations: Sequence[int] = (1, 2, 4)) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, width)
        self.convs = nn.ModuleList(nn.Conv1d(width, width, 5, padding=2 * d, dilation=d) for d in dilations)
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in dilations)
        self.norm = nn.LayerNorm(width)
        self.width = width

    def forward(self, x: Tensor, attention: Tensor | None = None) -> Tensor:
        if attention is None:
            raise ValueError("a sequence needs its frame mask")
        keep = attention.to(x.dtype).unsqueeze(1)                       # (B, 1, T)
        h = self.proj(x).transpose(1, 2) * keep                         # (B, W, T)
        for conv, norm in zip(self.convs, self.norms):
            h = (h + F.gelu(norm(conv(h).transpose(1, 2)).transpose(1, 2))) * keep
        return masked_mean(self.norm(h.transpose(1, 2)), attention)    # (B, W)


class TinySequenceEncoder(nn.Module):
    """The teacher's frame tokens (:class:`hybridssl.models.encoders.SequenceStem`) → blocks → LayerNorm →
    mean over the real tokens (B, W)."""

    def __init__(self, dim: int, patch: int, max_tokens: int, width: int, depth: int, heads: int) -> None:
        super().__init__()
        from hybridssl.models.blocks import make_blocks
        from hybridssl.models.encoders import SequenceStem

        self.stem = SequenceStem(dim, patch, max_tokens, width)
        self.blocks = make_blocks(width, depth, heads, 4.0)
        self.norm = nn.LayerNorm(width)
        self.width = width

    def forward(self, x: Tensor, attention: Tensor | None = None) -> Tensor:
        if attention is None:
            raise ValueError("a sequence needs its frame mask")
        real = self.stem.token_mask(attention)                          # (B, N)
        tokens = self.stem(x)
        for blk in self.blocks:
            tokens = blk(tokens, attn_mask=real[:, None, None, :])
        return masked_mean(self.norm(tokens), real)                     # (B, W)
