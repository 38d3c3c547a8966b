"""Relational (affinity) distillation of a cross-modal pair: the student's in-batch similarity
distribution is matched to the teacher's (TinyCLIP "affinity mimicking", Wu et al. 2023; the
"ICL/CRD" relational losses of CLIP-KD, Yang et al. 2024).

Inputs: student embeddings ``s_a`` (B, E), ``s_b`` (B, E) and teacher embeddings ``t_a``, ``t_b``
(B, E) of the same B items (row i of each is item i); ``temperature`` τ > 0. With the row-wise
softmax over the batch,

    P^{a→b}_i = softmax_j(<t_a,i, t_b,j> / τ)    Q^{a→b}_i = softmax_j(<s_a,i, s_b,j> / τ)     (B, B)
    P^{b→a}_i = softmax_j(<t_b,i, t_a,j> / τ)    Q^{b→a}_i = softmax_j(<s_b,i, s_a,j> / τ)

    L_{a→b} = 1/B Σ_i KL(P^{a→b}_i ‖ Q^{a→b}_i) = 1/B Σ_i Σ_j P_ij (log P_ij − log Q_ij)
    L = (L_{a→b} + L_{b→a}) / 2

The teacher side is a target (the caller detaches it). One side of the student pair may itself be
teacher embeddings (distilling one tower against the frozen teacher's other tower, as CLIP-KD's ICL).
Returns a 0-d tensor, ≥ 0, zero iff the student's affinities equal the teacher's row by row.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def _check(s_a: Tensor, s_b: Tensor, t_a: Tensor, t_b: Tensor, temperature: float) -> None:
    shapes = [tuple(x.shape) for x in (s_a, s_b, t_a, t_b)]
    if any(len(s) != 2 for s in shapes) or len({s[0] for s in shapes}) != 1:
        raise ValueError(f"affinity distillation needs four (B, E) tensors over the same B items, got {shapes}")
    if shapes[0][1] != shapes[1][1] or shapes[2][1] != shapes[3][1]:
        raise ValueError(f"each pair must share its embedding dim, got {shapes}")
    if shapes[0][0] < 2:
        raise ValueError("affinity distillation needs at least 2 items (an in-batch distribution)")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")


def _direction(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """1/B Σ_i KL(softmax(teacher_i) ‖ softmax(student_i)) for (B, B) logits."""
    log_q = F.log_softmax(student_logits, dim=1)                         # (B, B)
    log_p = F.log_softmax(teacher_logits.to(student_logits.dtype), dim=1)
    return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)


def affinity_distillation(s_a: Tensor, s_b: Tensor, t_a: Tensor, t_b: Tensor, temperature: float) -> Tensor:
    """(L_{a→b} + L_{b→a}) / 2 of the module docstring."""
    _check(s_a, s_b, t_a, t_b, temperature)
    student = s_a @ s_b.T / temperature                                  # (B, B)
    teacher = t_a @ t_b.T / temperature                                  # (B, B)
    return (_direction(student, teacher) + _direction(student.T, teacher.T)) / 2
