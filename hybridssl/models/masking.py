"""Random token masking (MAE, He et al. 2022, and FLIP, Li et al. 2023).

For tokens ``x`` (B, N, D) and ratio ρ, each sample keeps ``n_keep = max(1, round(N·(1−ρ)))``
tokens chosen uniformly without replacement (argsort of i.i.d. uniform noise):

* ``ids_keep``    (B, n_keep) indices of the visible tokens, in shuffled order,
* ``mask``        (B, N) float, 1 = masked (to reconstruct), 0 = visible,
* ``ids_restore`` (B, N) the inverse permutation, to put decoder tokens back in place.

Variable-length sequences (:func:`frame_token_masking`) are masked in place instead (BERT / wav2vec 2.0
style: a learned [MASK] embedding replaces the masked tokens, every position stays, padding keeps its
attention mask): of the n_b real tokens of row b, ``max(1, ⌊ρ·n_b⌋)`` (none when n_b = 1) with the
lowest noise are masked, the noise being drawn as (B, N_max) so the draw does not depend on the batch's
padded length.
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


def frame_token_masking(real: Tensor, ratio: float, n_max: int, generator: torch.Generator | None = None) -> Tensor:
    """real (B, N) bool (the tokens holding at least one real frame) → masked (B, N) bool (module doc)."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    b, n = real.shape
    noise = torch.rand(b, n_max, generator=generator, device="cpu").to(real.device)[:, :n]   # (B, N)
    noise = torch.where(real, noise, torch.full_like(noise, 2.0))                            # padding: never chosen
    rank = noise.argsort(1).argsort(1)                                                      # (B, N) 0 = lowest
    n_real = real.sum(1)                                                                    # (B,)
    n_mask = torch.where(n_real > 1, (ratio * n_real).floor().long().clamp_min(1), torch.zeros_like(n_real))
    return (rank < n_mask[:, None]) & real
