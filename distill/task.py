"""The distillation task: student + frozen teacher (or its cached embeddings) + the weighted losses.

One call ``task(batch, step, generator)`` returns a :class:`hybridssl.task.TaskOutput` (loss, its
named parts, their weights), the interface :class:`hybridssl.trainer.Trainer` drives, so the
optimizer, schedule, clipping, NaN guard, checkpoints and metrics log are the teacher's.

Per batch, for every modality m the embeddings are ``Side``s: (k, E) rows plus the batch rows (k,)
they belong to (a batch item may lack a modality). Student sides come from the student towers;
teacher sides from the live teacher (eval mode, no gradient; images at the teacher's own
resolution, ``batch["teacher_image"]``) or from the cache (looked up by training-set position,
which :class:`TaggedDataset` writes into every item's key). Terms (see :mod:`distill.config`):

* ``feature/m``            feature distillation of s_m onto t_m;
* ``affinity/a-b``         affinity distillation of the pair (a, b), sides: the student's if it has
                           that tower, else the teacher's (frozen);
* ``logit/m``              Hinton KD on the zero-shot head: logits <e_m, c_k> / τ, c_k (K, E) the
                           teacher's class-prompt embeddings (image/audio only);
* ``contrastive/a-b``      the student's own symmetric InfoNCE with a learnable temperature, items
                           with identical captions not used as negatives (as in the teacher's task).
The terms of a pair or modality are computed on the batch rows every side involved has.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from distill.affinity_loss import affinity_distillation
from distill.cache import TeacherCache
from distill.config import DistillConfig
from distill.feature_loss import feature_distillation
from distill.logit_loss import logit_distillation
from distill.students import StudentModel
from edge_runtime.modalities import ordered_modalities
from hybridssl.data.batching import Collator, model_inputs
from hybridssl.data.sample import Sample
from hybridssl.data.tagged import PositionTagged
from hybridssl.losses.infonce import InfoNCELoss
from hybridssl.losses.positives import duplicate_captions
from hybridssl.losses.temperature import LearnableTemperature
from hybridssl.models.interface import TowerModel
from hybridssl.preprocessing import ImageSpec, PreprocessSpec, preprocess_image
from hybridssl.task import TaskOutput
from hybridssl.tokenizer import TextTokenizer


@dataclass
class Side:
    emb: Tensor                    # (k, E)
    idx: Tensor                    # (k,) batch rows


# ----------------------------------------------------------------------------- data
class TaggedDataset(PositionTagged):
    """The training set with each item's position (``Sample.position``), answering the dataset's attributes."""

    def __getattr__(self, name: str):
        if name in ("base", "positions"):
            raise AttributeError(name)
        return getattr(self.base, name)


class DistillCollator(Collator):
    """The student's collator; with ``teacher_image`` it also preprocesses every image at the
    teacher's spec into ``batch["teacher_image"]`` (Bi, 3, S_t, S_t), rows aligned with ``image_idx``."""

    def __init__(self, spec: PreprocessSpec, tokenizer: TextTokenizer | None, modalities: Sequence[str],
                 teacher_image: ImageSpec | None = None) -> None:
        super().__init__(spec, tokenizer, modalities)
        self.teacher_image = teacher_image

    def _media(self, s: Sample, repairs: list[str]):
        img, aud = super()._media(s, repairs)
        if img is not None and self.teacher_image is not None and s.image is not None:
            return (img, preprocess_image(s.image, self.teacher_image)), aud  # (student view, teacher view)
        return img, aud

    def _collate(self, kept, images, audios, skipped, repairs):
        if self.teacher_image is None:
            return super()._collate(kept, images, audios, skipped, repairs)
        student = [None if t is None else t[0] for t in images]
        batch = super()._collate(kept, student, audios, skipped, repairs)
        teacher = [t[1] for t in images if t is not None]
        if teacher:
            batch["teacher_image"] = torch.stack(teacher)               # (Bi, 3, S_t, S_t)
        return batch


# ----------------------------------------------------------------------------- teacher sources
class LiveTeacher:
    """Runs the frozen teacher on the batch (no gradient)."""

    def __init__(self, model: TowerModel, modalities: Sequence[str]) -> None:
        self.model = model.eval().requires_grad_(False)
        self.modalities = tuple(modalities)

    def to(self, device: torch.device | str) -> "LiveTeacher":
        self.model.to(device)
        return self

    @torch.no_grad()
    def __call__(self, batch: dict) -> dict[str, Side]:
        out: dict[str, Side] = {}
        for m in self.modalities:
            inputs = model_inputs(batch, m)
            if inputs is not None:
                x = batch.get("teacher_image", batch["image"]) if m == "image" else inputs[0]
                out[m] = Side(self.model.embed(m, x, inputs[1]).float(), batch[f"{m}_idx"])
        return out


class CachedTeacher:
    """Reads the teacher's embeddings of the batch items from a :class:`TeacherCache`."""

    def __init__(self, cache: TeacherCache) -> None:
        self.cache = cache
        self.device = torch.device("cpu")

    def to(self, device: torch.device | str) -> "CachedTeacher":
        self.device = torch.device(device)
        return self

    def __call__(self, batch: dict) -> dict[str, Side]:
        positions = batch["positions"].numpy()                           # (n,)
        out: dict[str, Side] = {}
        for m in self.cache.modalities:
            rows, emb = self.cache.lookup(m, positions)
            if rows.numel():
                out[m] = Side(emb.to(self.device), rows.to(self.device))
        return out


