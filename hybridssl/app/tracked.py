"""A run's experiment tracking from start to end (``train.log``): open the trackers with the
resolved config as hyper-parameters, log every step through ``Tracking.wrap(on_step)``, and at
the end log the final metrics with the held-out projection and retrieval plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hybridssl.app.evaluate import heldout_plots
from hybridssl.config import RunConfig, flat_config
from hybridssl.data.tagged import PositionTagged
from hybridssl.evaluation.embed import extract_embeddings
from hybridssl.tracking import Tracking, open_tracking

#: the parts of a run's metrics.json that are tracked at its end
FINAL_KEYS = ("heldout", "train_seconds", "samples_per_s", "skipped_steps", "parameters")


def run_tracking(cfg: RunConfig, run_dir: Path, kind: str, start_step: int, log_root: Path | None = None,
                 run_name: str | None = None) -> Tracking:
    return open_tracking(cfg.train.log, run_dir, flat_config(cfg), log_root=log_root, run_name=run_name, kind=kind,
                         every=cfg.train.log_every, start_step=start_step, last_step=cfg.train.steps)


def log_run_end(tracking: Tracking, metrics: dict[str, Any], model: Any, tokenizer: Any, val_set: Any,
                cfg: RunConfig, run_dir: Path) -> None:
    """Final metrics and the held-out plots (written to ``run_dir/plots``) — nothing when untracked."""
    if not tracking.active:
        return
    emb = extract_embeddings(model, PositionTagged(val_set), cfg.preprocess, tokenizer, limit=cfg.train.eval_size,
                             num_workers=cfg.data.num_workers)
    images = heldout_plots(emb, emb.positions, val_set, cfg.preprocess, val_set.label_names, run_dir / "plots")
    tracking.final({k: metrics[k] for k in FINAL_KEYS if k in metrics}, int(metrics["steps"]),
                   {f"heldout/{name}": path for name, path in images.items()})
