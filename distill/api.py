"""``distill_run``: distill a teacher run into a student run directory (the CLI's one call).

Steps: load the teacher (:func:`hybridssl.runs.load_run`); resolve the distillation config and the
student's run config (the teacher's, with the student's preprocessing and any overrides); check the
request against the teacher (modalities, tokenizer, text/audio preprocessing); build the datasets
from the teacher's data spec (or ``data``); build the student towers; get the teacher's embeddings
live or from the cache; train with :class:`distill.trainer.DistillTrainer`; evaluate held out as
``hssl train`` does; optionally write the side-by-side report (:mod:`distill.report`).

The student run directory has the layout of a teacher run (``config.yaml`` — the teacher's resolved
config with the student's preprocessing —, ``tokenizer.json``, ``metrics.jsonl``,
``checkpoints/step_*`` with ``model_kind: "student"`` in the state, ``metrics.json``,
``report.md``) plus ``distill.json`` (student spec, distillation config, teacher provenance).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from distill.cache import build_cache, fingerprint, load_or_build
from distill.config import DistillConfig, split_overrides
from distill.students import StudentSpec, build_student_model, resolve_students, student_entry
from distill.task import CachedTeacher, DistillCollator, DistillTask, LiveTeacher, TaggedDataset
from distill.trainer import DistillTrainer
from edge_runtime.modalities import MODALITIES, is_modality, ordered_modalities
from hybridssl.app.api import TrainResult, config_overrides
from hybridssl.app.tracked import log_run_end, run_tracking
from hybridssl.app.train import render_report
from hybridssl.checkpoint import atomic_write_text
from hybridssl.config import RunConfig, deep_update, load_config, parse_override, save_config
from hybridssl.data.splits import build_datasets
from hybridssl.evaluation.embed import embed_texts
from hybridssl.evaluation.heldout import class_prompts, evaluate_heldout
from hybridssl.evaluation.zeroshot import class_embeddings
from hybridssl.preprocessing import PreprocessSpec
from hybridssl.runs import LoadedRun, checkpoint_folder, load_run
from hybridssl.threads import torch_threads
from hybridssl.tracking import require_trackers
from hybridssl.trainer import StepLog, Trainer

Progress = Callable[[str, int, int], None]


# ----------------------------------------------------------------------------- configuration
def distill_config(overrides: dict[str, Any], **explicit: Any) -> DistillConfig:
    """DistillConfig from ``distill.*`` overrides, then the explicit (not None) arguments on top."""
    d = dict(overrides)
    d.update({k: v for k, v in explicit.items() if v is not None})
    return DistillConfig.from_dict(d)


def student_preprocess(teacher: PreprocessSpec, image_size: int) -> PreprocessSpec:
    """The teacher's spec with the image input at ``image_size`` (0: unchanged); the resize side
    keeps the teacher's resize/size ratio."""
    spec = PreprocessSpec.from_dict(teacher.to_dict())
    if image_size:
        spec.image.resize = max(image_size, round(teacher.image.resize * image_size / teacher.image.size))
        spec.image.size = image_size
    return spec


def student_run_config(teacher: RunConfig, overrides: Sequence[str], image_size: int, steps: int | None,
                       data: str | None) -> RunConfig:
    """The teacher's resolved config with the run overrides, ``steps``, ``data`` and the student's image size."""
    d = teacher.to_dict()
    items = list(overrides) + ([f"train.steps={steps}"] if steps is not None else [])
    items += [f"data.train={data}"] if data else []
    for item in items:
        d = deep_update(d, parse_override(item))
    cfg = RunConfig.from_dict(d)
    cfg.preprocess = student_preprocess(cfg.preprocess, image_size)
    return cfg


def check_request(teacher: LoadedRun, cfg: RunConfig, modalities: Sequence[str]) -> None:
    """Refuse what the teacher cannot teach: a modality it lacks, text without its tokenizer, and text or
    audio preprocessing that differs from the teacher's (the student must read what the teacher read)."""
    unknown = [m for m in modalities if not is_modality(m)]
    if unknown or not modalities:
        raise ValueError(f"modalities must be a non-empty subset of {', '.join(MODALITIES)}, seq_<stream>; "
                         f"got {', '.join(modalities)}")
    missing = [m for m in modalities if m not in teacher.model.modalities]
    if missing:
        raise ValueError(f"the teacher run {teacher.run_dir} has no {', '.join(missing)} tower (it has "
                         f"{', '.join(teacher.model.modalities)}); distil only those modalities (--modalities)")
    if "text" in modalities and teacher.tokenizer is None:
        raise ValueError(f"the teacher run {teacher.run_dir} carries no tokenizer: a text student needs it")
    for m in ("text", "audio"):
        mine, theirs = getattr(cfg.preprocess, m), getattr(teacher.cfg.preprocess, m)
        if m in modalities and mine != theirs:
            diff = [f"{f.name} {getattr(mine, f.name)!r} != teacher's {getattr(theirs, f.name)!r}"
                    for f in dataclasses.fields(mine) if getattr(mine, f.name) != getattr(theirs, f.name)]
            raise ValueError(f"the student's {m} preprocessing must equal the teacher's (same tokenizer and "
                             f"inputs): {'; '.join(diff)}")


