"""`hssl export RUN_DIR --target onnx|onnxruntime|openvino|tensorrt`: a run → a device bundle.

A thin layer over :func:`export.api.export_run`: parses the options, shows a progress bar, prints the
parity/accuracy table of every step (min cosine to PyTorch, worst ΔR@1, worst Δzero-shot, file size)
and where the bundle went. A missing optional back end (OpenVINO, TensorRT, no GPU) is one red line.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from cli.console import PhaseProgress, console, error, warn
from cli.options import parse_list, parse_positive_ints


def _worst(delta: dict[str, float], prefix: str) -> float | None:
    values = [v for k, v in delta.items() if k.startswith(prefix)]
    if not values:
        return None
    return min(values, key=lambda v: v if math.isfinite(v) else -math.inf)


def _fmt_delta(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:+.1f}" if math.isfinite(v) else "n/a"


def _fmt_bytes(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def steps_table(report: dict[str, Any]) -> Table:
    """One row per export step: what ran, how close to PyTorch, what the task metrics did, how big."""
    t = Table(title=f"Parity and accuracy per step vs PyTorch ({report['reference']['held_out_items']} held-out "
                    f"items; Δ = worst change, points; max drop {report['settings']['max_drop']:g})")
    for col in ("step", "precision", "min cos", "ΔR@1", "Δzero-shot", "size", "status"):
        t.add_column(col, justify="left" if col in ("step", "precision", "status") else "right", no_wrap=col == "step")
    for s in report["steps"]:
        cos = min((c["min"] for c in s["cosine"].values()), default=float("nan"))
        size = sum(f["bytes"] for f in s.get("files", {}).values())
        status = "[green]ok[/]" if s["passed"] else "[red]rejected[/]"
        t.add_row(s["step"], s["precision"], f"{cos:.5f}", _fmt_delta(_worst(s["delta"], "R@1")),
                  _fmt_delta(_worst(s["delta"], "zero-shot")), _fmt_bytes(size), status)
    return t


def export(
    run_dir: Annotated[Path, typer.Argument(help="a run directory (hybrid teacher or distilled student)")],
    target: Annotated[str, typer.Option("--target", "-t", help="onnx | onnxruntime | openvino | tensorrt")] = "onnx",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="bundle folder (default: RUN_DIR/bundle-TARGET)")] = None,
    precision: Annotated[Optional[str], typer.Option(help="default precision fp32 | fp16 | int8 (strict); default: the "
                                                          "smallest variant within --max-drop")] = None,
    calibration: Annotated[str, typer.Option(help="int8 calibration: minmax | entropy | percentile | distribution")] = "minmax",
    calibration_size: Annotated[int, typer.Option(help="training items used to calibrate int8 scales")] = 256,
    per_channel: Annotated[bool, typer.Option("--per-channel/--per-tensor", help="int8 weight scales per output channel")] = True,
    reduce_range: Annotated[bool, typer.Option("--reduce-range/--full-range",
                                               help="7-bit int8 weights (avoids u8×s8 saturation on AVX2 CPUs)")] = True,
    keep_float: Annotated[str, typer.Option(help="node groups kept float in static int8: attention, head, stem")] = "attention",
    max_drop: Annotated[float, typer.Option(help="accuracy guard: largest allowed drop of any R@1 / zero-shot "
                                                 "metric, in points")] = 1.0,
    eval_size: Annotated[int, typer.Option(help="held-out items for the parity and accuracy checks")] = 512,
    modalities: Annotated[Optional[str], typer.Option(help="towers to export, comma-separated (default: all)")] = None,
    accuracy_control: Annotated[bool, typer.Option("--accuracy-control", help="OpenVINO: NNCF quantization with "
                                                                             "accuracy control")] = False,
    exporter: Annotated[str, typer.Option(help="torch.onnx exporter: legacy | dynamo")] = "legacy",
    threads: Annotated[int, typer.Option(help="CPU threads for PyTorch and the back ends (0 = default)")] = 0,
    checkpoint: Annotated[Optional[str], typer.Option(help="checkpoint folder name (default: the latest)")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an existing bundle at --out")] = False,
    static_shapes: Annotated[Optional[str], typer.Option(help="also write fixed-batch copies of the ONNX towers for "
                                                         "mobile execution providers, e.g. 1 or 1,8")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    from export.api import export_run
    from export.tensorrt_backend import TensorRTUnavailable

    out = out or Path(run_dir) / f"bundle-{target}"
    try:
        with PhaseProgress("export", "loading the run", enabled=not no_progress) as bar:
            report = export_run(run_dir, out, target, precision, progress=bar.update, calibration=calibration,
                                calibration_size=calibration_size, per_channel=per_channel, reduce_range=reduce_range,
                                keep_float=parse_list(keep_float, "--keep-float"), max_drop=max_drop,
                                eval_size=eval_size, modalities=parse_list(modalities, "--modalities") or None,
                                accuracy_control=accuracy_control, exporter=exporter, threads=threads,
                                checkpoint=checkpoint, overwrite=overwrite,
                                static_batches=parse_positive_ints(static_shapes, "--static-shapes"))
    except (TensorRTUnavailable, ModuleNotFoundError) as e:
        error(e)
        raise typer.Exit(2) from None
    console.print(steps_table(report))
    for p, why in report["rejected"].items():
        warn(f"{p} not shipped:", why)
    console.print(f"bundle ([bold]{report['target']}[/], default precision [bold]{report['precision']}[/], shipped "
                  f"{', '.join(report['shipped'])}) written to [bold]{report['bundle']}[/] in {report['seconds']:.0f} s")
