"""The ``student`` model kind of :func:`hybridssl.runs.load_run` (registered through the
``hssl.model_kinds`` entry point, see pyproject.toml).

A student run shares the layout of :mod:`hybridssl.checkpoint` (``checkpoints/step_*/`` with
safetensors weights and a JSON state). Its state holds ``model_kind: "student"``, ``student``
(:class:`distill.students.StudentSpec`), ``distill`` (the distillation config), ``teacher``
(provenance) and ``config``: the teacher's resolved run config with the student's preprocessing
spec, so ``LoadedRun.spec`` is what the student reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hybridssl.checkpoint import load_checkpoint
from hybridssl.config import RunConfig
from hybridssl.runs import LoadedRun, checkpoint_tokenizer, register_model_kind


def load_student(run_dir: Path, folder: Path, options: dict[str, Any], device: str) -> LoadedRun:
    """Rebuild a distilled student (safetensors + JSON only, never pickle), in eval mode on ``device``."""
    from distill.students import StudentSpec, build_student_model

    ck = load_checkpoint(folder)
    state = ck["state"]
    if "student" not in state:
        raise ValueError(f"checkpoint {folder} says model_kind 'student' but holds no student spec")
    cfg = RunConfig.from_dict(state["config"])
    model = build_student_model(StudentSpec.from_dict(state["student"]), cfg.preprocess)
    weights = {k[len("model."):]: v for k, v in ck["model"].items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint {folder} does not match its student spec: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    model.to(device).eval()
    return LoadedRun(Path(run_dir), cfg, model, checkpoint_tokenizer(ck, cfg), state)


register_model_kind("student", load_student)
