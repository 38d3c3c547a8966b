"""`hssl distill --teacher RUN_DIR --student mobilevit`: distil a teacher run into small students.

A thin layer over :func:`distill.api.distill_run`: parses the options, shows progress bars (teacher
cache, training, report), prints the student's held-out tables and the teacher-vs-student table
(parameters, FLOPs, CPU latency, retrieval, zero-shot, linear probe, retention, cross-compatibility).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from cli.console import PhaseProgress, TrainProgress, console, print_heldout, skip_table
from cli.options import log_override, parse_list
from hybridssl.data.specs import forms_help


class Bars:
    """One live bar at a time: phase work (caching, report) and the training bar between them."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.train: TrainProgress | None = None
        self.phase: PhaseProgress | None = None

    def _close_train(self) -> None:
        if self.train is not None:
            self.train.__exit__(None, None, None)
            self.train = None

    def _close_phase(self) -> None:
        if self.phase is not None:
            self.phase.__exit__(None, None, None)
            self.phase = None

    def on_progress(self, what: str, done: int, total: int) -> None:
        self._close_train()
        if self.phase is None:
            self.phase = PhaseProgress("distill", what, enabled=self.enabled).__enter__()
        self.phase.update(what, done, total)

    def on_start(self, trainer: Any) -> None:
        self._close_phase()
        self.train = TrainProgress(trainer.cfg.train.steps, trainer.state.step, enabled=self.enabled)
        self.train.__enter__()

    def on_step(self, log: Any) -> None:
        if self.train is not None:
            self.train.update(log)

    def close(self) -> None:
        self._close_train()
        self._close_phase()


def comparison_table(report: dict[str, Any]) -> Table:
    """The report's rows: metric, teacher, student, retention (%) or reduction (×)."""
    from distill.report import format_row

    students = ", ".join(f"{m}: {n}" for m, n in report.get("students", {}).items())
    t = Table(title=f"Teacher vs student ({students}); retention = student / teacher, reduction = teacher / student")
    for col in ("metric", "teacher", "student", "retention / reduction", "chance"):
        t.add_column(col, justify="left" if col == "metric" else "right", no_wrap=col != "metric")
    for row in report["rows"]:
        t.add_row(*format_row(row))
    return t


def distill(
    teacher: Annotated[Path, typer.Option("--teacher", "-t", help="teacher run directory (written by hssl train)")],
    student: Annotated[str, typer.Option(help="student name(s), comma-separated, each filling its modality: "
                                              "mobilevit[_xxs|_xs|_s], mobilenetv3_small|large, efficientnet_b0, "
                                              "vit_tiny, text_tiny|small, audio_cnn|audio_vit_tiny, seq_tcn|seq_tiny "
                                              "(default: mobilevit, text_tiny, audio_cnn, seq_tcn)")] = "",
    modalities: Annotated[Optional[str], typer.Option(help="modalities to distil, comma-separated (default: the "
                                                           "teacher's)")] = None,
    steps: Annotated[Optional[int], typer.Option(help="optimizer steps (default: the teacher's)")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="student run directory "
                                                                    "(default runs/<teacher>-<student>-<time>)")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="student image input size (default: the teacher's)")] = None,
    data: Annotated[Optional[str], typer.Option(help=forms_help("training data spec (default: the teacher's)"))] = None,
    cache_teacher: Annotated[bool, typer.Option("--cache-teacher", help="precompute the teacher's embeddings of the "
                                                                         "training set once, cached on disk")] = False,
    rebuild_cache: Annotated[bool, typer.Option("--rebuild-cache", help="rebuild a teacher cache that does not "
                                                                         "match this run")] = False,
    report: Annotated[bool, typer.Option("--report/--no-report", help="measure and print teacher vs student")] = True,
    eval_size: Annotated[int, typer.Option(help="report: test items (the labelled pool is twice as many)")] = 500,
    threads: Annotated[int, typer.Option(help="report: CPU threads for the latency measurement")] = 1,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override a config key: distill.key=value or "
                                                                    "section.key=value (e.g. train.lr=0.001)")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="no progress bars")] = False,
    log: Annotated[Optional[list[str]], typer.Option("--log", help="experiment tracker: tensorboard | mlflow | wandb "
                                                                   "(repeatable; offline by default)")] = None,
) -> None:
    from distill.api import distill_run

    overrides = [*(set_ or []), *log_override(log)]
    if rebuild_cache:
        overrides.append("distill.rebuild_cache=true")
    mods = parse_list(modalities, "--modalities") if modalities is not None else None
    run_dir = out or Path("runs") / f"{teacher.name}-{(student or 'students').replace(',', '+')}-{time.strftime('%Y%m%d-%H%M%S')}"
    console.print(f"[bold]hssl distill[/] teacher [cyan]{teacher}[/] student [cyan]{student}[/] → {run_dir}")
    bars = Bars(enabled=not no_progress)
    try:
        metrics = distill_run(teacher, run_dir, student=student, modalities=mods, steps=steps, image_size=image_size,
                              cache_teacher=cache_teacher or None, data=data, overrides=overrides,
                              on_step=bars.on_step, on_start=bars.on_start, progress=bars.on_progress, report=report,
                              report_options={"test_size": eval_size, "pool_size": 2 * eval_size, "threads": threads})
    finally:
        bars.close()
    print_heldout(metrics["heldout"])
    skipped = skip_table(metrics["data_report"])
    if skipped is not None:
        console.print(skipped)
    if "report" in metrics:
        console.print(comparison_table(metrics["report"]))
    console.print(f"{metrics['steps']} steps in {metrics['train_seconds']:.0f} s ({metrics['samples_per_s']:.1f} "
                  f"samples/s); student run saved in [bold]{run_dir}[/]"
                  + (f", report in [bold]{run_dir / 'distill_report.json'}[/]" if "report" in metrics else ""))
