"""`hssl train`: train the hybrid model (defaults: the `small` preset on the built-in dataset)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.console import TrainProgress, console, print_heldout, skip_table
from cli.options import log_override
from hybridssl.data.specs import forms_help


def train(
    config: Annotated[Optional[str], typer.Option("--config", "-c", help="preset name (tiny|small|base|large) or YAML file")] = None,
    data: Annotated[Optional[str], typer.Option(help=forms_help())] = None,
    val: Annotated[Optional[str], typer.Option(help="validation dataset spec (default: built-in val split or a seeded hold-out)")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="run directory (default runs/<preset>-<time>)")] = None,
    steps: Annotated[Optional[int], typer.Option(help="total optimizer steps")] = None,
    seed: Annotated[Optional[int], typer.Option(help="random seed")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in --out from its last checkpoint")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override any config key: section.key=value")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="no progress bar")] = False,
    log: Annotated[Optional[list[str]], typer.Option("--log", help="experiment tracker: tensorboard | mlflow | wandb "
                                                                   "(repeatable; offline by default)")] = None,
    allow_outside_paths: Annotated[bool, typer.Option("--allow-outside-paths",
                                                      help="let a manifest read files outside its folder")] = False,
) -> None:
    from hybridssl.app.train import train_run
    from hybridssl.config import load_config

    overrides = [*(set_ or []), *log_override(log)]
    if data:
        overrides.append(f"data.train={data}")
    if val:
        overrides.append(f"data.val={val}")
    if steps is not None:
        overrides.append(f"train.steps={steps}")
    if seed is not None:
        overrides.append(f"train.seed={seed}")
    if allow_outside_paths:
        overrides.append("data.allow_outside_paths=true")
    if resume and out is None:
        raise typer.BadParameter("--resume needs --out RUN_DIR")
    if resume and out is not None and config is None and (out / "config.yaml").is_file():
        config = str(out / "config.yaml")  # resume the run's own config; options given must agree with it
    cfg = load_config(config, overrides)
    run_dir = out or Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    console.print(f"[bold]hssl train[/] preset [cyan]{cfg.name}[/] data [cyan]{cfg.data.train}[/] → {run_dir}")
    bar: TrainProgress | None = None

    def on_start(trainer) -> None:
        nonlocal bar
        if trainer.world_size > 1 and trainer.rank == 0:
            console.print(f"distributed: {trainer.world_size} processes ({trainer.cfg.train.distributed}), "
                          f"global batch {trainer.cfg.train.batch_size}")
        bar = TrainProgress(trainer.cfg.train.steps, trainer.state.step, enabled=not no_progress and trainer.rank == 0)
        bar.__enter__()

    try:
        metrics = train_run(cfg, run_dir, resume=resume, on_step=lambda log: bar.update(log) if bar else None,
                            on_start=on_start)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if "heldout" not in metrics:  # a rank other than 0 under torchrun
        return
    print_heldout(metrics["heldout"])
    skipped = skip_table(metrics["data_report"])
    if skipped is not None:
        console.print(skipped)
    change = metrics.get("schedule_change")
    if change:
        console.print(f"resumed at step {change['resumed_at_step']} of a run planned for {change['planned_steps']} steps: "
                      f"from there on the lr schedule is the one planned for {change['steps']} steps")
    console.print(f"{metrics['steps']} steps in {metrics['train_seconds']:.0f} s "
                  f"({metrics['samples_per_s']:.1f} samples/s); run saved in [bold]{run_dir}[/]")
