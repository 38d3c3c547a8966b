"""Hard negative captions by word replacement (as NegCLIP; Yuksekgonul et al. 2023, "When and why
vision-language models behave like bags-of-words, and what to do about it").

A negative of caption c replaces ONE word of c, chosen uniformly, by a word drawn uniformly from the
other captions of the same batch that c does not contain ("a small red striped triangle" → "a small
red striped circle", or "… blue …"). Added to the image→text (and audio→text) InfoNCE denominators,
such a negative differs from the true caption in one factor only, so the loss can no longer be
lowered by the factors the in-batch negatives already separate (colour, size): it pushes the
embedding to encode every factor the captions name — the remedy for the feature suppression that
left shape unlearned.

Deterministic: the generator is seeded by a hash of the batch's captions, so the same batch gives
the same negatives in any process, worker or resume. Under torchrun each rank draws replacement
words from its own slice of the batch (documented exception to single-process equivalence).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def batch_generator(captions: Sequence[str]) -> np.random.Generator:
    digest = hashlib.blake2b("\x1f".join(captions).encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def replace_one_word(caption: str, pool: Sequence[str], rng: np.random.Generator) -> str:
    """``caption`` with one word replaced by a pool word it does not contain (``caption`` itself
    when the pool offers none)."""
    words = caption.split()
    candidates = sorted(set(pool) - set(words))
    if not words or not candidates:
        return caption
    at = int(rng.integers(len(words)))
    words[at] = candidates[int(rng.integers(len(candidates)))]
    return " ".join(words)


def caption_negatives(captions: Sequence[str], n: int) -> list[list[str]]:
    """``n`` word-replacement negatives of every caption (``out[i][s]``), replacement words drawn
    from the other captions of the batch."""
    if n < 0:
        raise ValueError(f"the number of caption negatives must be >= 0, got {n}")
    rng = batch_generator(captions)
    words = [c.split() for c in captions]
    out = []
    for i, c in enumerate(captions):
        candidates = sorted({w for j, ws in enumerate(words) if j != i for w in ws} - set(words[i]))  # once per caption
        out.append([replace_one_word(c, candidates, rng) for _ in range(n)])
    return out
