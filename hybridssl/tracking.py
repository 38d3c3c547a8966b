"""Experiment tracking: every run's step log, config and final metrics sent to TensorBoard, MLflow
and/or Weights & Biases (``train.log`` / ``--log``), all of them offline by default.

* ``tensorboard`` — event files in ``LOG_ROOT/tensorboard/RUN_NAME`` (``tensorboard --logdir
  LOG_ROOT/tensorboard``); a resumed run purges the events after its checkpoint's step.
* ``mlflow`` — a local SQLite store ``LOG_ROOT/mlflow.db`` with artifacts in ``LOG_ROOT/mlartifacts``
  (``mlflow ui --backend-store-uri sqlite:///LOG_ROOT/mlflow.db``), or the server of
  ``MLFLOW_TRACKING_URI`` when that is set; experiment ``MLFLOW_EXPERIMENT_NAME`` or "hssl".
* ``wandb`` — offline mode in ``LOG_ROOT/wandb`` (``wandb sync`` uploads it later) unless
  ``WANDB_MODE`` says otherwise; project ``WANDB_PROJECT`` or "hssl".

A resumed run continues the same MLflow run / W&B run (their ids are kept in ``RUN_DIR/tracking.json``).
Names are the same in all three: ``loss``, ``loss/<term>``, ``weight/<term>``, ``signal/<name>``,
``lr``, ``samples_per_s`` per step (every ``train.log_every`` steps and the last), then the final
metrics flattened with "/" (``heldout/retrieval/image_to_text/R_1``: characters other than letters,
digits, ``_ - . /`` and space become ``_``, ``->`` becomes ``_to_``, as MLflow requires).
Each library is an optional extra, imported only when asked for.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

TRACKERS = ("tensorboard", "mlflow", "wandb")
EXTRAS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


class Tracker(Protocol):
    def metrics(self, values: dict[str, float], step: int) -> None: ...
    def image(self, tag: str, path: Path, step: int) -> None: ...
    def close(self) -> None: ...


def metric_name(name: str) -> str:
    return re.sub(r"[^\w.\-/ ]", "_", name.replace("->", "_to_").replace("→", "_to_"))


def flatten_metrics(tree: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numeric leaves of a nested mapping, keyed ``a/b/c`` (booleans and text left out)."""
    out: dict[str, float] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten_metrics(v, key + "/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[metric_name(key)] = float(v)
    return out


def step_values(log: Any) -> dict[str, float]:
    """A ``StepLog``'s values under the tracked names."""
    out = {"loss": log.loss, "lr": log.lr, "samples_per_s": log.samples_per_s, "skipped_steps": log.skipped_steps}
    for group, prefix in ((log.parts, "loss/"), (log.weights, "weight/"), (log.signals, "signal/")):
        out.update({metric_name(prefix + k): v for k, v in group.items()})
    return {k: float(v) for k, v in out.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def _require(name: str) -> Any:
    import importlib

    module = {"tensorboard": "torch.utils.tensorboard", "mlflow": "mlflow", "wandb": "wandb"}[name]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ModuleNotFoundError(f"--log {name} needs {name}, which is not installed: "
                                  f"pip install 'hssl[{EXTRAS[name]}]'") from None  # no name: cli prints this line as is


class TensorBoardTracker:
    def __init__(self, log_dir: Path, params: dict[str, Any], start_step: int) -> None:
        tb = _require("tensorboard")
        self.writer = tb.SummaryWriter(log_dir=str(log_dir), purge_step=start_step or None)
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in params.items()), start_step)

    def metrics(self, values: dict[str, float], step: int) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)

    def image(self, tag: str, path: Path, step: int) -> None:
        import numpy as np
        from PIL import Image

        with Image.open(path) as im:
            self.writer.add_image(tag, np.asarray(im.convert("RGB")), step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


class MLflowTracker:
    def __init__(self, root: Path, run_name: str, params: dict[str, Any], run_id: str | None, tags: dict[str, str]) -> None:
        mlflow = _require("mlflow")
        from mlflow.entities import Param, RunTag

        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow.db').resolve()}"
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "hssl")
        exp = self.client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(
            name, artifact_location=None if "MLFLOW_TRACKING_URI" in os.environ else (root / "mlartifacts").resolve().as_uri())
        if run_id is None:
            self.run_id = self.client.create_run(exp_id, run_name=run_name, tags=tags).info.run_id
            items = [Param(k[:250], str(v)[:6000]) for k, v in params.items()]
            for i in range(0, len(items), 100):                 # MLflow takes at most 100 params a batch
                self.client.log_batch(self.run_id, params=items[i : i + 100])
        else:
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
            self.client.log_batch(run_id, tags=[RunTag("resumed", "true")])

    def metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in values.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def image(self, tag: str, path: Path, step: int) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path="plots")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class WandbTracker:
    def __init__(self, root: Path, run_name: str, params: dict[str, Any], run_id: str | None, tags: dict[str, str]) -> None:
        wandb = _require("wandb")
        self.wandb = wandb
        root.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "hssl"), name=run_name, dir=str(root),
                              mode=os.environ.get("WANDB_MODE", "offline"), config=params, id=run_id, resume="allow",
                              tags=[f"{k}:{v}" for k, v in tags.items()], reinit="create_new",
                              settings=wandb.Settings(silent=True))  # no console output under the progress bar
        self.run_id = self.run.id

    def metrics(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def image(self, tag: str, path: Path, step: int) -> None:
        self.run.log({tag: self.wandb.Image(str(path))}, step=step)

    def close(self) -> None:
        self.run.finish()


class Tracking:
    """The trackers of one run (none: every call is a no-op)."""

    def __init__(self, trackers: Sequence[Tracker] = (), every: int = 1, last_step: int = 0) -> None:
        self.trackers, self.every, self.last_step = list(trackers), max(1, every), last_step

    @property
    def active(self) -> bool:
        return bool(self.trackers)

    def metrics(self, values: dict[str, float], step: int) -> None:
        for t in self.trackers:
            t.metrics(values, step)

    def step(self, log: Any) -> None:
        """Log a StepLog every ``every`` steps and at the run's last step."""
        if self.trackers and (log.step % self.every == 0 or log.step == self.last_step):
            self.metrics(step_values(log), log.step)

    def wrap(self, on_step: Callable[[Any], None] | None) -> Callable[[Any], None]:
        """``on_step`` (may be None) that also logs the step."""
        def both(log: Any) -> None:
            self.step(log)
            if on_step is not None:
                on_step(log)
        return both

    def final(self, metrics: Mapping[str, Any], step: int, images: Mapping[str, Path] | None = None) -> None:
        """The run's final metrics (flattened) and its plots, at its last step."""
        self.metrics(flatten_metrics(metrics), step)
        for tag, path in (images or {}).items():
            for t in self.trackers:
                t.image(tag, Path(path), step)

    def close(self) -> None:
        for t in self.trackers:
            t.close()
        self.trackers = []

    def __enter__(self) -> "Tracking":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_trackers(names: Sequence[str]) -> tuple[str, ...]:
    bad = [n for n in names if n not in TRACKERS]
    if bad:
        raise ValueError(f"unknown tracker(s) {', '.join(bad)}; choose among {', '.join(TRACKERS)}")
    return tuple(dict.fromkeys(names))


def require_trackers(names: Sequence[str]) -> None:
    """Import each tracker's library now, so that a missing one stops a run before it starts."""
    for n in check_trackers(names):
        _require(n)


def open_tracking(names: Sequence[str], run_dir: Path, params: dict[str, Any], *, log_root: Path | None = None,
                  run_name: str | None = None, kind: str = "train", every: int = 1, start_step: int = 0,
                  last_step: int = 0) -> Tracking:
    """Open the trackers ``names`` for the run in ``run_dir`` (stores under ``log_root``, default the
    run folder; an ablation passes its own folder so that its runs sit side by side)."""
    names = check_trackers(names)
    if not names:
        return Tracking()
    root = Path(log_root or run_dir)
    name = run_name or Path(run_dir).name
    ids_file = Path(run_dir) / "tracking.json"
    ids = json.loads(ids_file.read_text()) if ids_file.is_file() and start_step > 0 else {}
    tags = {"kind": kind, "run_dir": str(Path(run_dir).resolve())}
    opened: list[Tracker] = []
    try:
        for n in names:
            if n == "tensorboard":
                opened.append(TensorBoardTracker(root / "tensorboard" / name, params, start_step))
            elif n == "mlflow":
                ml = MLflowTracker(root, name, params, ids.get("mlflow"), tags)
                ids["mlflow"] = ml.run_id
                opened.append(ml)
            else:
                wb = WandbTracker(root, name, params, ids.get("wandb"), tags)
                ids["wandb"] = wb.run_id
                opened.append(wb)
    except BaseException:
        for t in opened:
            t.close()
        raise
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    ids_file.write_text(json.dumps(ids, indent=1))
    return Tracking(opened, every, last_step)
