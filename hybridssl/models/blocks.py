"""The pre-norm transformer block every tower uses (ViT, Dosovitskiy et al. 2021)::

    x ← x + DropPath(Attn(LN(x)))          Attn: multi-head scaled dot-product self-attention
    x ← x + DropPath(MLP(LN(x)))           MLP: Linear(W → rW) · GELU · Linear(rW → W)

LayerNorm eps 1e-6; attention through ``F.scaled_dot_product_attention`` with an optional
boolean/additive ``attn_mask``. Parameter names, construction (hence initialisation) order and
arithmetic are those of timm's ``vision_transformer.Block`` (held by a parity test), so
checkpoints stay interchangeable — owned here because importing timm costs seconds.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Stochastic depth: zero whole samples with probability ``p``, scale the rest by 1/(1−p)."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask.div_(keep) if keep > 0.0 else x * mask


class DropPath(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.p, self.training)


class Attention(nn.Module):
    """Multi-head self-attention: softmax(Q Kᵀ / √d_h + mask) V, heads concatenated, projected."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, qkv_bias)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x), attn_mask=attn_mask))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


def make_blocks(width: int, depth: int, heads: int, mlp_ratio: float, drop_path: float = 0.0) -> nn.ModuleList:
    return nn.ModuleList(Block(width, heads, mlp_ratio, True, drop_path) for _ in range(depth))


__all__ = ["Attention", "Block", "DropPath", "Mlp", "drop_path", "make_blocks"]
