"""Symmetric InfoNCE of paired embeddings (CLIP; Radford et al. 2021, "Learning Transferable
Visual Models From Natural Language Supervision"; van den Oord et al. 2018, "Representation
Learning with Contrastive Predictive Coding").

Inputs: ``a, b`` (B, D) L2-normalised, row i of ``a`` paired with row i of ``b``; ``scale = 1/T``.
Direction a→b, for every anchor i, cross-entropy with target i over the candidates

    [ scale·<a_i, b_j>  (j = 1..B)  |  scale·<a_i, queue_b[k]>  (k = 1..K)  |  scale·<a_i, extra_ab[i, s]>  (s = 1..S) ]

    L_ab = -1/B Σ_i log( exp(scale·<a_i, b_i>) / Σ_{candidates c of i} exp(c) )

Direction b→a is the same with the roles swapped (``queue_a``, ``extra_negatives_ba``) and
``loss = (L_ab + L_ba) / 2``.  Only the B×B in-batch block is "paired"; queue entries and extra
(e.g. MoCHi-mixed) negatives are negatives only.

``positive_mask`` (B, B) bool: True at (i, j), j ≠ i, when items i and j are semantically identical
(e.g. the same caption).  Such pairs are REMOVED from the denominators (logit set to −inf) in both
directions — (i, j) for a→b, (j, i) for b→a — so duplicates are not pushed apart.  The diagonal is
always the positive, whatever the mask says there.

Non-finite embeddings are not rejected here (that would cost a device sync every step): they give
a non-finite loss, which the trainer detects and skips.

Distributed (``InfoNCELoss(gather_distributed=True)``, world size W > 1): a and b are gathered
from every rank WITH gradients (``hybridssl.dist.gather_with_grad``); each rank computes the loss
of its B_r local anchors against the M = Σ_r B_r global candidates, target ``offset_r + i`` with
``offset_r = Σ_{s<r} B_s``.  The gather's backward sums every rank's gradient into the rank that
owns a row, so DDP's gradient averaging yields the gradient of the loss over the global batch when
every rank holds the same B; with unequal B_r the caller weights rank r's loss by W·B_r/M (the
hybrid task does).  Two ways in:

* ``forward(a, b, scale)`` gathers itself; every rank must hold the same B (``drop_last``), and
  ``positive_mask`` (B, B) describes the local block only (duplicates on other ranks stay negatives);
* ``g = loss.gather(a, b)`` (any B_r, even 0) then ``forward(a, b, scale, gathered=g)``: the caller
  may reuse ``g.a_all`` / ``g.b_all`` (hard negatives, statistics), and ``positive_mask`` may be
  (B, M): this rank's rows of a SYMMETRIC global mask (used for both directions).  A rank with
  B_r = 0 returns a zero that is still connected to the gathered tensors, so the collective in the
  backward pass runs on every rank.

Queues and extra negatives are used as given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GatheredPair", "InfoNCELoss", "chance_level", "info_nce"]


def chance_level(n: int) -> float:
    """``log(n)``: the cross-entropy of a uniform classifier over ``n`` candidates (InfoNCE at chance)."""
    if int(n) != n or n < 1:
        raise ValueError(f"chance_level needs a positive integer number of candidates, got {n!r}")
    return math.log(n)


# ------------------------------------------------------------------------------ validation
def _check_pair(a: Tensor, b: Tensor) -> None:
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"info_nce expects a and b of shape (B, D), got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 1:
        raise ValueError("info_nce needs at least one pair (B >= 1), got an empty batch")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b must hold the same number of rows (pairs), got {a.shape[0]} and {b.shape[0]}")
    if a.shape[1] != b.shape[1] or a.shape[1] < 1:
        raise ValueError(f"a and b must share a positive embedding dim D, got {a.shape[1]} and {b.shape[1]}")


def _check_scale(scale: Tensor) -> None:
    if scale.numel() != 1:
        raise ValueError(f"scale must be a scalar (1/temperature), got shape {tuple(scale.shape)}")


def _check_queue(name: str, q: Tensor | None, d: int) -> None:
    if q is not None and (q.ndim != 2 or q.shape[1] != d):
        raise ValueError(f"{name} must have shape (K, {d}), got {tuple(q.shape)}")


def _check_extra(name: str, e: Tensor | None, bsz: int, d: int) -> None:
    if e is not None and (e.ndim != 3 or e.shape[0] != bsz or e.shape[2] != d):
        raise ValueError(f"{name} must have shape ({bsz}, S, {d}), got {tuple(e.shape)}")


def _check_mask(mask: Tensor | None, bsz: int, total: int | None = None) -> None:
    if mask is None:
        return
    if mask.dtype != torch.bool:
        raise ValueError(f"positive_mask must be a bool tensor, got dtype {mask.dtype}")
    shapes = {(bsz, bsz)} | ({(bsz, total)} if total is not None else set())
    if tuple(mask.shape) not in shapes:
        want = " or ".join(str(s) for s in sorted(shapes))
        raise ValueError(f"positive_mask must have shape {want}, got {tuple(mask.shape)}")


# ------------------------------------------------------------------------------ core
def _one_direction(
    anchors: Tensor,
    candidates: Tensor,
    targets: Tensor,
    scale: Tensor,
    queue: Tensor | None,
    extra: Tensor | None,
    exclude: Tensor | None,
    beta: float = 0.0,
) -> Tensor:
    """Mean CE of ``anchors`` (B, D) over [candidates (M, D) | queue (K, D) | extra (B, S, D)].

    ``exclude`` (B, M) bool marks in-batch candidates removed from the denominator; ``beta`` > 0
    re-weights the negatives as in :func:`hard_negative_logits`.
    """
    logits = [scale * anchors @ candidates.T]  # (B, M)
    if exclude is not None:
        logits[0] = logits[0].masked_fill(exclude, float("-inf"))
    if queue is not None:
        logits.append(scale * anchors @ queue.to(anchors.dtype).T)  # (B, K)
    if extra is not None:
        logits.append(scale * torch.einsum("bd,bsd->bs", anchors, extra.to(anchors.dtype)))  # (B, S)
    out = torch.cat(logits, dim=1)  # (B, M+K+S)
    return F.cross_entropy(hard_negative_logits(out, targets, beta) if beta > 0 else out, targets)


def hard_negative_logits(logits: Tensor, targets: Tensor, beta: float) -> Tensor:
    """Hard-negative re-weighting (Robinson et al. 2021, "Contrastive Learning with Hard Negative
    Samples", without debiasing): the denominator's negative sum Σ_j exp(l_j) becomes
    N·Σ_j w_j exp(l_j) with importance weights w_j = exp(β l_j) / Σ_k exp(β l_k) over the N finite
    negatives of the row — i.e. ``l_j += log(N·w_j)``, treated as constants (no gradient through w).
    The positive logit is unchanged. Negatives the anchor already finds similar dominate the loss, so
    features that separate them (e.g. the one attribute two otherwise equal scenes differ in) are
    learned instead of being suppressed by easier ones."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    negative = torch.isfinite(logits)
    negative[rows, targets] = False
    with torch.no_grad():
        scaled = (beta * logits).masked_fill(~negative, float("-inf"))                       # (B, C)
        n = negative.sum(dim=1, keepdim=True).clamp(min=1).to(logits.dtype)
        log_w = scaled - torch.logsumexp(scaled, dim=1, keepdim=True) + torch.log(n)         # (B, C)
    return torch.where(negative, logits + log_w, logits)


def _duplicates(positive_mask: Tensor | None, offset: int, total: int) -> Tensor | None:
    """(B, B) local or (B, total) global mask → (B, total) exclusion mask, the positives (i, offset+i)
    cleared; a local mask is placed at columns offset..offset+B."""
    if positive_mask is None:
        return None
    bsz = positive_mask.shape[0]
    rows = torch.arange(bsz, device=positive_mask.device)
    if positive_mask.shape[1] == total:  # already (B, total) (or the single-process (B, B))
        out = positive_mask.clone()
    else:
        out = torch.zeros(bsz, total, dtype=torch.bool, device=positive_mask.device)  # (B, M)
        out[:, offset:offset + bsz] = positive_mask
    out[rows, rows + offset] = False
    return out


def _symmetric(
    a: Tensor,
    b: Tensor,
    a_all: Tensor,
    b_all: Tensor,
    offset: int,
    scale: Tensor,
    queue_a: Tensor | None,
    queue_b: Tensor | None,
    extra_ab: Tensor | None,
    extra_ba: Tensor | None,
    positive_mask: Tensor | None,
    beta: float = 0.0,
) -> Tensor:
    """(L_ab + L_ba) / 2 of the local rows a, b (B, D) against the candidates a_all, b_all (M, D)."""
    bsz, total = a.shape[0], a_all.shape[0]
    targets = torch.arange(bsz, device=a.device) + offset  # (B,)
    if positive_mask is not None:
        positive_mask = positive_mask.to(a.device)
    ex_ab = _duplicates(positive_mask, offset, total)
    local_block = positive_mask is not None and positive_mask.shape[1] == bsz
    ex_ba = _duplicates(positive_mask.T if local_block and positive_mask is not None else positive_mask, offset, total)  # (B, M): symmetric
    loss_ab = _one_direction(a, b_all, targets, scale, queue_b, extra_ab, ex_ab, beta)
    loss_ba = _one_direction(b, a_all, targets, scale, queue_a, extra_ba, ex_ba, beta)
    return (loss_ab + loss_ba) / 2


def _validate(a, b, scale, queue_a, queue_b, extra_ab, extra_ba, positive_mask, total: int | None = None) -> Tensor:
    _check_pair(a, b)
    scale = torch.as_tensor(scale, dtype=a.dtype, device=a.device)
    _check_scale(scale)
    bsz, d = a.shape
    _check_queue("queue_a", queue_a, d)
    _check_queue("queue_b", queue_b, d)
    _check_extra("extra_negatives_ab", extra_ab, bsz, d)
    _check_extra("extra_negatives_ba", extra_ba, bsz, d)
    _check_mask(positive_mask, bsz, total)
    return scale.reshape(())


def info_nce(
    a: Tensor,
    b: Tensor,
    scale: Tensor,
    *,
    queue_a: Tensor | None = None,
    queue_b: Tensor | None = None,
    extra_negatives_ab: Tensor | None = None,
    extra_negatives_ba: Tensor | None = None,
    positive_mask: Tensor | None = None,
    hard_negative_beta: float = 0.0,
) -> Tensor:
    """Symmetric InfoNCE ``(L_ab + L_ba) / 2`` of paired rows of ``a`` and ``b`` (see module doc).

    a, b: (B, D); scale: () ; queue_a/queue_b: (K, D); extra_negatives_*: (B, S, D);
    positive_mask: (B, B) bool; ``hard_negative_beta`` > 0: :func:`hard_negative_logits`.
    Returns a 0-d tensor.
    """
    scale = _validate(a, b, scale, queue_a, queue_b, extra_negatives_ab, extra_negatives_ba, positive_mask)
    return _symmetric(a, b, a, b, 0, scale, queue_a, queue_b, extra_negatives_ab, extra_negatives_ba,
                      positive_mask, hard_negative_beta)


# ------------------------------------------------------------------------------ distributed
_KEYS = ("queue_a", "queue_b", "extra_negatives_ab", "extra_negatives_ba", "positive_mask")


@dataclass
class GatheredPair:
    """Both sides of a pair gathered over ranks: a_all, b_all (M, D) with gradients; this rank's rows
    are ``offset .. offset + B_r``; ``world`` the number of ranks."""

    a_all: Tensor
    b_all: Tensor
    offset: int
    world: int


def _world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is unavailable or not initialised."""
    from hybridssl import dist

    return dist.rank(), dist.world_size()


def _gather_with_grad(x: Tensor, world: int) -> Tensor:
    """All rows of ``x`` (B, D) from every rank, (W·B, D), with gradients flowing back to each rank."""
    from hybridssl import dist

    out, sizes = dist.gather_with_grad(x)
    if len(set(sizes)) != 1:
        raise ValueError(f"gather_distributed needs the same batch size on every rank, got {sizes}; "
                         f"use InfoNCELoss.gather for ranks of different sizes")
    return out


class InfoNCELoss(nn.Module):
    """:func:`info_nce` as a module; with ``gather_distributed`` the candidates span all ranks."""

    def __init__(self, gather_distributed: bool = False, hard_negative_beta: float = 0.0) -> None:
        super().__init__()
        if not (hard_negative_beta >= 0 and hard_negative_beta < float("inf")):
            raise ValueError(f"hard_negative_beta must be a finite number >= 0, got {hard_negative_beta}")
        self.gather_distributed = gather_distributed
        self.beta = float(hard_negative_beta)

    def gather(self, a: Tensor, b: Tensor) -> GatheredPair | None:
        """Gather a, b (B_r, D) from every rank with gradients (any B_r ≥ 0); None when not gathering."""
        from hybridssl import dist

        rank, world = _world()
        if not self.gather_distributed or world == 1:
            return None
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"a and b must hold the same number of rows (pairs), got {a.shape[0]} and {b.shape[0]}")
        a_all, sizes = dist.gather_with_grad(a)  # (M, D)
        b_all, _ = dist.gather_with_grad(b)      # (M, D)
        return GatheredPair(a_all, b_all, sum(sizes[:rank]), world)

    def forward(self, a: Tensor, b: Tensor, scale: Tensor, *, gathered: GatheredPair | None = None,
                **kw: Tensor | None) -> Tensor:
        unknown = set(kw) - set(_KEYS)
        if unknown:
            raise TypeError(f"InfoNCELoss got unexpected keyword arguments {sorted(unknown)}")
        if gathered is not None:
            return self._from_gathered(a, b, scale, gathered, [kw.get(k) for k in _KEYS])
        rank, world = _world()
        if not self.gather_distributed or world == 1:
            return info_nce(a, b, scale, **kw, hard_negative_beta=self.beta)
        args: list[Any] = [kw.get(k) for k in _KEYS]
        qa, qb, eab, eba, pm = args
        scale = _validate(a, b, scale, qa, qb, eab, eba, pm)
        a_all = _gather_with_grad(a, world)  # (W·B, D)
        b_all = _gather_with_grad(b, world)  # (W·B, D)
        return _symmetric(a, b, a_all, b_all, rank * a.shape[0], scale, qa, qb, eab, eba, pm, self.beta)

    def _from_gathered(self, a: Tensor, b: Tensor, scale: Tensor, g: GatheredPair, args: list[Any]) -> Tensor:
        """Mean loss of the B_r local anchors against the M gathered candidates (0 when B_r = 0)."""
        total = g.a_all.shape[0]
        if not 0 <= g.offset <= total - a.shape[0] or g.b_all.shape[0] != total:
            raise ValueError(f"gathered rows {total} / {g.b_all.shape[0]} do not hold this rank's {a.shape[0]} rows "
                             f"at offset {g.offset}")
        if a.shape[0] == 0:  # nothing to score here, but the gather's backward must still run on this rank
            return (g.a_all.sum() + g.b_all.sum()) * 0.0
        qa, qb, eab, eba, pm = args
        scale = _validate(a, b, scale, qa, qb, eab, eba, pm, total=total)
        return _symmetric(a, b, g.a_all, g.b_all, g.offset, scale, qa, qb, eab, eba, pm, self.beta)
