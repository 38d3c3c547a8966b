"""Tensor augmentations of the training views."""

from __future__ import annotations

import torch
from torch import Tensor


def permute_colours(x: Tensor, spec, generator: torch.Generator | None) -> Tensor:
    """A colour-changed view of normalised images (B, 3, H, W): each image's RGB channels permuted
    by one of the 5 non-identity permutations (in [0, 1] space, then normalised again), so a view
    pair agrees on shape, size, position and texture but not on colour (SimCLR's colour distortion)."""
    mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    perms = torch.tensor([[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]], device=x.device)
    pick = perms[torch.randint(0, 5, (x.shape[0],), generator=generator, device="cpu").to(x.device)]  # (B, 3)
    raw = x * std + mean
    permuted = torch.gather(raw, 1, pick[:, :, None, None].expand(-1, -1, *x.shape[2:]))
    return (permuted - mean) / std