# ----------------------------------------------------------------------------- the task
def aligned(*sides: Side) -> tuple[list[Tensor], list[int]]:
    """The embeddings of the batch rows every side has, in one (ascending) row order, and the rows."""
    common = set(sides[0].idx.tolist())
    for s in sides[1:]:
        common &= set(s.idx.tolist())
    rows = sorted(common)
    out = []
    for s in sides:
        where = {int(r): i for i, r in enumerate(s.idx.tolist())}
        out.append(s.emb[torch.tensor([where[r] for r in rows], dtype=torch.long, device=s.emb.device)])
    return out, rows


def distill_pairs(student: Sequence[str], teacher: Sequence[str]) -> list[tuple[str, str]]:
    """Modality pairs (in the house order, :func:`edge_runtime.schema.ordered_modalities`) of the teacher with at least one student side."""
    present = list(ordered_modalities(teacher))
    return [(a, b) for a, b in itertools.combinations(present, 2) if a in student or b in student]


class DistillTask(nn.Module):
    class_embeddings: Tensor

    def __init__(self, dcfg: DistillConfig, model: StudentModel, teacher: LiveTeacher | CachedTeacher,
                 teacher_modalities: Sequence[str], *, temperature: float, min_temperature: float,
                 affinity_temperature: float, class_embeddings: Tensor | None = None) -> None:
        super().__init__()
        self.dcfg = dcfg
        self.model = model
        self.teacher = teacher                                          # not a submodule: never saved or trained
        self.pairs = distill_pairs(model.modalities, teacher_modalities)
        self.tau = float(affinity_temperature)          # τ of the affinity and zero-shot logits
        self.temperature = LearnableTemperature(temperature, min_temperature)
        self.infonce = InfoNCELoss()
        if dcfg.logit_weight > 0 and class_embeddings is None:
            raise ValueError("logit distillation (distill.logit_weight > 0) needs the teacher's class-prompt "
                             "embeddings: a labelled dataset and a teacher with a text tower")
        self.register_buffer("class_embeddings", class_embeddings, persistent=False)   # (K, E) or None
        self.weights = {"feature": dcfg.feature_weight, "affinity": dcfg.affinity_weight,
                        "logit": dcfg.logit_weight, "contrastive": dcfg.contrastive_weight}

    def _student(self, batch: dict) -> dict[str, Side]:
        out: dict[str, Side] = {}
        for m in self.model.modalities:
            inputs = model_inputs(batch, m)
            if inputs is not None:
                out[m] = Side(self.model.embed(m, *inputs), batch[f"{m}_idx"])
        return out

    def forward(self, batch: dict, step: int, generator: torch.Generator | None = None) -> TaskOutput:
        teacher = self.teacher(batch)
        student = self._student(batch)
        losses: dict[str, Tensor] = {}
        for m, s in student.items():
            if m not in teacher:
                continue
            (se, te), rows = aligned(s, teacher[m])
            if not rows:
                continue
            if self.weights["feature"] > 0:
                losses[f"feature/{m}"] = feature_distillation(se, te, self.dcfg.feature_loss_kind)
            if self.weights["logit"] > 0 and m != "text":
                c = self.class_embeddings.to(se.dtype)                  # (K, E)
                scale = 1.0 / self.tau
                losses[f"logit/{m}"] = logit_distillation(scale * se @ c.T, scale * te @ c.T,
                                                          self.dcfg.logit_temperature)
        for a, b in self.pairs:
            losses.update(self._pair(a, b, student, teacher, batch))
        if not losses:
            raise ValueError("this batch carries no item with both a student input and its teacher embedding")
        parts = {k: float(v.detach()) for k, v in losses.items()}
        weights = {k: self.weights[k.partition("/")[0]] for k in losses}
        total = torch.stack([weights[k] * v for k, v in losses.items()]).sum()
        return TaskOutput(total, parts, weights, {"temperature": self.temperature.temperature})

    def _pair(self, a: str, b: str, student: dict[str, Side], teacher: dict[str, Side], batch: dict) -> dict[str, Tensor]:
        """Affinity and contrastive terms of the pair (a, b) (module docstring)."""
        if a not in teacher or b not in teacher:
            return {}
        sa, sb = student.get(a, teacher[a]), student.get(b, teacher[b])
        (ea, eb, ta, tb), rows = aligned(sa, sb, teacher[a], teacher[b])
        if len(rows) < 2:
            return {}
        out = {}
        if self.weights["affinity"] > 0:
            out[f"affinity/{a}-{b}"] = affinity_distillation(ea, eb, ta, tb, self.tau)
        if self.weights["contrastive"] > 0:
            mask = duplicate_captions([batch["captions"][r] for r in rows]).to(ea.device) if "text" in (a, b) else None
            out[f"contrastive/{a}-{b}"] = self.infonce(ea, eb, self.temperature(), positive_mask=mask)
        return out

    def after_optimizer_step(self) -> None:
        """Nothing to update (no momentum encoder); part of the interface the trainer calls."""

