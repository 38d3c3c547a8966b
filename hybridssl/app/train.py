"""A training run end to end, as a library function (the CLI is a thin layer over it).

``RUN_DIR`` layout::

    config.yaml        resolved config (preprocessing spec included)
    tokenizer.json     text tokenizer trained on the training captions
    metrics.jsonl      one line per step (loss terms, weights, signals, lr, samples/s)
    checkpoints/       step_XXXXXX/ (see hybridssl.checkpoint)
    metrics.json       final held-out report + training summary
    report.md          a short human-readable report
    splits.json        the seeded train/val split (user data without a val spec)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from edge_runtime.modalities import is_sequence, sequence_stream
from hybridssl import dist
from hybridssl.app.tracked import log_run_end, run_tracking
from hybridssl.checkpoint import atomic_write_text, latest_checkpoint, latest_valid_checkpoint, read_state
from hybridssl.config import RunConfig, flat_config, load_config, save_config
from hybridssl.data.base import MultimodalDataset
from hybridssl.data.batching import SafeDataset, Skipped
from hybridssl.data.sample import Sample, SkipReport
from hybridssl.data.splits import build_datasets
from hybridssl.evaluation.heldout import evaluate_heldout
from hybridssl.models.hybrid import HybridModel
from hybridssl.preprocessing import PreprocessSpec, SequenceSpec, fit_sequence_spec, fit_waveform, log_mel
from hybridssl.runs import build_model, count_parameters
from hybridssl.threads import torch_threads
from hybridssl.tokenizer import TextTokenizer, train_tokenizer
from hybridssl.tracking import require_trackers
from hybridssl.trainer import StepLog, Trainer


def fit_audio_normalisation(dataset: MultimodalDataset, spec: PreprocessSpec, n: int = 64) -> tuple[float, float]:
    """Global mean/std of the log-mel over up to ``n`` training clips (skipping bad items)."""
    safe = SafeDataset(dataset)
    raw = PreprocessSpec.from_dict(spec.to_dict())
    raw.audio.norm_mean, raw.audio.norm_std = 0.0, 1.0
    values = []
    for i in range(min(len(dataset), 4 * n)):
        s = safe[i]
        if not isinstance(s, Sample) or s.audio is None or s.sample_rate is None:
            continue
        wave, _ = fit_waveform(torch.from_numpy(np.asarray(s.audio, dtype=np.float32)), s.sample_rate, raw.audio)
        values.append(log_mel(wave, raw.audio).flatten())
        if len(values) >= n:
            break
    if not values:
        return spec.audio.norm_mean, spec.audio.norm_std
    x = torch.cat(values)
    return round(float(x.mean()), 4), round(max(float(x.std()), 1e-3), 4)


def prepare(cfg: RunConfig, run_dir: Path | None) -> tuple[RunConfig, MultimodalDataset, MultimodalDataset, TextTokenizer | None]:
    """Datasets, tokenizer and data-fitted preprocessing statistics of a new run."""
    train_set, val_set = build_datasets(cfg.data, cfg.train.seed, run_dir)
    tokenizer = None
    if "text" in train_set.modalities and "text" in cfg.model.modalities:
        ts = cfg.preprocess.text
        tokenizer = TextTokenizer(train_tokenizer(train_set.captions(), ts.vocab_size, ts.model, ts.lowercase), ts.max_length)
    if "audio" in train_set.modalities and "audio" in cfg.model.modalities:
        cfg.preprocess.audio.norm_mean, cfg.preprocess.audio.norm_std = fit_audio_normalisation(train_set, cfg.preprocess)
    for m in filter(is_sequence, cfg.model.select_modalities(train_set.modalities)):
        cfg.preprocess.sequences[sequence_stream(m)] = fit_stream(train_set, sequence_stream(m), cfg)
    return cfg, train_set, val_set, tokenizer


def fit_stream(dataset: MultimodalDataset, stream: str, cfg: RunConfig, n: int = 256) -> SequenceSpec:
    """The spec of feature stream ``stream`` fitted on up to ``n`` training items (bad items skipped)."""
    safe = SafeDataset(dataset)
    items = []
    for i in range(min(len(dataset), 4 * n)):
        s = safe[i]
        x = s.features.get(stream) if isinstance(s, Sample) and s.features else None
        if x is not None and x.ndim == 2 and x.shape[0] and np.isfinite(x).all():
            items.append(x)
            if len(items) >= n:
                break
    return fit_sequence_spec(items, cfg.model.sequence_max_frames, cfg.model.sequence_patch)


def train_run(cfg: RunConfig, run_dir: Path, *, resume: bool = False,
              on_step: Callable[[StepLog], None] | None = None,
              on_start: Callable[[Trainer], None] | None = None,
              log_root: Path | None = None, run_name: str | None = None) -> dict[str, Any]:
    """Train (or resume) the run in ``run_dir`` and return its final metrics (also in metrics.json).

    ``train.threads`` > 0 sets torch's intra-op threads for the duration of the call only.
    ``train.log`` names the experiment trackers (:mod:`hybridssl.tracking`); their stores go under
    ``log_root`` (default: the run folder) with the run called ``run_name`` (default: its folder's name)."""
    require_trackers(cfg.train.log)
    with torch_threads(cfg.train.threads):
        return _train_run(cfg, Path(run_dir), resume, on_step, on_start, log_root, run_name)


def _train_run(cfg: RunConfig, run_dir: Path, resume: bool, on_step: Callable[[StepLog], None] | None,
               on_start: Callable[[Trainer], None] | None, log_root: Path | None,
               run_name: str | None) -> dict[str, Any]:
    dist.init_from_env()  # under torchrun: the process group; rank 0 alone writes the run folder
    main = dist.is_main()
    ckpt = latest_valid_checkpoint(run_dir) if resume else None
    schedule: dict[str, int] | None = None
    if resume:
        if ckpt is None:
            raise FileNotFoundError(no_checkpoint_message(run_dir))
        state = read_state(ckpt)  # the weights load once, in trainer.load
        saved = RunConfig.from_dict(state["config"])
        check_resume_config(saved, cfg)
        schedule = resumed_schedule(int(state["step"]), saved.train.steps, cfg.train.steps, ckpt)
        # what differs now is only how far to go and how to execute; the data-fitted values are the run's
        cfg = replace(cfg, name=saved.name, preprocess=saved.preprocess)
        train_set, val_set = build_datasets(cfg.data, cfg.train.seed, None)
        tok_path = run_dir / "tokenizer.json"
        tokenizer = TextTokenizer.from_file(tok_path, cfg.preprocess.text.max_length) if tok_path.exists() else None
    else:
        if latest_checkpoint(run_dir) is not None:
            raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
        run_dir.mkdir(parents=True, exist_ok=True)
        if main:
            clear_unfinished(run_dir)
        cfg, train_set, val_set, tokenizer = prepare(cfg, run_dir if main else None)
        if tokenizer is not None and main:
            tokenizer.save(run_dir / "tokenizer.json")
    check_trainable(train_set, cfg)
    if main:
        save_config(cfg, run_dir / "config.yaml")
    torch.manual_seed(cfg.train.seed)  # the initial weights are a function of the seed alone
    model = build_model(cfg, tokenizer.vocab_size if tokenizer else 0, train_set.modalities)
    trainer = Trainer(cfg, run_dir, train_set, tokenizer, model)
    if ckpt is not None:
        trainer.load(ckpt)
    else:
        trainer.state.report.merge(train_set.load_report)  # index rows skipped while parsing the data
    if on_start:
        on_start(trainer)
    if not main:  # the other ranks train (and hand in their shards), then stop; rank 0 tracks, evaluates, reports
        trainer.fit(on_step)
        trainer.trained_model()
        return {"run": str(run_dir), "steps": trainer.state.step, "rank": dist.rank()}
    with run_tracking(cfg, run_dir, "train", trainer.state.step, log_root, run_name) as tracking:
        metrics, trained = _fit_and_report(cfg, run_dir, trainer, tracking.wrap(on_step), tokenizer, val_set, schedule)
        log_run_end(tracking, metrics, trained, tokenizer, val_set, cfg, run_dir)
    return metrics


def _fit_and_report(cfg: RunConfig, run_dir: Path, trainer: Trainer, on_step: Callable[[StepLog], None],
                    tokenizer: TextTokenizer | None, val_set: MultimodalDataset,
                    schedule: dict[str, int] | None) -> tuple[dict[str, Any], Any]:
    """Train, then evaluate on the held-out split; (metrics, the trained model as one process holds it)."""
    t0 = time.perf_counter()
    start_samples = trainer.state.samples_seen
    trainer.fit(on_step)
    train_seconds = time.perf_counter() - t0
    trained = trainer.trained_model()
    assert trained is not None  # rank 0
    model = cast(HybridModel, trained)
    report = evaluate_heldout(model, tokenizer, val_set, cfg)
    metrics = {
        "run": str(run_dir),
        "steps": trainer.state.step,
        "train_seconds": round(train_seconds, 2),
        "samples_per_s": round((trainer.state.samples_seen - start_samples) / max(train_seconds, 1e-9), 2),
        "skipped_steps": trainer.state.bad_steps,
        "data_report": trainer.state.report.to_dict(),
        "heldout": report,
        "parameters": {m: count_parameters(model, m) for m in model.modalities},
    }
    if schedule is not None:
        metrics["schedule_change"] = schedule
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=1))
    atomic_write_text(run_dir / "report.md", render_report(cfg, metrics))
    return metrics, model


