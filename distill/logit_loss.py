"""Logit distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural
Network"): the student's class distribution at temperature T matched to the teacher's.

Inputs: ``student_logits`` (B, K), ``teacher_logits`` (B, K) (a target: the caller detaches it),
temperature T > 0:

    p_i = softmax(z^t_i / T),   q_i = softmax(z^s_i / T)
    L = T² · 1/B Σ_i KL(p_i ‖ q_i) = T² · 1/B Σ_i Σ_k p_ik (log p_ik − log q_ik)

The T² factor keeps the gradient magnitude independent of T (Hinton et al., §2). In the
distillation loop the "classification head" is the zero-shot head: logits = <e, c_k> / τ against the
teacher's class-prompt embeddings c_k (K, E). Returns a 0-d tensor.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def logit_distillation(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 4.0) -> Tensor:
    """T² · mean over rows of KL(softmax(teacher/T) ‖ softmax(student/T))."""
    if student_logits.ndim != 2 or student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits must both be (B, K), got {tuple(student_logits.shape)} "
                         f"and {tuple(teacher_logits.shape)}")
    if student_logits.shape[0] == 0 or student_logits.shape[1] < 2:
        raise ValueError(f"logit distillation needs B >= 1 rows of K >= 2 classes, got {tuple(student_logits.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    log_q = F.log_softmax(student_logits / temperature, dim=1)          # (B, K)
    log_p = F.log_softmax(teacher_logits.to(student_logits.dtype) / temperature, dim=1)
    return temperature**2 * F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)
