"""Masked-token prediction (BERT; Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional
Transformers for Language Understanding", Sec. 3.1).

``mask_tokens``: ids (B, L) long, attention (B, L) bool (True = real token).  The eligible
positions of a sequence are its real, non-special tokens (E_b of them).  Exactly
``k_b = max(1, round(ratio · E_b))`` of them are selected uniformly at random (k_b = 0 when
E_b = 0); each selected token is then

    replaced by ``mask_token_id``                                       with probability 0.8
    replaced by a uniform random non-special id in [0, vocab_size)      with probability 0.1
    left unchanged                                                      with probability 0.1

Returns (corrupted ids (B, L), selected (B, L) bool).  Padding and special tokens are never
selected nor changed.  Random draws use ``generator`` on its own device (the ids' device without
one), so a CPU generator gives the same corruption on any device.

``masked_token_loss``: logits (B, L, V), targets (B, L) (the ORIGINAL ids), selected (B, L):

    L = mean_{(b, l) selected} CE(logits_{bl}, targets_{bl})
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["TextMasking", "mask_tokens", "masked_token_loss", "MASK_PROB", "RANDOM_PROB"]

MASK_PROB = 0.8     # selected → [MASK]
RANDOM_PROB = 0.1   # selected → random token (the remaining 0.1 stay unchanged)


@dataclass
class TextMasking:
    """What masking needs to know of the tokenizer: the [MASK] id, the vocabulary size, the special ids
    (never selected) and the padding id."""

    mask_id: int
    vocab_size: int
    special_ids: list[int]
    pad_id: int = 0


def _check_inputs(ids: Tensor, attention: Tensor, mask_token_id: int, vocab_size: int, ratio: float) -> None:
    if ids.ndim != 2 or ids.dtype != torch.long:
        raise ValueError(f"mask_tokens expects ids (B, L) of dtype long, got {tuple(ids.shape)} {ids.dtype}")
    if attention.shape != ids.shape:
        raise ValueError(f"attention must have the shape of ids {tuple(ids.shape)}, got {tuple(attention.shape)}")
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    if not 0 <= mask_token_id < vocab_size:
        raise ValueError(f"mask_token_id {mask_token_id} is outside the vocabulary [0, {vocab_size})")
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"the masking ratio must lie in (0, 1], got {ratio!r}")


def content_tokens(ids: Tensor, attention: Tensor, special_ids: Sequence[int]) -> Tensor:
    """(B, L) bool: the real (attended), non-special tokens of each sequence."""
    special = torch.tensor(sorted(set(int(s) for s in special_ids)), dtype=torch.long, device=ids.device)
    return attention.bool() & ~torch.isin(ids, special)


def _random_pool(vocab_size: int, special_ids: Sequence[int], device: torch.device) -> Tensor:
    """The ids a selected token may be replaced with: [0, vocab_size) minus the special ids."""
    keep = torch.ones(vocab_size, dtype=torch.bool)
    special = [s for s in special_ids if 0 <= s < vocab_size]
    keep[torch.tensor(special, dtype=torch.long)] = False
    pool = keep.nonzero().squeeze(1)  # (V',)
    if pool.numel() == 0:
        raise ValueError("every id of the vocabulary is special: no random replacement token exists")
    return pool.to(device)


def _select(eligible: Tensor, ratio: float, generator: torch.Generator | None, dev: torch.device) -> Tensor:
    """Exactly max(1, round(ratio·E_b)) uniformly random eligible positions per row (B, L) bool."""
    n_eligible = eligible.sum(dim=1)  # (B,)
    k = torch.clamp(torch.round(ratio * n_eligible.to(torch.float64)).long(), min=1)  # (B,)
    k = torch.where(n_eligible > 0, k, torch.zeros_like(k))
    scores = torch.rand(eligible.shape, generator=generator, device=dev).to(eligible.device)  # (B, L) in [0, 1)
    scores = scores.masked_fill(~eligible, 2.0)  # ineligible positions rank last
    ranks = scores.argsort(dim=1).argsort(dim=1)  # (B, L) rank of each position within its row
    return ranks < k.unsqueeze(1)


def mask_tokens(
    ids: Tensor,
    attention: Tensor,
    *,
    mask_token_id: int,
    vocab_size: int,
    ratio: float,
    special_ids: Sequence[int],
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT's 80/10/10 corruption of ~ratio of the real, non-special tokens (see module doc)."""
    _check_inputs(ids, attention, mask_token_id, vocab_size, ratio)
    dev = generator.device if generator is not None else ids.device
    eligible = content_tokens(ids, attention, special_ids)  # (B, L)
    selected = _select(eligible, ratio, generator, dev)  # (B, L)
    u = torch.rand(ids.shape, generator=generator, device=dev).to(ids.device)  # (B, L)
    to_mask = selected & (u < MASK_PROB)
    to_random = selected & (u >= MASK_PROB) & (u < MASK_PROB + RANDOM_PROB)
    pool = _random_pool(vocab_size, special_ids, ids.device)
    pick = torch.randint(0, pool.numel(), ids.shape, generator=generator, device=dev).to(ids.device)
    corrupted = torch.where(to_random, pool[pick], ids)
    corrupted = corrupted.masked_fill(to_mask, mask_token_id)
    return corrupted, selected


def masked_token_loss(logits: Tensor, targets: Tensor, selected: Tensor) -> Tensor:
    """Mean cross-entropy of logits (B, L, V) against targets (B, L) over the selected positions."""
    if logits.ndim != 3 or targets.shape != logits.shape[:2] or selected.shape != targets.shape:
        raise ValueError(f"masked_token_loss expects logits (B, L, V), targets and selected (B, L), got "
                         f"{tuple(logits.shape)}, {tuple(targets.shape)} and {tuple(selected.shape)}")
    if selected.dtype != torch.bool:
        raise ValueError(f"selected must be a bool tensor, got dtype {selected.dtype}")
    if not bool(selected.any()):
        raise ValueError("masked_token_loss: no position is selected, the loss is undefined")
    return F.cross_entropy(logits[selected], targets[selected])  # (n_selected, V) → ()