#: What ``--resume`` may change: how far the run goes and how it executes, never what it learns from.
RESUME_MAY_CHANGE = ("train.steps", "train.threads", "train.device", "train.log_every", "train.log",
                     "train.eval_size", "data.num_workers")
#: Data-fitted values a new run writes into its config (not chosen by the user; so is every
#: ``preprocess.sequences.*``).
FITTED_KEYS = ("preprocess.audio.norm_mean", "preprocess.audio.norm_std")


def check_resume_config(saved: RunConfig, requested: RunConfig) -> None:
    """Refuse a resume whose requested config differs from the run's outside :data:`RESUME_MAY_CHANGE`
    (a resumed run continues *that* run; silently ignoring a changed ``--set`` would mislead)."""
    a, b = flat_config(saved), flat_config(requested)
    ignored = set(RESUME_MAY_CHANGE) | set(FITTED_KEYS) | {"name"}
    diff = [k for k in sorted(set(a) | set(b))
            if k not in ignored and not k.startswith("preprocess.sequences") and a.get(k) != b.get(k)]
    if diff:
        shown = "; ".join(f"{k}: run {a.get(k)!r}, given {b.get(k)!r}" for k in diff[:6])
        more = f" (and {len(diff) - 6} more)" if len(diff) > 6 else ""
        raise ValueError(f"--resume continues the run as it was configured, but {shown}{more}; resume without "
                         f"changing them (only {', '.join(RESUME_MAY_CHANGE)} may change) or start a new run "
                         f"in another --out")


