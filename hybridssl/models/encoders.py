"""Per-modality encoders: a stem that turns the input into tokens, then transformer blocks.

* image : (B, 3, H, W) → conv patch embedding (p×p) → (B, N = (H/p)(W/p), W); or, with
          ``image_stem="conv"``, a convolutional stem of log2(p) 3×3 stride-2 convolutions
          (Xiao et al. 2021, "Early Convolutions Help Transformers See Better"); or, with
          ``image_stem="cnn"`` (the default of the CPU presets), a small CNN of real depth —
          3×3 conv stride 2, then log2(p)−1 × [3×3 conv → max-pool 2], a last 3×3 conv to W,
          GroupNorm + ReLU between — whose full-resolution convolutions and max-pooling learn
          shapes from a few thousand images (see ``benchmarks/ceiling.py``). The receptive fields
          of the two convolutional stems overlap neighbouring patches, so the model zeroes the
          masked patches of the INPUT before such a stem (``PatchStem.overlapping``): the visible
          tokens never see what the decoder must reconstruct
* audio : (B, 1, M, T) log-mel → conv patch embedding (pm×pt) over (mel, frame); trailing frames
          that do not fill a patch are dropped → (B, (M/pm)(⌊T/pt⌋), W)
* text  : (B, L) token ids → embedding → (B, L, W), with an attention mask for padding
* feature sequence : frames (B, T, D), T a multiple of ``patch`` → ``patch`` consecutive frames per
          token → Linear(patch·D, W) → (B, T/patch, W); a token is real when any of its frames is
          (``frame_mask`` (B, T)); masked tokens are replaced by a learned [MASK] embedding before
          the positions are added (:func:`hybridssl.models.masking.frame_token_masking`)

Learned positional embeddings are added before masking, so visible tokens keep their position.
Blocks are :class:`hybridssl.models.blocks.Block` (pre-norm, SDPA attention, timm's layout). Each encoder exposes
``tokens(x)`` (stem + positions) and ``blocks``; the shared trunk and pooling live in
:class:`hybridssl.models.hybrid.HybridModel`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from hybridssl.models.blocks import make_blocks


class PatchStem(nn.Module):
    """Conv patch embedding for images and spectrograms, with learned positions."""

    def __init__(self, in_chans: int, grid_input: tuple[int, int], patch: tuple[int, int], width: int,
                 kind: str = "patch") -> None:
        super().__init__()
        h, w = grid_input
        ph, pw = patch
        if h < ph or w < pw:
            raise ValueError(f"input {grid_input} is smaller than one patch {patch}")
        if h % ph:
            raise ValueError(f"input height {h} is not a multiple of the patch height {ph}")
        self.patch = (ph, pw)
        self.in_chans = in_chans
        self.grid = (h // ph, w // pw)
        if kind not in STEMS:
            raise ValueError(f"stem must be one of {tuple(STEMS)}, got {kind!r}")
        if kind != "patch" and ph != pw:
            raise ValueError(f"the {kind} stem needs square patches")
        self.kind = kind
        self.overlapping = kind != "patch"  # receptive fields reach into neighbouring patches
        self.proj = STEMS[kind](in_chans, patch if kind == "patch" else ph, width)
        self.pos = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], width))
        nn.init.trunc_normal_(self.pos, std=0.02)

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def input_size(self) -> tuple[int, int]:
        return self.grid[0] * self.patch[0], self.grid[1] * self.patch[1]

    def crop(self, x: Tensor) -> Tensor:
        """Drop trailing rows/columns that do not fill a patch (audio frames)."""
        h, w = self.input_size
        if x.shape[-2] < h or x.shape[-1] < w:
            raise ValueError(f"expected input of at least {h}×{w}, got {tuple(x.shape[-2:])}")
        return x[..., :h, :w]

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(self.crop(x))               # (B, W, gh, gw)
        return x.flatten(2).transpose(1, 2) + self.pos  # (B, N, W)

    def mask_input(self, x: Tensor, mask: Tensor) -> Tensor:
        """Zero the masked patches of the input: x (B, C, H, W), mask (B, N) with 1 = masked."""
        x = self.crop(x)
        keep = (1.0 - mask).to(x.dtype).view(-1, 1, *self.grid)                  # (B, 1, gh, gw)
        keep = keep.repeat_interleave(self.patch[0], 2).repeat_interleave(self.patch[1], 3)  # (B, 1, H, W)
        return x * keep


def _log2_patch(patch: int) -> int:
    n = int(round(math.log2(patch)))
    if 2**n != patch or n < 1:
        raise ValueError(f"the convolutional stem needs a power-of-two patch size, got {patch}")
    return n


def linear_patch_stem(in_chans: int, patch: tuple[int, int], width: int) -> nn.Conv2d:
    """ViT's patch embedding: one p×p convolution of stride p."""
    return nn.Conv2d(in_chans, width, kernel_size=patch, stride=patch)