def teacher_temperature(folder: Path, cfg: RunConfig) -> float:
    """The teacher's learned contrastive temperature (clamped as in training); the configured one if absent."""
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        if "temperature.log_scale" not in f.keys():
            return float(cfg.loss.temperature)
        scale = float(f.get_tensor("temperature.log_scale").exp())
    return 1.0 / min(max(scale, 1.0), 1.0 / cfg.loss.min_temperature)


def zero_shot_head(teacher: LoadedRun, dataset) -> torch.Tensor | None:
    """(K, E) teacher text embeddings of the dataset's class prompts (averaged per class), or None."""
    prompts = class_prompts(dataset, dataset.label_names)
    if not prompts or teacher.tokenizer is None or "text" not in teacher.model.modalities:
        return None
    _, emb = class_embeddings({c: embed_texts(teacher.model, teacher.tokenizer, p) for c, p in prompts.items()})
    return torch.from_numpy(emb).float()


# ----------------------------------------------------------------------------- the teacher side
def cache_data_spec(cfg: RunConfig) -> dict[str, Any]:
    """The part of the data config the training items depend on (not the loader's worker count)."""
    return {k: v for k, v in dataclasses.asdict(cfg.data).items() if k != "num_workers"}


def teacher_source(teacher: LoadedRun, folder: Path, dcfg: DistillConfig, cfg: RunConfig, train_set,
                   student_modalities: Sequence[str], progress: Progress | None
                   ) -> tuple[LiveTeacher | CachedTeacher, DistillCollator, dict[str, Any]]:
    """The teacher's embeddings (live or cached), the collator that feeds both, and what to record."""
    pair_losses = dcfg.affinity_weight > 0 or dcfg.contrastive_weight > 0
    needed = [m for m in teacher.model.modalities if pair_losses or m in student_modalities]
    if dcfg.cache_teacher:
        cache_dir = Path(dcfg.cache_dir) if dcfg.cache_dir else teacher.run_dir / "distill_cache"
        fp = fingerprint(folder, cache_data_spec(cfg), cfg.train.seed, len(train_set), teacher.spec.to_dict(), needed)
        cache, hit = load_or_build(cache_dir, fp, lambda: build_cache(teacher.model, train_set, teacher.spec,
                                                                      teacher.tokenizer, progress=progress),
                                   dcfg.rebuild_cache)
        collator = DistillCollator(cfg.preprocess, teacher.tokenizer, student_modalities)
        return CachedTeacher(cache), collator, {"cache": str(cache_dir), "cache_hit": hit}
    differs = cfg.preprocess.image != teacher.spec.image and "image" in student_modalities
    collator = DistillCollator(cfg.preprocess, teacher.tokenizer, sorted(set(needed) | set(student_modalities)),
                               teacher.spec.image if differs else None)
    return LiveTeacher(teacher.model, needed), collator, {"cache": None}


