"""hssl's Python API: one call per job, each returning a small result object (what ``hssl train``,
``hssl eval``, ``hssl distill`` and ``hssl export`` run underneath). Re-exported, lazily, as
``hybridssl.train`` / ``hybridssl.evaluate`` (here), ``distill.distill`` (:mod:`distill.api`) and
``export.export`` (:mod:`export.api`) — docs/python_api.md::

    import hybridssl, distill, export
    run = hybridssl.train("tiny", out="runs/t", steps=50, log=["tensorboard"])
    print(run.retrieval["image->text"]["R@1"])
    ev = hybridssl.evaluate(run.run_dir, seeds=(0, 1, 2))
    student = distill.distill(run.run_dir, "runs/s", student="mobilevit")
    bundle = export.export(student.run_dir, "bundles/s", target="onnxruntime", precision="int8")

Keyword arguments beside the named ones are config overrides, ``section__key=value`` (double
underscore for the dot: ``train__lr=1e-3``), applied after ``overrides`` (``"train.lr=1e-3"``
strings, as ``--set`` takes them).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridssl.config import RunConfig, load_config


@dataclass(frozen=True)
class TrainResult:
    """A finished training (or distillation) run: its folder, resolved config and final metrics."""

    run_dir: Path
    config: RunConfig
    metrics: dict[str, Any] = field(repr=False)

    @property
    def retrieval(self) -> dict[str, dict[str, float]]:
        """Held-out retrieval per direction, e.g. ``["image->text"]["R@1"]`` (percent)."""
        return self.metrics["heldout"]["retrieval"]

    @property
    def zero_shot(self) -> dict[str, dict[str, float]]:
        return self.metrics["heldout"]["zero_shot"]


@dataclass(frozen=True)
class EvalResult:
    """An evaluation: where its files went and the report (``eval.json``)."""

    out_dir: Path
    report: dict[str, Any] = field(repr=False)

    @property
    def protocols(self) -> dict[str, Any]:
        """Low-label protocols (linear probe, kNN, fine-tune) by label fraction, mean ± std over seeds."""
        return self.report.get("low_label", {}).get("protocols", {})


def config_overrides(overrides: Sequence[str], options: dict[str, Any]) -> list[str]:
    """``overrides`` then ``section__key=value`` keyword options as ``section.key=value`` strings."""
    out = list(overrides)
    for key, value in options.items():
        if "__" not in key:
            raise TypeError(f"unexpected keyword argument {key!r}: config keys are written section__key "
                            f"(e.g. train__lr=1e-3)")
        text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value).lower() \
            if isinstance(value, bool) else str(value)
        out.append(f"{key.replace('__', '.')}={text}")
    return out


def train(config: str | Path | RunConfig = "small", *, data: str | None = None, out: str | Path | None = None,
          steps: int | None = None, seed: int | None = None, log: Sequence[str] = (), resume: bool = False,
          overrides: Sequence[str] = (), **options: Any) -> TrainResult:
    """Pretrain a hybrid model (``config``: a preset name, a YAML file or a RunConfig); returns its result.
    ``log``: experiment trackers (tensorboard, mlflow, wandb); ``resume`` continues the run in ``out``."""
    from hybridssl.app.train import train_run

    extra = [f"data.train={data}"] if data else []
    extra += [f"train.steps={steps}"] if steps is not None else []
    extra += [f"train.seed={seed}"] if seed is not None else []
    extra += [f"train.log={','.join(log)}"] if log else []
    over = [*extra, *config_overrides(overrides, options)]
    cfg = _apply(config, over) if isinstance(config, RunConfig) else load_config(config, over)
    run_dir = Path(out) if out is not None else Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    metrics = train_run(cfg, run_dir, resume=resume)
    return TrainResult(run_dir, load_config(run_dir / "config.yaml"), metrics)


def _apply(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    from hybridssl.config import deep_update, parse_override

    d = cfg.to_dict()
    for item in overrides:
        d = deep_update(d, parse_override(item))
    return RunConfig.from_dict(d)


def evaluate(run_dir: str | Path, *, data: Any = None, out: str | Path | None = None, **options: Any) -> EvalResult:
    """Evaluate a run (``options``: the fields of ``hybridssl.app.evaluate.EvalOptions``, e.g.
    ``fractions=(0.01, 0.1)``, ``seeds=(0, 1, 2)``, ``finetune=False``)."""
    from hybridssl.app.evaluate import evaluate_run

    report = evaluate_run(run_dir, data=data, out_dir=out, **options)
    return EvalResult(Path(out) if out is not None else Path(run_dir) / "eval", report)
