"""`hssl info RUN_DIR`: summarise a run (config, data, checkpoints, parameters, held-out metrics)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.console import console, kv_table, print_heldout, skip_table


def info(run_dir: Annotated[Path, typer.Argument(help="a run directory written by hssl train")]) -> None:
    from hybridssl.app.train import run_summary

    s = run_summary(run_dir)
    console.print(kv_table(f"Run {run_dir}", s["overview"]))
    metrics = s.get("metrics")
    if metrics:
        print_heldout(metrics["heldout"])
        skipped = skip_table(metrics.get("data_report", {}))
        if skipped is not None:
            console.print(skipped)
    else:
        console.print("[yellow]no metrics.json yet: the run has not finished[/]")
