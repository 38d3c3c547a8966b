"""The distillation settings: which students, which losses with which weights, the teacher cache.

Everything else of a student run (data, optimizer, schedule, steps, seed, threads) is the teacher's
resolved :class:`hybridssl.config.RunConfig` with overrides, so the trainer machinery is shared.
Dotted overrides ``distill.KEY=VALUE`` address this dataclass, every other ``section.key=value``
the run config (e.g. ``train.lr=0.001``).

Loss (weights ≥ 0, a weight of 0 disables the term; at least one must be > 0)::

    L = w_feat · Σ_m feature(s_m, t_m)                         (distill.feature_loss_kind, feature_loss.py)
      + w_aff  · Σ_(a,b) affinity(s_a, s_b, t_a, t_b, τ_aff)    (affinity_loss.py)
      + w_kd   · Σ_m hinton(s_m C / τ, t_m C / τ, T)           (zero-shot head C, logit_loss.py)
      + w_con  · Σ_(a,b) InfoNCE(s_a, s_b, learnable scale)    (hybridssl.losses.infonce)

over the student modalities m and the modality pairs (a, b) with at least one student side (the
other side, when the student has no tower for it, is the frozen teacher's embedding).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from hybridssl.config import build_section, deep_update, parse_override

FEATURE_KINDS = ("cosine", "mse")


@dataclass
class DistillConfig:
    student: str = ""                   # student names, comma-separated; each fills its own modality ("": defaults)
    modalities: tuple[str, ...] = ()    # () = every modality of the teacher
    image_size: int = 0                 # student input size; 0 = the teacher's
    feature_loss_kind: str = "cosine"   # cosine | mse
    feature_weight: float = 1.0
    affinity_weight: float = 1.0
    affinity_temperature: float = 0.0   # 0 = the teacher's learned contrastive temperature
    logit_weight: float = 0.0
    logit_temperature: float = 4.0      # Hinton T
    contrastive_weight: float = 0.1
    cache_teacher: bool = False         # precompute teacher embeddings of the training set once
    cache_dir: str | None = None        # default TEACHER_RUN/distill_cache
    rebuild_cache: bool = False         # rebuild a cache whose fingerprint does not match

    def __post_init__(self) -> None:
        if self.feature_loss_kind not in FEATURE_KINDS:
            raise ValueError(f"distill.feature_loss_kind must be one of {', '.join(FEATURE_KINDS)}, "
                             f"got {self.feature_loss_kind!r}")
        weights = {k: getattr(self, k) for k in ("feature_weight", "affinity_weight", "logit_weight",
                                                  "contrastive_weight")}
        if any(not w >= 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
            raise ValueError(f"distillation loss weights must be >= 0 with at least one > 0, got {weights}")
        if self.image_size < 0 or self.affinity_temperature < 0 or not self.logit_temperature > 0:
            raise ValueError("distill.image_size and distill.affinity_temperature must be >= 0 and "
                             "distill.logit_temperature > 0")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DistillConfig":
        return build_section(cls, d, "distill.")


def split_overrides(overrides: list[str] | tuple[str, ...]) -> tuple[dict[str, Any], list[str]]:
    """``["distill.feature_weight=2", "train.lr=0.001"]`` → ({"feature_weight": 2}, ["train.lr=0.001"])."""
    distill: dict[str, Any] = {}
    rest: list[str] = []
    for item in overrides:
        if item.strip().startswith("distill."):
            distill = deep_update(distill, parse_override(item)["distill"])
        else:
            rest.append(item)
    return distill, rest
