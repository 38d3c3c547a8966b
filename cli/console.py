"""Shared rich rendering for the CLI: the progress bars and result tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console()


def error(message: object) -> None:
    """One red ``error:`` line; the message is printed literally (``pip install 'hssl[openvino]'``
    would otherwise lose its ``[openvino]`` to rich markup)."""
    console.print(f"[red]error:[/] {escape(str(message))}")


def warn(prefix: str, message: object) -> None:
    """A yellow ``prefix`` followed by ``message`` printed literally."""
    console.print(f"[yellow]{escape(prefix)}[/] {escape(str(message))}")


def short(name: str) -> str:
    """'contrastive/image-text' → 'c:image-text', 'mae/image' → 'mae:image'."""
    group, _, what = name.partition("/")
    return f"{'c' if group == 'contrastive' else group}:{what}"


def progress_bar(label: str, *, enabled: bool = True, eta: bool = False,
                 text: str | None = "{task.description}") -> Progress:
    """The one bar style of every hssl command: ``label``, bar, done/total, a ``text`` column (the
    current phase by default; None for none), elapsed time (and ETA when the total is known up front)."""
    columns: list[Any] = [TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn()]
    if text is not None:
        columns.append(TextColumn(text))
    columns.append(TimeElapsedColumn())
    if eta:
        columns += [TextColumn("ETA"), TimeRemainingColumn()]
    return Progress(*columns, console=console, disable=not enabled, transient=False)


class PhaseProgress:
    """A bar fed by the library's ``progress(what, done, total)`` callbacks (export, eval, ablate,
    distill); use as a context manager and pass :meth:`update` as the callback. An empty ``what``
    keeps the current description."""

    def __init__(self, label: str, first: str = "", enabled: bool = True) -> None:
        self.bar = progress_bar(label, enabled=enabled)
        self.task = self.bar.add_task(first, total=None)

    def __enter__(self) -> "PhaseProgress":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def update(self, what: str, done: int, total: int) -> None:
        if what:
            self.bar.update(self.task, completed=done, total=total, description=what)
        else:
            self.bar.update(self.task, completed=done, total=total)


class TrainProgress:
    """A progress bar showing loss terms, weights, samples/s and ETA; use as a context manager."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True) -> None:
        self.progress = progress_bar("train", enabled=enabled, eta=True, text="{task.fields[info]}")
        self.task = self.progress.add_task("train", total=total, completed=start, info="")

    def __enter__(self) -> "TrainProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def update(self, log: Any) -> None:
        parts = " ".join(f"{short(k)}={v:.3f}×{log.weights.get(k, 1.0):.2f}" for k, v in log.parts.items())
        info = f"loss {log.loss:.3f} | {parts} | {log.samples_per_s:.0f} samples/s"
        self.progress.update(self.task, completed=log.step, info=info)


def retrieval_table(report: dict[str, Any]) -> Table:
    t = Table(title="Held-out cross-modal retrieval (%, chance beside)")
    for col in ("direction", "R@1", "chance", "R@5", "chance", "R@10", "median rank", "chance"):
        t.add_column(col, justify="right" if col != "direction" else "left")
    for name, r in report.get("retrieval", {}).items():
        t.add_row(name, f"{r['R@1']:.1f}", f"{r['chance_R@1']:.2f}", f"{r['R@5']:.1f}", f"{r['chance_R@5']:.2f}",
                  f"{r['R@10']:.1f}", f"{r['median_rank']:.0f}", f"{r['chance_median_rank']:.0f}")
    return t


def zero_shot_table(report: dict[str, Any]) -> Table:
    t = Table(title="Held-out zero-shot classification from text prompts (%)")
    for col in ("modality", "accuracy", "macro-F1", "chance", "n"):
        t.add_column(col, justify="right" if col != "modality" else "left")
    for m, z in report.get("zero_shot", {}).items():
        t.add_row(m, f"{z['accuracy']:.1f}", f"{z['macro_f1']:.1f}", f"{z['chance']:.1f}", str(z.get("n", "")))
    return t


def attribute_zero_shot_table(report: dict[str, Any]) -> Table | None:
    attrs = report.get("zero_shot_attributes") or {}
    if not attrs:
        return None
    modalities = sorted({m for per in attrs.values() for m in per})
    t = Table(title="Held-out zero-shot accuracy per scene attribute (%, chance beside)")
    t.add_column("attribute")
    for m in modalities:
        t.add_column(m, justify="right")
    t.add_column("chance", justify="right")
    for attribute, per in attrs.items():
        chance = next(iter(per.values()))["chance"] if per else float("nan")
        t.add_row(attribute, *[f"{per[m]['accuracy']:.1f}" if m in per else "-" for m in modalities], f"{chance:.1f}")
    return t


def skip_table(report: dict[str, Any], title: str = "Data items skipped / repaired") -> Table | None:
    if not report.get("skipped") and not report.get("repaired"):
        return None
    t = Table(title=title)
    t.add_column("what")
    t.add_column("reason")
    t.add_column("count", justify="right")
    t.add_column("examples")
    for reason, n in report.get("skipped", {}).items():
        t.add_row("skipped", reason, str(n), "; ".join(report.get("examples", {}).get(reason, [])[:3]))
    for what, n in report.get("repaired", {}).items():
        t.add_row("repaired", what, str(n), "")
    return t


def print_heldout(report: dict[str, Any]) -> None:
    """Retrieval, zero-shot and per-attribute zero-shot tables of a held-out report."""
    console.print(retrieval_table(report))
    console.print(zero_shot_table(report))
    attrs = attribute_zero_shot_table(report)
    if attrs is not None:
        console.print(attrs)


def kv_table(title: str, rows: dict[str, Any]) -> Table:
    t = Table(title=title, show_header=False)
    t.add_column("key", style="bold")
    t.add_column("value")
    for k, v in rows.items():
        t.add_row(str(k), str(v))
    return t
