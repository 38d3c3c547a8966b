"""`hssl eval RUN_DIR`: retrieval, zero-shot, low-label protocols and embedding quality of a run.

A thin layer over :func:`hybridssl.app.evaluate.evaluate_run`: parses the options, shows a
progress bar, renders the returned dict as rich tables and says where the files went.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from cli.console import PhaseProgress, console, retrieval_table, skip_table, zero_shot_table
from cli.options import parse_floats, parse_list


def parse_fractions(text: str) -> tuple[float, ...]:
    """``"0.01,0.05,1"`` → (0.01, 0.05, 1.0); every value must lie in (0, 1]."""
    from hybridssl.evaluation.lowlabel import check_fractions

    values = parse_floats(text, "--fractions")
    try:
        return check_fractions(values)
    except ValueError as e:
        raise ValueError(f"--fractions: {e}") from None


def _pm(summary: dict[str, Any] | None) -> str:
    return "-" if summary is None else f"{summary['mean']:.1f}±{summary['std']:.1f}"


def low_label_table(low: dict[str, Any]) -> Table:
    """Every protocol × label fraction, then the floors (raw input, random-init tower) on the same splits."""
    t = Table(title=f"Low-label protocols, {low.get('modality', '?')} tower (%, mean ± std over seeds; "
                    f"chance {low.get('chance', float('nan')):.1f}, majority class {low.get('majority', float('nan')):.1f})")
    for col in ("protocol", "labels", "n", "accuracy", "macro-F1", "weighted F1", "missing"):
        t.add_column(col, justify="left" if col == "protocol" else "right", no_wrap=True)
    for name, by_fraction in low.get("protocols", {}).items():
        for f, r in sorted(by_fraction.items(), key=lambda kv: float(kv[0])):
            missing = max((len(m) for m in r["missing_classes"]), default=0)
            t.add_row(name, f"{100 * float(f):g}%", "/".join(str(n) for n in sorted(set(r["n_train"]))),
                      _pm(r["accuracy"]), _pm(r["macro_f1"]), _pm(r.get("weighted_f1")), "skipped" if r.get("skipped") else str(missing))
    for name, by_fraction in (low.get("floors") or {}).items():
        if name == "features":
            continue
        for f, r in sorted(by_fraction.items(), key=lambda kv: float(kv[0])):
            t.add_row(f"floor: {name.replace('_', ' ')}", f"{100 * float(f):g}%", "", _pm(r.get("accuracy")),
                      _pm(r.get("macro_f1")), "", "skipped" if r.get("skipped") else "")
    return t


def attribute_table(attributes: dict[str, Any]) -> Table:
    """Frozen probes per attribute (rows) × protocol and label fraction (columns), chance beside."""
    columns = list(dict.fromkeys((p, f) for a in attributes.values() for p, by_f in a["protocols"].items()
                                 for f in sorted(by_f, key=float)))
    t = Table(title="Attribute probes (frozen; %, mean ± std over seeds)")
    t.add_column("attribute")
    t.add_column("chance", justify="right")
    for p, f in columns:
        t.add_column(f"{p.replace('_', ' ')} {100 * float(f):g}%", justify="right", no_wrap=True)
    for name, a in attributes.items():
        t.add_row(name, f"{a['chance']:.1f}", *[_pm((a["protocols"].get(p, {}).get(f) or {}).get("accuracy"))
                                                 for p, f in columns])
    return t


def quality_table(quality: dict[str, Any]) -> Table:
    t = Table(title="Embedding quality, test split (alignment and uniformity: lower is better)")
    for col in ("pair / modality", "alignment", "uniformity", "eff. rank / dim", "n"):
        t.add_column(col, justify="left" if col == "pair / modality" else "right", no_wrap=True)
    for pair, q in quality.get("pairs", {}).items():
        t.add_row(pair, f"{q['alignment']:.3f}", " / ".join(f"{v:.3f}" for v in q["uniformity"].values()), "",
                  str(q["n"]))
    for m, q in quality.get("modalities", {}).items():
        t.add_row(m, "", f"{q['uniformity']:.3f}", f"{q['effective_rank']:.1f} / {q['dim']}", str(q["n"]))
    return t


def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="a run directory written by hssl train")],
    data: Annotated[Optional[str], typer.Option(help="evaluation data spec (default: the run's data; built-in: "
                                                     "pool = val split, test = test split; other data: seeded 80/20 split)")] = None,
    fractions: Annotated[str, typer.Option(help="label fractions in (0, 1], comma-separated")] = "0.01,0.05,0.1,1.0",
    seeds: Annotated[int, typer.Option(help="number of seeds (0, 1, …) per fraction")] = 3,
    finetune: Annotated[bool, typer.Option("--finetune/--no-finetune", help="also fine-tune the tower (unfrozen)")] = True,
    finetune_steps: Annotated[int, typer.Option(help="optimizer steps per fine-tuning run")] = 100,
    semi_supervised: Annotated[bool, typer.Option("--semi-supervised/--no-semi-supervised",
                                                  help="also fine-tune with FixMatch on the unlabelled pool")] = False,
    floors: Annotated[bool, typer.Option("--floors/--no-floors",
                                         help="also probe the raw input and a random-init tower on the same splits")] = True,
    encoder_lr: Annotated[float, typer.Option(help="fine-tuning learning rate of the encoder")] = 1e-4,
    head_lr: Annotated[float, typer.Option(help="fine-tuning learning rate of the linear head")] = 1e-3,
    prompts: Annotated[Optional[str], typer.Option(help="zero-shot prompt templates, comma-separated, e.g. "
                                                        "'a {},a photo of a {}' (default: the dataset's prompts)")] = None,
    pool_size: Annotated[int, typer.Option(help="built-in data: labelled pool size")] = 2000,
    test_size: Annotated[int, typer.Option(help="built-in data: test split size")] = 1000,
    modality: Annotated[Optional[str], typer.Option(help="tower for the low-label protocols (default image, "
                                                         "else audio, else text)")] = None,
    checkpoint: Annotated[Optional[str], typer.Option(help="checkpoint folder name (default: the latest)")] = None,
    splits: Annotated[Optional[Path], typer.Option(help="reuse the label splits of an earlier splits.json")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="output folder (default RUN_DIR/eval)")] = None,
    probe_input: Annotated[str, typer.Option(help="what frozen probes read: features (pooled tower features) | "
                                                  "embedding (joint space)")] = "features",
    threads: Annotated[int, typer.Option(help="torch CPU threads (0: torch's default)")] = 0,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="no progress bar")] = False,
) -> None:
    from hybridssl.app.evaluate import evaluate_run
    from hybridssl.evaluation.finetune import FinetuneConfig

    fracs = parse_fractions(fractions)
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    templates = list(parse_list(prompts, "--prompts", required=True)) if prompts is not None else None
    ft_cfg = FinetuneConfig(steps=finetune_steps, lr_encoder=encoder_lr, lr_head=head_lr)
    console.print(f"[bold]hssl eval[/] {run_dir}: fractions {', '.join(f'{f:g}' for f in fracs)}, {seeds} seed(s), "
                  f"fine-tuning {'on' if finetune else 'off'}{' + semi-supervised' if finetune and semi_supervised else ''}")
    with PhaseProgress("eval", "loading", enabled=not no_progress) as bar:
        result = evaluate_run(run_dir, data=data, fractions=fracs, seeds=tuple(range(seeds)), finetune=finetune,
                              finetune_steps=finetune_steps, prompts=templates, out_dir=out, pool_size=pool_size,
                              test_size=test_size, progress=bar.update, modality=modality, checkpoint=checkpoint,
                              splits_file=splits, finetune_config=ft_cfg, threads=threads,
                              probe_input=probe_input, semi_supervised=semi_supervised, floors=floors)
    console.print(f"data: {result['data']['description']}")
    console.print(retrieval_table(result))
    console.print(zero_shot_table(result))
    low = result["low_label"]
    if "protocols" in low:
        console.print(low_label_table(low))
    else:
        console.print(f"[yellow]low-label protocols skipped: {low.get('skipped')}[/]")
    if result.get("attribute_probes"):
        console.print(attribute_table(result["attribute_probes"]))
    console.print(quality_table(result["quality"]))
    for part in ("pool", "test"):
        skipped = skip_table(result["data"]["skipped"][part], f"{part} items skipped / repaired")
        if skipped is not None:
            console.print(skipped)
    console.print(f"evaluation took {result['seconds']['total']:.0f} s; files written:")
    for name, path in result["files"].items():
        console.print(f"  {name}: [bold]{path}[/]")