def no_checkpoint_message(run_dir: Path) -> str:
    if (run_dir / "config.yaml").is_file():
        return (f"--resume: {run_dir} has no complete checkpoint (the run stopped before writing its first one); "
                f"run the same command without --resume to start it over")
    return f"--resume: {run_dir} has no checkpoint to resume from"


def clear_unfinished(run_dir: Path) -> None:
    """Before a new run in ``run_dir``: drop what a run killed before its first checkpoint left
    (half-written ``checkpoints/.tmp-*`` folders and its step log)."""
    import shutil

    for tmp in (run_dir / "checkpoints").glob(".tmp-*") if (run_dir / "checkpoints").is_dir() else ():
        shutil.rmtree(tmp, ignore_errors=True)
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)


def check_trainable(train_set: MultimodalDataset, cfg: RunConfig) -> None:
    """Refuse, before the first step, training data that yields nothing: an empty index, or (for
    indexed data) a first batch of draws that are all unreadable."""
    if len(train_set) == 0:
        raise ValueError(f"{cfg.data.train}: no usable training item ({describe_skips(train_set.load_report)})")
    if cfg.data.streaming:
        return
    safe = SafeDataset(train_set)
    probe = min(len(train_set), max(cfg.train.batch_size, 8))
    rng = np.random.default_rng(cfg.train.seed)
    tried = [safe[int(i)] for i in rng.choice(len(train_set), probe, replace=False)]
    if all(isinstance(s, Skipped) for s in tried):
        report = SkipReport()
        for s in tried:
            assert isinstance(s, Skipped)
            report.skip(s.uid, s.reason, s.detail)
        raise ValueError(f"{cfg.data.train}: none of {probe} training items tried could be read "
                         f"({describe_skips(report)}, e.g. {next(iter(report.examples.values()))[0]}); check the files")


