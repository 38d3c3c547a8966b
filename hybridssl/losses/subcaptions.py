"""Sub-caption contrast: every non-text embedding is also matched to a short random span of its own
caption (the "sub-caption" alignment of DreamLIP, Zheng et al. 2024, and of FLAIR, Xiao et al. 2025,
reduced to its core for short captions).

For an item with caption tokens ``[CLS] t_1 … t_n [SEP]`` (the ``n`` content tokens: attended and not
special) draw a span length ``k = 1 + ⌊u₁ · min(K, n)⌋`` and a start ``s = ⌊u₂ · (n − k + 1)⌋`` (u₁, u₂
uniform from the step's generator; ``K = loss.subcaption_tokens``); the sub-caption is
``[CLS] t_{s+1} … t_{s+k} [SEP]``, padded. With ê_m the joint embedding of modality m and ŝ that of
the sub-caption (the text tower, unmasked),

    L_sub/m = InfoNCE(ê_m, ŝ)      (symmetric, the shared temperature; items whose spans are the
                                    same token sequence are positives of each other, not negatives)

Why: a full caption names all five attributes of a scene, so InfoNCE is minimised by whichever
attributes already tell a batch's pairs apart ("feature suppression") and the rest (shape) never
enters the joint space. A span names one or two of them: the image whose span is "star" can only be
told from the other images' spans ("red", "on the left", "striped") by its shape, so EVERY attribute
the captions name gets a gradient, on both towers; and the span looks like the short prompts
zero-shot classification reads ("a star"), which full captions never do.

Shapes: ``token_ids`` / ``attention`` (B, L) → spans (B, L) and their attention (B, L) bool.
Single-process exact; under torchrun every rank draws the spans of its own captions and scores them
against its own rows (like the NT-Xent terms).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hybridssl.losses.infonce import info_nce
from hybridssl.losses.mlm import content_tokens
from hybridssl.losses.positives import common_rows, duplicate_captions


def sample_spans(token_ids: Tensor, attention: Tensor, special_ids: Sequence[int], pad_id: int,
                 max_tokens: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``(spans (B, L), span_attention (B, L) bool)``: ``[CLS]`` + a random span of at most
    ``max_tokens`` content tokens + ``[SEP]`` per caption (the row's first and last attended tokens
    frame it), trimmed to the longest span's length. A caption without content tokens keeps its frame
    only (an empty span)."""
    if max_tokens < 1:
        raise ValueError(f"a sub-caption needs at least one token, got loss.subcaption_tokens={max_tokens!r}")
    bsz, length = token_ids.shape
    attn = attention.bool()
    content = content_tokens(token_ids, attn, special_ids)                      # (B, L)
    dev = generator.device if generator is not None else token_ids.device
    u = torch.rand(bsz, 2, generator=generator, device=dev).to(token_ids.device)  # (B, 2): length, start
    spans = torch.full_like(token_ids, int(pad_id))
    span_attn = torch.zeros_like(attn)
    for i in range(bsz):
        real = attn[i].nonzero().flatten()
        if real.numel() == 0:
            continue
        pos = content[i].nonzero().flatten()                                   # (n,)
        n = int(pos.numel())
        k = min(1 + int(u[i, 0] * min(max_tokens, n)), n) if n else 0
        start = min(int(u[i, 1] * (n - k + 1)), n - k) if n else 0
        row = torch.cat([token_ids[i, real[:1]], token_ids[i, pos[start:start + k]], token_ids[i, real[-1:]]])
        row = row[:length]
        spans[i, :row.numel()] = row
        span_attn[i, :row.numel()] = True
    width = max(int(span_attn.sum(1).max()), 1) if bsz else 1                   # trimmed: spans are short
    return spans[:, :width], span_attn[:, :width]


def span_keys(spans: Tensor, span_attention: Tensor) -> list[str]:
    """One string per row naming its attended token sequence (equal spans → equal keys)."""
    return [" ".join(map(str, row[a].tolist())) for row, a in zip(spans, span_attention.bool())]


def subcaption_terms(model, text, batch: dict, embeddings: dict[str, Tensor], rows: dict[str, Tensor],
                     scale: Tensor, weight: float, max_tokens: int,
                     generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], dict[str, int]]:
    """Spans of the batch's clean captions, embedded by the text tower (unmasked), scored against
    ``embeddings`` (see :func:`subcaption_losses`); ``text`` carries ``special_ids`` and ``pad_id``."""
    if "text_ids" not in batch or "text" not in rows:
        return {}, {}
    spans, attn = sample_spans(batch["text_ids"], batch["text_attn"], text.special_ids, text.pad_id, max_tokens, generator)
    return subcaption_losses(model.embed("text", spans, attn), span_keys(spans, attn), embeddings, rows, scale, weight)


def subcaption_losses(span_embeddings: Tensor, span_keys_: list[str], embeddings: dict[str, Tensor],
                      rows: dict[str, Tensor], scale: Tensor, weight: float) -> tuple[dict[str, Tensor], dict[str, int]]:
    """``{"subcaption/<m>": weight · InfoNCE(ê_m, ŝ)}`` and anchor counts for every non-text modality
    embedded on items with a caption; ``span_embeddings`` (Bt, E) follow ``rows["text"]``."""
    losses, counts = {}, {}
    for m, e in embeddings.items():
        if m == "text":
            continue
        im, it = common_rows(rows[m], rows["text"])
        if im.numel() < 2:
            continue
        mask = duplicate_captions([span_keys_[j] for j in it.tolist()]).to(e.device)
        losses[f"subcaption/{m}"] = weight * info_nce(e[im], span_embeddings[it], scale, positive_mask=mask)
        counts[f"subcaption/{m}"] = int(im.numel())
    return losses, counts
