"""`hssl demo`: the pipeline end to end on the built-in dataset, ending in one summary table.

Today: pretrain the hybrid teacher and evaluate it held out. Distillation, export and the edge
runtime join the pipeline as they land.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from cli.console import TrainProgress, console, print_heldout


def demo(
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="demo directory")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="a one-minute version (fewer steps, smaller data)")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    from hybridssl.config import load_config
    from hybridssl.run import train_run

    overrides = ["train.steps=60", "data.train_size=2048", "data.val_size=500", "train.eval_size=500"] if quick else []
    cfg = load_config("small", overrides)
    root = out or Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    console.rule("[bold]1/1 pretrain the hybrid teacher (contrastive + generative, adaptive weighting)")
    bar = TrainProgress(cfg.train.steps, enabled=not no_progress)
    with bar:
        metrics = train_run(cfg, root / "teacher", on_step=bar.update)
    print_heldout(metrics["heldout"])
    summary = Table(title="hssl demo — summary")
    for col in ("stage", "result", "chance", "artifact"):
        summary.add_column(col)
    ret = metrics["heldout"]["retrieval"]
    for name in ("image->text", "audio->image"):
        if name in ret:
            summary.add_row(f"teacher {name} R@1", f"{ret[name]['R@1']:.1f} %", f"{ret[name]['chance_R@1']:.2f} %",
                            str(root / "teacher"))
    for m, z in metrics["heldout"]["zero_shot"].items():
        summary.add_row(f"teacher zero-shot {m}", f"{z['accuracy']:.1f} %", f"{z['chance']:.1f} %", "")
    summary.add_row("training time", f"{metrics['train_seconds']:.0f} s", "", f"{metrics['samples_per_s']:.0f} samples/s")
    console.print(summary)
