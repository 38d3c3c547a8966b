"""Distillation benchmark: a teacher (trained here with the `teacher` preset, or ``--teacher RUN_DIR``)
distilled into ``mobilevit_xxs`` (image) + the default text/audio students, then the side-by-side
report (:func:`distill.report.distill_report`) and the distillation targets:

* the student image tower keeps >= 90 % of the teacher's image→text R@1,
* and >= 90 % of its 10 %-label linear-probe accuracy (image tower; both probe inputs are reported,
  the target is checked on the pooled tower features, ``hssl eval``'s default),
* with >= 5× fewer parameters than the teacher's image tower.

    .venv/bin/python benchmarks/distill.py [--teacher RUN_DIR | --config teacher --teacher-steps N]
        [--teacher-set section.key=value ...] [--steps 400] [--student mobilevit_xxs] [--image-size 64]
        [--no-cache] [--threads 2] [--set distill.key=value ...]
    .venv/bin/python benchmarks/distill.py --report-only STUDENT_RUN     # re-measure an existing student

Prints rich tables and writes benchmarks/results/distill.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from edge_runtime.machine import machine_info

OUT = Path(__file__).parent / "results" / "distill.json"
ROOT = Path(__file__).resolve().parent.parent
# this file shares its name with a package: the repository root must come first, this folder not at all
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]

console = Console()


def train_teacher(config: str, steps: int | None, threads: int, overrides: list[str], out: Path) -> tuple[Path, float]:
    from hybridssl.app.train import train_run
    from hybridssl.config import load_config, preset_path

    try:
        preset_path(config)
    except ValueError:
        console.print(f"[yellow]preset {config!r} not found; training the `small` preset instead[/]")
        config = "small"
    overrides = [f"train.threads={threads}", *overrides] + ([f"train.steps={steps}"] if steps else [])
    t0 = time.perf_counter()
    train_run(load_config(config, overrides), out)
    return out, time.perf_counter() - t0


def targets(report: dict[str, Any]) -> dict[str, Any]:
    """The three distillation targets, measured on the report."""
    rows = {r["metric"]: r for r in report["rows"]}
    r1 = rows.get("R@1 image->text", {})
    probe = rows.get("linear probe image 10 % labels, tower features", {})
    params = rows.get("image tower parameters", {})

    def check(row: dict, threshold: float) -> dict[str, Any]:
        ratio, chance, teacher = row.get("ratio"), row.get("chance"), row.get("teacher")
        out = {"teacher": teacher, "student": row.get("student"), "ratio": ratio, "target": threshold,
               "met": ratio is not None and ratio >= threshold}
        if chance is not None:  # a retention is evidence only when the teacher is clearly above chance
            out.update(chance=chance, teacher_above_chance=teacher is not None and teacher >= 2 * chance)
        return out

    return {"image->text R@1 retention (%)": check(r1, 90.0),
            "10 % linear probe retention (%)": check(probe, 90.0),
            "image tower parameter reduction (×)": check(params, 5.0)}


def targets_table(result: dict[str, Any]) -> Table:
    t = Table(title="Distillation targets (mobilevit_xxs image tower vs the teacher's)")
    for col in ("target", "teacher", "student", "measured", "needed", "met"):
        t.add_column(col, justify="left" if col == "target" else "right")
    for name, r in result.items():
        if r.get("teacher_above_chance") is False:
            name += " [yellow](teacher at chance)[/]"
        fmt = (lambda v: "-" if v is None else f"{v / 1e6:.2f} M") if "parameter" in name else \
              (lambda v: "-" if v is None else f"{v:.1f}")
        t.add_row(name, fmt(r["teacher"]), fmt(r["student"]), "-" if r["ratio"] is None else f"{r['ratio']:.1f}",
                  f"{r['target']:g}", "[green]yes[/]" if r["met"] else "[red]no[/]")
    return t


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", type=Path, help="an existing teacher run (default: train one)")
    p.add_argument("--report-only", type=Path, help="only (re)measure the report of an existing student run")
    p.add_argument("--config", default="teacher", help="preset of the teacher trained here")
    p.add_argument("--teacher-steps", type=int, default=None, help="teacher steps (default: the preset's)")
    p.add_argument("--teacher-set", action="append", default=[], help="teacher config override section.key=value")
    p.add_argument("--steps", type=int, default=400, help="distillation steps")
    p.add_argument("--student", default="mobilevit_xxs", help="student name(s), comma-separated")
    p.add_argument("--modalities", default="image,text,audio")
    p.add_argument("--image-size", type=int, default=0, help="student image size (0: the teacher's)")
    p.add_argument("--no-cache", action="store_true", help="run the teacher live instead of caching its embeddings")
    p.add_argument("--threads", type=int, default=2, help="torch threads for training")
    p.add_argument("--eval-size", type=int, default=500, help="report test items (pool: twice as many)")
    p.add_argument("--latency-threads", type=int, default=1)
    p.add_argument("--set", dest="overrides", action="append", default=[], help="distill.key=value or section.key=value")
    p.add_argument("--out", type=Path, default=None, help="folder for the runs (default runs/bench-distill-<time>)")
    args = p.parse_args(argv)

    from distill.api import distill_run

    report_options = {"test_size": args.eval_size, "pool_size": 2 * args.eval_size, "threads": args.latency_threads}
    if args.report_only is not None:
        from distill.report import distill_report

        report = distill_report(args.report_only, args.teacher, **report_options)
        return write(args, argv, report, {"student_run": str(args.report_only), "teacher_run": report["teacher_run"]})
    root = args.out or ROOT / "runs" / f"bench-distill-{time.strftime('%Y%m%d-%H%M%S')}"
    teacher_seconds = None
    if args.teacher is None:
        console.rule(f"[bold]training the teacher ({args.config})")
        teacher, teacher_seconds = train_teacher(args.config, args.teacher_steps, args.threads, args.teacher_set,
                                                root / "teacher")
    else:
        teacher = args.teacher
    console.rule(f"[bold]distilling into {args.student}")
    t0 = time.perf_counter()
    metrics = distill_run(teacher, root / "student", student=args.student,
                          modalities=tuple(args.modalities.split(",")), steps=args.steps,
                          image_size=args.image_size or None, cache_teacher=not args.no_cache,
                          overrides=[f"train.threads={args.threads}", *args.overrides], report=True,
                          report_options=report_options)
    seconds = time.perf_counter() - t0
    report = metrics.pop("report")
    return write(args, argv, report, {
        "teacher_run": str(teacher), "student_run": str(root / "student"),
        "teacher_train_seconds": None if teacher_seconds is None else round(teacher_seconds, 1),
        "distill_seconds_with_report": round(seconds, 1),
        "distill_train_seconds": metrics["train_seconds"], "distill_samples_per_s": metrics["samples_per_s"],
        "student_metrics": metrics})


def write(args: argparse.Namespace, argv: list[str] | None, report: dict[str, Any], extra: dict[str, Any]) -> dict:
    """Print the report and target tables; write the JSON."""
    from cli.distill import comparison_table

    console.print(comparison_table(report))
    met = targets(report)
    console.print(targets_table(met))
    result = {
        "command": "python benchmarks/distill.py " + " ".join(sys.argv[1:] if argv is None else argv),
        **extra, "targets": met, "rows": report["rows"], "report": report,
        "machine": {**machine_info(), "torch": torch.__version__,
                    "threads": args.threads, "latency_threads": args.latency_threads},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))
    console.print(f"written {OUT}")
    return result


if __name__ == "__main__":
    main()
