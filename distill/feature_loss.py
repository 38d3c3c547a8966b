"""Feature (embedding) distillation: pull each student embedding onto the teacher's embedding of
the same item (FitNets, Romero et al. 2015; applied to CLIP embeddings in CLIP-KD, Yang et al. 2024,
"CLIP-KD: An Empirical Study of CLIP Model Distillation", where it is the strongest single loss).

Inputs: ``student`` (B, E) and ``teacher`` (B, E), row i of both the same item (the teacher's side
is a target: it gets no gradient from here if the caller detaches it).

    cosine:  L = 1/B Σ_i (1 − <s_i, t_i> / (‖s_i‖ ‖t_i‖))
    mse:     L = 1/B Σ_i ‖s_i − t_i‖²₂          (= 2 · cosine for unit-norm rows)

Returns a 0-d tensor.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

KINDS = ("cosine", "mse")


def feature_distillation(student: Tensor, teacher: Tensor, kind: str = "cosine") -> Tensor:
    """Mean cosine distance or mean squared L2 distance between paired rows (module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"feature distillation kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if student.ndim != 2 or student.shape != teacher.shape:
        raise ValueError(f"student and teacher embeddings must both be (B, E), got {tuple(student.shape)} "
                         f"and {tuple(teacher.shape)}")
    if student.shape[0] == 0:
        raise ValueError("feature distillation needs at least one item, got an empty batch")
    teacher = teacher.to(student.dtype)
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(student, teacher, dim=1)).mean()     # (B,) → ()
    return (student - teacher).pow(2).sum(dim=1).mean()                         # (B,) → ()
