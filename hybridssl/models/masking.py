"""Random token masking (MAE, He et al. 2022, and FLIP, Li et al. 2023).

For tokens ``x`` (B, N, D) and ratio ρ, each sample keeps ``n_keep = max(1, round(N·(1−ρ)))``
tokens chosen uniformly without replacement (argsort of i.i.d. uniform noise):

* ``ids_keep``    (B, n_keep) indices of the visible tokens, in shuffled order,
* ``mask``        (B, N) float, 1 = masked (to reconstruct), 0 = visible,
* ``ids_restore`` (B, N) the inverse permutation, to put decoder tokens back in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Masking:
    ids_keep: Tensor     # (B, n_keep)
    mask: Tensor         # (B, N) 1 = masked
    ids_restore: Tensor  # (B, N)


def random_masking(batch: int, n_tokens: int, ratio: float, device: torch.device | str = "cpu",
                   generator: torch.Generator | None = None) -> Masking:
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    n_keep = max(1, int(round(n_tokens * (1.0 - ratio))))
    noise = torch.rand(batch, n_tokens, generator=generator, device="cpu").to(device)  # (B, N)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :n_keep]
    mask = torch.ones(batch, n_tokens, device=device)
    mask[:, :n_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return Masking(ids_keep, mask, ids_restore)


def gather_tokens(x: Tensor, ids: Tensor) -> Tensor:
    """x (B, N, D), ids (B, K) → (B, K, D)."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
