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
from every rank WITH gradients (``torch.distributed.nn.functional.all_gather``); each rank computes
the loss of its B local anchors against the W·B global candidates, target ``rank·B + i``.  DDP's
gradient averaging then yields the gradient of the loss over the global batch.  Every rank must
hold the same B (use ``drop_last``).  ``positive_mask`` then describes the local B×B block only
(duplicates on other ranks stay negatives); queues and extra negatives are used as given.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["InfoNCELoss", "chance_level", "info_nce"]


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


def _check_mask(mask: Tensor | None, bsz: int) -> None:
    if mask is None:
        return
    if mask.dtype != torch.bool:
        raise ValueError(f"positive_mask must be a bool tensor, got dtype {mask.dtype}")
    if tuple(mask.shape) != (bsz, bsz):
        raise ValueError(f"positive_mask must have shape ({bsz}, {bsz}), got {tuple(mask.shape)}")


# ------------------------------------------------------------------------------ core
def _one_direction(
    anchors: Tensor,
    candidates: Tensor,
    targets: Tensor,
    scale: Tensor,
    queue: Tensor | None,
    extra: Tensor | None,
    exclude: Tensor | None,
) -> Tensor:
    """Mean CE of ``anchors`` (B, D) over [candidates (M, D) | queue (K, D) | extra (B, S, D)].

    ``exclude`` (B, M) bool marks in-batch candidates removed from the denominator.
    """
    logits = [scale * anchors @ candidates.T]  # (B, M)
    if exclude is not None:
        logits[0] = logits[0].masked_fill(exclude, float("-inf"))
    if queue is not None:
        logits.append(scale * anchors @ queue.to(anchors.dtype).T)  # (B, K)
    if extra is not None:
        logits.append(scale * torch.einsum("bd,bsd->bs", anchors, extra.to(anchors.dtype)))  # (B, S)
    return F.cross_entropy(torch.cat(logits, dim=1), targets)  # (B, M+K+S) -> ()


def _duplicates(positive_mask: Tensor | None, offset: int, total: int) -> Tensor | None:
    """Local (B, B) mask → (B, total) exclusion mask (diagonal cleared), placed at columns offset.."""
    if positive_mask is None:
        return None
    bsz = positive_mask.shape[0]
    local = positive_mask & ~torch.eye(bsz, dtype=torch.bool, device=positive_mask.device)  # (B, B)
    if offset == 0 and total == bsz:
        return local
    out = torch.zeros(bsz, total, dtype=torch.bool, device=positive_mask.device)  # (B, W·B)
    out[:, offset:offset + bsz] = local
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
) -> Tensor:
    """(L_ab + L_ba) / 2 of the local rows a, b (B, D) against the candidates a_all, b_all (M, D)."""
    bsz, total = a.shape[0], a_all.shape[0]
    targets = torch.arange(bsz, device=a.device) + offset  # (B,)
    if positive_mask is not None:
        positive_mask = positive_mask.to(a.device)
    ex_ab = _duplicates(positive_mask, offset, total)
    ex_ba = _duplicates(positive_mask.T if positive_mask is not None else None, offset, total)
    loss_ab = _one_direction(a, b_all, targets, scale, queue_b, extra_ab, ex_ab)
    loss_ba = _one_direction(b, a_all, targets, scale, queue_a, extra_ba, ex_ba)
    return (loss_ab + loss_ba) / 2


def _validate(a, b, scale, queue_a, queue_b, extra_ab, extra_ba, positive_mask) -> Tensor:
    _check_pair(a, b)
    scale = torch.as_tensor(scale, dtype=a.dtype, device=a.device)
    _check_scale(scale)
    bsz, d = a.shape
    _check_queue("queue_a", queue_a, d)
    _check_queue("queue_b", queue_b, d)
    _check_extra("extra_negatives_ab", extra_ab, bsz, d)
    _check_extra("extra_negatives_ba", extra_ba, bsz, d)
    _check_mask(positive_mask, bsz)
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
) -> Tensor:
    """Symmetric InfoNCE ``(L_ab + L_ba) / 2`` of paired rows of ``a`` and ``b`` (see module doc).

    a, b: (B, D); scale: () ; queue_a/queue_b: (K, D); extra_negatives_*: (B, S, D);
    positive_mask: (B, B) bool.  Returns a 0-d tensor.
    """
    scale = _validate(a, b, scale, queue_a, queue_b, extra_negatives_ab, extra_negatives_ba, positive_mask)
    return _symmetric(a, b, a, b, 0, scale, queue_a, queue_b, extra_negatives_ab, extra_negatives_ba,
                      positive_mask)


# ------------------------------------------------------------------------------ distributed
def _world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is unavailable or not initialised."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def _gather_with_grad(x: Tensor, world: int) -> Tensor:
    """All rows of ``x`` (B, D) from every rank, (W·B, D), with gradients flowing back to each rank."""
    from torch.distributed.nn.functional import all_gather

    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
    torch.distributed.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
    if len({int(s) for s in sizes}) != 1:
        raise ValueError(f"gather_distributed needs the same batch size on every rank, got {[int(s) for s in sizes]}")
    with warnings.catch_warnings():  # torch ≥ 2.6 marks it deprecated; its replacement is private API
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(all_gather(x.contiguous()), dim=0)


class InfoNCELoss(nn.Module):
    """:func:`info_nce` as a module; with ``gather_distributed`` the candidates span all ranks."""

    def __init__(self, gather_distributed: bool = False) -> None:
        super().__init__()
        self.gather_distributed = gather_distributed

    def forward(self, a: Tensor, b: Tensor, scale: Tensor, **kw: Tensor | None) -> Tensor:
        rank, world = _world()
        if not self.gather_distributed or world == 1:
            return info_nce(a, b, scale, **kw)
        unknown = set(kw) - {"queue_a", "queue_b", "extra_negatives_ab", "extra_negatives_ba", "positive_mask"}
        if unknown:
            raise TypeError(f"InfoNCELoss got unexpected keyword arguments {sorted(unknown)}")
        args = [kw.get(k) for k in ("queue_a", "queue_b", "extra_negatives_ab", "extra_negatives_ba",
                                    "positive_mask")]
        scale = _validate(a, b, scale, *args)
        a_all = _gather_with_grad(a, world)  # (W·B, D)
        b_all = _gather_with_grad(b, world)  # (W·B, D)
        return _symmetric(a, b, a_all, b_all, rank * a.shape[0], scale, *args)