# ----------------------------------------------------------------------------- the run
def distill_run(teacher: str | Path, out: str | Path, *, student: str | None = None,
                modalities: Sequence[str] | None = None, steps: int | None = None, image_size: int | None = None,
                cache_teacher: bool | None = None, data: str | None = None, overrides: Sequence[str] = (),
                checkpoint: str | None = None, on_step: Callable[[StepLog], None] | None = None,
                on_start: Callable[[Trainer], None] | None = None, progress: Progress | None = None,
                report: bool = False, report_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Distil the teacher run ``teacher`` into a new student run in ``out``; returns its metrics
    (also in ``out/metrics.json``), with ``"report"`` (:func:`distill.report.distill_report`) if asked.

    Explicit arguments override ``distill.*`` entries of ``overrides``; the other overrides apply to
    the run config (``train.lr=…``). ``train.threads`` > 0 sets torch's threads for the call only."""
    teacher_dir, run_dir = Path(teacher), Path(out)
    if not teacher_dir.is_dir():
        raise FileNotFoundError(f"teacher run directory {teacher_dir} does not exist")
    if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
        raise FileExistsError(f"{run_dir} already holds a run; choose another --out")
    dist_over, run_over = split_overrides(list(overrides))
    dcfg = distill_config(dist_over, student=student, modalities=tuple(modalities) if modalities else None,
                          image_size=image_size, cache_teacher=cache_teacher)
    t = load_run(teacher_dir, checkpoint)
    cfg = student_run_config(t.cfg, run_over, dcfg.image_size, steps, data)
    cfg.name = f"{t.cfg.name}-student"
    require_trackers(cfg.train.log)
    with torch_threads(cfg.train.threads):
        metrics = _distill(t, checkpoint_folder(teacher_dir, checkpoint), dcfg, cfg, run_dir, on_step, on_start,
                           progress)
    if report:
        from distill.report import distill_report

        metrics["report"] = distill_report(run_dir, teacher_dir, progress=progress, **(report_options or {}))
    return metrics


def _distill(t: LoadedRun, folder: Path, dcfg: DistillConfig, cfg: RunConfig, run_dir: Path,
             on_step: Callable[[StepLog], None] | None, on_start: Callable[[Trainer], None] | None,
             progress: Progress | None) -> dict[str, Any]:
    modalities = ordered_modalities(dcfg.modalities or t.model.modalities)
    named = [k for k in (student_entry(n).modality for n in dcfg.student.split(",") if n.strip()) if k != "sequence"]
    check_request(t, cfg, modalities if dcfg.modalities else tuple(dict.fromkeys(modalities + tuple(named))))
    towers = resolve_students(dcfg.student, modalities)
    run_dir.mkdir(parents=True, exist_ok=True)
    train_set, val_set = build_datasets(cfg.data, cfg.train.seed, run_dir)
    absent = [m for m in modalities if m not in train_set.modalities]
    if absent:
        raise ValueError(f"the data {cfg.data.train} carries no {', '.join(absent)} (it has "
                         f"{', '.join(train_set.modalities)}); choose --modalities among those")
    spec = StudentSpec(towers, int(t.cfg.model.embed_dim), t.tokenizer.vocab_size if t.tokenizer else 0)
    torch.manual_seed(cfg.train.seed)                                   # the initial weights follow the seed
    model = build_student_model(spec, cfg.preprocess)
    source, collator, cache_info = teacher_source(t, folder, dcfg, cfg, train_set, modalities, progress)
    tau = dcfg.affinity_temperature or teacher_temperature(folder, t.cfg)
    head = zero_shot_head(t, train_set) if dcfg.logit_weight > 0 else None
    task = DistillTask(dcfg, model, source, t.model.modalities, temperature=max(tau, t.cfg.loss.min_temperature),
                       min_temperature=t.cfg.loss.min_temperature, affinity_temperature=tau, class_embeddings=head)
    provenance = {"run_dir": str(t.run_dir.resolve()), "checkpoint": folder.name, "step": int(t.state.get("step", 0)),
                  "model_kind": str(t.state.get("model_kind", "hybrid")), "temperature": tau, **cache_info}
    extra = {"model_kind": "student", "student": spec.to_dict(), "distill": dcfg.to_dict(), "teacher": provenance}
    if t.tokenizer is not None:
        t.tokenizer.save(run_dir / "tokenizer.json")
    save_config(cfg, run_dir / "config.yaml")
    atomic_write_text(run_dir / "distill.json", json.dumps(extra, indent=1))
    trainer = DistillTrainer(cfg, run_dir, TaggedDataset(train_set), t.tokenizer, task, collator, extra)
    if on_start:
        on_start(trainer)
    with run_tracking(cfg, run_dir, "distill", 0) as tracking:
        metrics = _fit_and_report(trainer, tracking.wrap(on_step), provenance, spec, model, t, val_set, cfg, run_dir)
        log_run_end(tracking, metrics, model, t.tokenizer, val_set, cfg, run_dir)
    return metrics


def _fit_and_report(trainer: DistillTrainer, on_step: Callable[[StepLog], None], provenance: dict[str, Any],
                    spec: StudentSpec, model: Any, t: LoadedRun, val_set: Any, cfg: RunConfig,
                    run_dir: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    trainer.fit(on_step)
    seconds = time.perf_counter() - t0
    metrics = {
        "run": str(run_dir),
        "teacher": provenance,
        "student": spec.to_dict(),
        "steps": trainer.state.step,
        "train_seconds": round(seconds, 2),
        "samples_per_s": round(trainer.state.samples_seen / max(seconds, 1e-9), 2),
        "skipped_steps": trainer.state.bad_steps,
        "data_report": trainer.state.report.to_dict(),
        "heldout": evaluate_heldout(model, t.tokenizer, val_set, cfg),
        "parameters": {m: model.count_parameters(m) for m in model.modalities},
    }
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=1))
    atomic_write_text(run_dir / "report.md", render_report(cfg, metrics))
    return metrics


def distill(teacher: str | Path, out: str | Path, *, student: str = "", log: Sequence[str] = (),
            overrides: Sequence[str] = (), **options: Any) -> TrainResult:
    """The Python API's ``distill.distill``: :func:`distill_run` with keyword config overrides
    (``section__key=value``, as :func:`hybridssl.app.api.train` takes them) and a ``TrainResult``.
    Other ``options`` are :func:`distill_run`'s (``modalities``, ``steps``, ``image_size``, ``data``, ``report``...)."""
    named = {k: options.pop(k) for k in list(options) if "__" not in k}
    over = config_overrides(overrides, options) + ([f"train.log={','.join(log)}"] if log else [])
    metrics = distill_run(teacher, out, student=student, overrides=over, **named)
    return TrainResult(Path(out), load_config(Path(out) / "config.yaml"), metrics)
