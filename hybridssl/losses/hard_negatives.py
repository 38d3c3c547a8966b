"""MoCHi hard-negative mixing (Kalantidis et al., NeurIPS 2020, "Hard Negative Mixing for
Contrastive Learning").

Inputs: queries q (B, D) and a bank of negatives n (K, D), both L2-normalised.  For every query:

* Q̃ = the ``n_hard`` negatives with the highest similarity <q, n_k> (all K if K < n_hard);
* ``n_mix`` synthetic negatives mixing two distinct hard negatives (Sec. 4.1, eq. 2):

      h = normalise( α·n_i + (1 − α)·n_j ),   n_i, n_j ∈ Q̃, i ≠ j (i = j only if |Q̃| = 1),  α ~ U(0, 1)

* ``n_query_mix`` synthetic negatives mixing the query in (Sec. 4.2, eq. 3):

      h' = normalise( β·q + (1 − β)·n_j ),   n_j ∈ Q̃,  β ~ U(0, 0.5)

Returns (B, n_mix + n_query_mix, D) — the n_mix mixes first — DETACHED: as in the paper no
gradient flows through the synthetic points (they are computed on the fly, like the queue).
K = 0 gives (B, 0, D).  Indices and coefficients are drawn on ``generator``'s device (or the
query's device without one), so a CPU generator gives the same mixes on any device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["add_caption_negatives", "embed_caption_negatives", "mix_hard_negatives"]


def _check(query: Tensor, negatives: Tensor, n_hard: int, n_mix: int, n_query_mix: int) -> None:
    if query.ndim != 2 or negatives.ndim != 2 or query.shape[1] != negatives.shape[1]:
        raise ValueError(f"mix_hard_negatives expects query (B, D) and negatives (K, D), got "
                         f"{tuple(query.shape)} and {tuple(negatives.shape)}")
    if n_hard < 1:
        raise ValueError(f"n_hard must be >= 1, got {n_hard}")
    if n_mix < 0 or n_query_mix < 0:
        raise ValueError(f"n_mix and n_query_mix must be >= 0, got {n_mix} and {n_query_mix}")


def _pick(hard: Tensor, idx: Tensor) -> Tensor:
    """hard (B, H, D), idx (B, S) → hard[b, idx[b, s]] (B, S, D)."""
    return torch.gather(hard, 1, idx.unsqueeze(-1).expand(-1, -1, hard.shape[-1]))


def _draws(bsz: int, h: int, n_mix: int, n_query_mix: int, generator: torch.Generator | None,
           device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Random indices into the hard set and mixing coefficients (i, j, α, j', β)."""
    dev = generator.device if generator is not None else device
    i = torch.randint(0, h, (bsz, n_mix), generator=generator, device=dev)  # (B, n_mix)
    if h > 1:  # j uniform over the hard set minus i
        j = (i + torch.randint(1, h, (bsz, n_mix), generator=generator, device=dev)) % h
    else:
        j = i.clone()
    alpha = torch.rand(bsz, n_mix, 1, generator=generator, device=dev)  # U(0, 1)
    jq = torch.randint(0, h, (bsz, n_query_mix), generator=generator, device=dev)  # (B, n_query_mix)
    beta = 0.5 * torch.rand(bsz, n_query_mix, 1, generator=generator, device=dev)  # U(0, 0.5)
    return tuple(t.to(device) for t in (i, j, alpha, jq, beta))  # type: ignore[return-value]


@torch.no_grad()
def mix_hard_negatives(
    query: Tensor,
    negatives: Tensor,
    *,
    n_hard: int,
    n_mix: int,
    n_query_mix: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """MoCHi synthetic negatives (B, n_mix + n_query_mix, D), detached (see module doc)."""
    _check(query, negatives, n_hard, n_mix, n_query_mix)
    q, neg = query.detach(), negatives.detach().to(query.dtype)
    bsz, d = q.shape
    if neg.shape[0] == 0 or n_mix + n_query_mix == 0:
        return q.new_zeros(bsz, 0, d)
    h = min(n_hard, neg.shape[0])
    hard_idx = (q @ neg.T).topk(h, dim=1).indices  # (B, h) most similar negatives first
    hard = neg[hard_idx]  # (B, h, D)
    i, j, alpha, jq, beta = _draws(bsz, h, n_mix, n_query_mix, generator, q.device)
    alpha, beta = alpha.to(q.dtype), beta.to(q.dtype)
    mixes = alpha * _pick(hard, i) + (1 - alpha) * _pick(hard, j)  # (B, n_mix, D)
    query_mixes = beta * q.unsqueeze(1) + (1 - beta) * _pick(hard, jq)  # (B, n_query_mix, D)
    return F.normalize(torch.cat([mixes, query_mixes], dim=1), dim=-1)  # (B, n_mix + n_query_mix, D)


def add_caption_negatives(kw: dict[str, Tensor], a: str, b: str, items: Tensor, text_items: Tensor,
                           negatives: Tensor) -> None:
    """Append each pair row's caption negatives to the denominators of the direction that scores
    captions (image→text is a→b for the pair (image, text); audio→text is b→a for (text, audio))."""
    row_of = {int(v): r for r, v in enumerate(text_items.tolist())}
    rows = torch.tensor([row_of[int(v)] for v in items.tolist()], dtype=torch.long, device=negatives.device)
    extra = negatives[rows]                                                  # (B, S, E)
    key = "extra_negatives_ab" if b == "text" else "extra_negatives_ba"
    kw[key] = torch.cat([kw[key], extra], dim=1) if key in kw else extra


def embed_caption_negatives(model, batch: dict, corrupt: Callable | None, generator) -> Tensor:
    """(Bt, S, E) embeddings of the word-replaced negatives of each caption
    (:mod:`hybridssl.data.caption_negatives`). With MLM the positives are the corrupted captions, so
    the negatives get the same corruption, ``corrupt(ids, attn, generator) → (ids, selected)``
    (independently drawn): "has [MASK]" must not tell a positive from a negative."""
    ids, attn = batch["text_neg_ids"], batch["text_neg_attn"]
    if corrupt is not None:
        ids, _ = corrupt(ids, attn, generator)
    e = model.embed("text", ids, attn)                                       # (Bt·S, E)
    return e.view(batch["text_ids"].shape[0], -1, e.shape[-1])
