"""`hssl ablate`: the seed paper's ablation table (full / contrastive only / generative only / no dynamic weighting)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from cli.console import PhaseProgress, console
from cli.options import log_override
from hybridssl.data.specs import forms_help


def ablate(
    config: Annotated[str, typer.Option("--config", "-c", help="base preset or YAML file")] = "small",
    data: Annotated[Optional[list[str]], typer.Option("--data", help=forms_help("dataset spec, repeat for a column per dataset"))] = None,
    seeds: Annotated[int, typer.Option(help="number of seeds (0..N-1)")] = 3,
    quick: Annotated[bool, typer.Option("--quick", help="the ~3-minute budget")] = False,
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("runs/ablation"),
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="extra config override for every variant")] = None,
    log: Annotated[Optional[list[str]], typer.Option("--log", help="experiment tracker: tensorboard | mlflow | wandb "
                                                                   "(repeatable; offline by default)")] = None,
    modality: Annotated[Optional[str], typer.Option(help="tower of the low-label columns, e.g. seq_sensor "
                                                         "(default: image, else audio, text, a sequence)")] = None,
) -> None:
    from hybridssl.app.ablation import METRIC_NAMES, attribute_metrics, run_ablation

    if seeds < 1:
        raise ValueError("--seeds must be at least 1")
    with PhaseProgress("ablate") as bar:
        result = run_ablation(config, data or ["builtin"], tuple(range(seeds)), out, quick,
                              [*(set_ or []), *log_override(log)], bar.update, modality=modality)
    for spec, per in result["table"].items():
        metrics = [m for m in METRIC_NAMES if any(m in v for v in per.values())]
        console.print(_table(f"Ablation on {spec} (%, mean ± std over {seeds} seed(s))", per, metrics,
                             [METRIC_NAMES[m] for m in metrics]))
        attrs = attribute_metrics(per)
        if attrs:
            chance = result["attribute_chance"].get(spec, {})
            console.print(_table(f"Attribute probes on {spec} (linear, 10 % labels; chance in brackets)", per, attrs,
                                 [f"{m.split(':', 1)[1]} ({chance.get(m, float('nan')):.1f})" for m in attrs]))
    console.print(f"wrote {out / 'ablation.md'}, {out / 'ablation.json'}, {out / 'ablation.png'} ({result['seconds']:.0f} s)")


def _table(title: str, per: dict, metrics: list[str], headers: list[str]) -> Table:
    from hybridssl.app.ablation import VARIANTS

    t = Table(title=title)
    t.add_column("variant")
    for h in headers:
        t.add_column(h, justify="right")
    for variant in VARIANTS:
        stats = per.get(variant, {})
        t.add_row(variant, *[f"{stats[m]['mean']:.1f} ± {stats[m]['std']:.1f}" if m in stats else "–" for m in metrics])
    return t