def describe_skips(report) -> str:
    if not report.skipped:
        return "the index is empty"
    return ", ".join(f"{n} {reason}" for reason, n in report.skipped.most_common())


def resumed_schedule(done: int, planned: int, steps: int, ckpt: Path) -> dict[str, int] | None:
    """What resuming a run that is at step ``done`` of ``planned`` with ``--steps steps`` means.

    ``steps == planned``: the interrupted run continues exactly (same weights as never stopped).
    Otherwise the run continues *as if it had been planned for ``steps`` from the start*: from step
    ``done`` on, the learning rate is ``warmup_cosine(step, steps, …)``, the value the longer (or
    shorter) plan gives there — so it jumps once, at the resume, and the steps before it keep the
    values of the old plan. Returns that change (None when there is none); ``steps < done`` (going
    back) is refused."""
    if steps < done:
        raise ValueError(f"--resume: {ckpt} is at step {done}, beyond --steps {steps}; pass --steps ≥ {done} "
                         f"(a larger value extends the run)")
    if steps == planned:
        return None
    return {"resumed_at_step": done, "planned_steps": planned, "steps": steps}


def render_report(cfg: RunConfig, metrics: dict[str, Any]) -> str:
    lines = [f"# Run {cfg.name}", "", f"- steps: {metrics['steps']}, train time {metrics['train_seconds']} s, "
             f"{metrics['samples_per_s']} samples/s", f"- skipped steps (non-finite): {metrics['skipped_steps']}",
             f"- data: skipped {metrics['data_report']['skipped']}, repaired {metrics['data_report']['repaired']}", "",
             "## Held-out retrieval", "", "| direction | R@1 | R@5 | R@10 | chance R@1 | median rank |", "|---|---|---|---|---|---|"]
    for name, r in metrics["heldout"]["retrieval"].items():
        lines.append(f"| {name} | {r['R@1']:.1f} | {r['R@5']:.1f} | {r['R@10']:.1f} | {r['chance_R@1']:.2f} | {r['median_rank']:.0f} |")
    lines += ["", "## Zero-shot", "", "| modality | accuracy | macro-F1 | chance |", "|---|---|---|---|"]
    for m, z in metrics["heldout"]["zero_shot"].items():
        lines.append(f"| {m} | {z['accuracy']:.1f} | {z['macro_f1']:.1f} | {z['chance']:.1f} |")
    return "\n".join(lines) + "\n"


def run_summary(run_dir: Path) -> dict[str, Any]:
    """What ``hssl info`` shows: config, checkpoints, last logged step, final metrics."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
    cfg = load_config(run_dir / "config.yaml")
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").glob("step_*")) if (run_dir / "checkpoints").exists() else []
    last_log: dict[str, Any] = {}
    if (run_dir / "metrics.jsonl").exists():
        lines = (run_dir / "metrics.jsonl").read_text().strip().splitlines()
        if lines:
            last_log = json.loads(lines[-1])
    overview = {
        "preset": cfg.name,
        "data": cfg.data.train,
        "modalities": ", ".join(cfg.model.modalities),
        "model": f"width {cfg.model.width}, depth {cfg.model.depth} (shared {cfg.model.shared_depth}), "
                 f"embed {cfg.model.embed_dim}, generative {cfg.model.generative}/{cfg.model.text_generative}"
                 + "".join(f"; {m} tower {w}×{d}" for m in cfg.model.towers
                           for w, d, _ in [cfg.model.tower(m)]),
        "weighting": cfg.weighting.strategy,
        "steps": f"{last_log.get('step', 0)} / {cfg.train.steps}",
        "last loss": f"{last_log.get('loss', float('nan')):.4f}" if last_log else "-",
        "last weights": ", ".join(f"{k}={v:.2f}" for k, v in last_log.get("weights", {}).items()),
        "checkpoints": ", ".join(ckpts) or "none",
    }
    out: dict[str, Any] = {"overview": overview, "config": cfg.to_dict()}
    if (run_dir / "metrics.json").exists():
        out["metrics"] = json.loads((run_dir / "metrics.json").read_text())
        params = out["metrics"].get("parameters", {})
        overview["parameters per tower"] = ", ".join(f"{m} {n / 1e6:.2f} M" for m, n in params.items())
    return out