def cnn_stem(in_chans: int, patch: int, width: int) -> nn.Sequential:
    """A small CNN with total stride ``patch`` (a power of two ≥ 2), e.g. patch 8, width 128:
    3×3/2 conv → 32 · [3×3 conv → 64, max-pool 2] · [3×3 conv → 128, max-pool 2] · 3×3 conv → 128,
    GroupNorm(1) + ReLU after every conv but the last (per-sample normalisation: no batch statistics,
    so a step on W ranks equals one step of one process)."""
    n = _log2_patch(patch)
    chans = [max(16, width // 2 ** (n - 1 - i)) for i in range(n)]   # e.g. n=3: W/4, W/2, W
    layers: list[nn.Module] = [nn.Conv2d(in_chans, chans[0], 3, stride=2, padding=1, bias=False),
                               nn.GroupNorm(1, chans[0]), nn.ReLU()]
    for c_in, c_out in zip(chans, chans[1:]):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.GroupNorm(1, c_out), nn.ReLU(), nn.MaxPool2d(2)]
    layers.append(nn.Conv2d(chans[-1], width, 3, padding=1))
    return nn.Sequential(*layers)


def conv_stem(in_chans: int, patch: int, width: int) -> nn.Sequential:
    """log2(patch) × [3×3 conv stride 2 → BatchNorm → GELU], widths doubling up to width/2, then 1×1 to width."""
    n = _log2_patch(patch)
    layers: list[nn.Module] = []
    c_in = in_chans
    for i in range(n):
        c_out = max(16, width // 2 ** (n - i))
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.GELU()]
        c_in = c_out
    layers.append(nn.Conv2d(c_in, width, 1))
    return nn.Sequential(*layers)


STEMS: dict[str, Callable[..., nn.Module]] = {"patch": linear_patch_stem, "conv": conv_stem, "cnn": cnn_stem}


class TextStem(nn.Module):
    def __init__(self, vocab_size: int, max_length: int, width: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.pos = nn.Parameter(torch.zeros(1, max_length, width))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.max_length = max_length

    @property
    def num_tokens(self) -> int:
        return self.max_length

    def forward(self, ids: Tensor) -> Tensor:
        if ids.shape[1] > self.max_length:
            raise ValueError(f"text has {ids.shape[1]} tokens, the model takes at most {self.max_length}")
        return self.embed(ids) + self.pos[:, : ids.shape[1]]  # (B, L, W)


class ModalityEncoder(nn.Module):
    """Stem + modality-specific blocks (the shared trunk, if any, follows in the hybrid model)."""

    def __init__(self, stem: PatchStem | TextStem | SequenceStem, width: int, depth: int, heads: int, mlp_ratio: float,
                 drop_path: float) -> None:
        super().__init__()
        self.stem: PatchStem | TextStem | SequenceStem = stem
        self.blocks = make_blocks(width, depth, heads, mlp_ratio, drop_path)

    def forward(self, tokens: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        for blk in self.blocks:
            tokens = blk(tokens, attn_mask=attn_mask)
        return tokens


class SequenceStem(nn.Module):
    """Frame projection with learned positions for one feature stream (see the module docstring)."""

    def __init__(self, dim: int, patch: int, max_tokens: int, width: int) -> None:
        super().__init__()
        if dim < 1 or patch < 1 or max_tokens < 1:
            raise ValueError(f"a sequence stem needs dim, patch, max_tokens >= 1, got {dim}, {patch}, {max_tokens}")
        self.dim, self.patch, self.max_tokens = dim, patch, max_tokens
        self.proj = nn.Linear(patch * dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        nn.init.normal_(self.mask_token, std=0.02)
        self.pos = nn.Parameter(torch.zeros(1, max_tokens, width))
        nn.init.trunc_normal_(self.pos, std=0.02)

    @property
    def num_tokens(self) -> int:
        return self.max_tokens

    def group(self, frames: Tensor) -> Tensor:
        """(B, T, D) → (B, T/patch, patch·D), checking the shape."""
        if frames.ndim != 3 or frames.shape[2] != self.dim:
            raise ValueError(f"the sequence has shape {tuple(frames.shape)}, the tower takes (B, T, {self.dim} channels)")
        self._check_length(frames.shape[1])
        return frames.reshape(frames.shape[0], -1, self.patch * self.dim)   # -1: the time axis stays dynamic in ONNX

    def _check_length(self, t: int) -> None:
        if t % self.patch or t // self.patch > self.max_tokens or t == 0:
            raise ValueError(f"the sequence has {t} frames; the tower takes a non-zero multiple of {self.patch} "
                             f"up to {self.max_tokens * self.patch}")

    def token_mask(self, frame_mask: Tensor) -> Tensor:
        """frame_mask (B, T) → (B, T/patch) bool: tokens with at least one real frame."""
        self._check_length(frame_mask.shape[-1])
        return frame_mask.reshape(frame_mask.shape[0], -1, self.patch).bool().any(-1)

    def forward(self, frames: Tensor, masked: Tensor | None = None) -> Tensor:
        x = self.proj(self.group(frames))                                                   # (B, N, W)
        if masked is not None:
            x = torch.where(masked.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        return x + self.pos[:, : x.shape[1]]
