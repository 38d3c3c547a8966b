"""Which rows of a contrastive batch belong together: rows of two modalities that are the same
item (:func:`common_rows`), and items with identical captions, which are positives of each other
rather than negatives (:func:`duplicate_captions` within a batch, :func:`caption_codes` across ranks)."""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import Tensor

from hybridssl import dist


def common_rows(ia: Tensor, ib: Tensor) -> tuple[Tensor, Tensor]:
    """Rows of a and of b that belong to the same batch items, in the same order."""
    pos_b = {int(v): j for j, v in enumerate(ib.tolist())}
    pa, pb = [], []
    for i, v in enumerate(ia.tolist()):
        if v in pos_b:
            pa.append(i)
            pb.append(pos_b[v])
    return torch.tensor(pa, dtype=torch.long), torch.tensor(pb, dtype=torch.long)


def duplicate_captions(captions: list[str | None]) -> Tensor:
    """(B, B) bool: True where two items carry the identical caption (not penalised as negatives)."""
    norm = [(c or "").strip().lower() for c in captions]
    ids = {c: i for i, c in enumerate(dict.fromkeys(norm))}
    code = torch.tensor([ids[c] for c in norm])                       # (B,) one id per distinct caption
    present = torch.tensor([c != "" for c in norm])
    return (code[:, None] == code[None, :]) & present[:, None] & present[None, :]


def caption_codes(captions: list[str | None]) -> Tensor:
    """(B,) int64: a 62-bit hash of each normalised caption (as in :func:`duplicate_captions`), −1 for none —
    comparable across ranks, unlike the per-batch ids of :func:`duplicate_captions`."""
    norm = [(c or "").strip().lower() for c in captions]
    codes = [int.from_bytes(hashlib.blake2b(c.encode(), digest_size=8).digest(), "little") >> 2 if c else -1
             for c in norm]
    return torch.tensor(codes, dtype=torch.long)


def caption_positive_mask(captions: list[str | None], g: Any, device: torch.device) -> Tensor:
    """Duplicate-caption mask: (B, B) locally, or this rank's (B, M) rows of the global mask."""
    if g is None:
        return duplicate_captions(captions)
    code = caption_codes(captions).to(device)                     # (B,)
    everyone = dist.gather_rows(code)                              # (M,)
    return (code[:, None] == everyone[None, :]) & (code >= 0)[:, None] & (everyone >= 0)[None, :]
