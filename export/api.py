"""``export_run``: a teacher or student run → a bundle (docs/bundle.md), every step parity-checked.

Pipeline (each numbered step is evaluated by its real back end on the run's held-out split and
recorded in ``report.json``, see :mod:`export.parity`):

1. ``export``    — one ONNX graph per tower (:mod:`export.onnx_graph`), fp32 gate (min cos ≥ 0.9999);
2. ``optimize``  — onnxscript optimizer + ``onnx.checker``, fp32 gate;
3. per target:

   * ``onnx``        — the fp32 graphs (ONNX Runtime runs the parity check);
   * ``onnxruntime`` — ``ort-int8`` (static QDQ for image/audio calibrated on real training items,
     dynamic int8 for text) and ``ort-fp16`` variants beside fp32 (:mod:`export.quantize_ort`);
   * ``openvino``    — IR ``openvino-fp32``, ``openvino-fp16`` and NNCF ``openvino-int8``
     (:mod:`export.openvino_backend`);
   * ``tensorrt``    — the graphs are checked for TensorRT (ops, static shapes, batch profile); with
     TensorRT and an NVIDIA GPU, ``tensorrt-fp16`` and ``tensorrt-int8`` (from a symmetric QDQ graph)
     engines are built and run; without, :class:`TensorRTUnavailable` says what is missing.

Gates. fp32 steps must reproduce PyTorch (min cosine ≥ 0.9999 per tower, :class:`ParityError`); their
metric changes are recorded but not gated. Every other step is held to the accuracy guard.

Precision. ``precision=None`` (auto) ships every variant whose largest metric drop is within
``max_drop`` points and makes the smallest of them (int8 < fp16 < fp32) the bundle's default;
variants over the limit are left out and listed under ``rejected`` in the report. An explicit
``precision`` is strict: if that variant loses more than ``max_drop`` the export fails with
:class:`AccuracyGuardError` and nothing is written (the bundle is built in a temporary sibling folder,
:class:`export.bundle.BundleWriter`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from edge_runtime.modalities import is_modality, ordered_modalities
from edge_runtime.schema import PRECISIONS, README_FILE, TOKENIZER_FILE
from export.backends import require
from export.bundle import BundleWriter, bundle_readme
from export.data import run_splits
from export.manifest import build_manifest, source_entry
from export.options import ExportOptions, check_target
from export.parity import AccuracyGuardError, HeldOut, ParityError
from export.session import ExportSession, Progress
from export.static_shapes import write_static_variants
from export.targets import TARGET_STEPS
from export.towers import example_feeds
from hybridssl.threads import torch_threads

__all__ = ["ExportOptions", "export_run"]

SMALLEST_FIRST = ("int8", "fp16", "fp32")


def select_modalities(available: Sequence[str], requested: Sequence[str] | None, run_dir: Path) -> tuple[str, ...]:
    """The towers to export, in bundle order; a requested tower the run lacks is an error."""
    if not requested:
        return ordered_modalities(available)
    unknown = [m for m in requested if not is_modality(m)]
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; choose from {', '.join(available)}")
    missing = [m for m in requested if m not in available]
    if missing:
        raise ValueError(f"{run_dir} has no {', '.join(missing)} tower (its towers: {', '.join(available)})")
    return ordered_modalities(requested)


def check_finite_weights(model: torch.nn.Module, run_dir: Path) -> None:
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise ValueError(f"{run_dir}: the checkpoint's weights hold non-finite values ({', '.join(bad[:3])}…)")


def export_run(run_dir: str | Path, out_dir: str | Path, target: str = "onnx", precision: str | None = None, *,
               progress: Progress | None = None, **options: Any) -> dict[str, Any]:
    """Export the run in ``run_dir`` as a ``target`` bundle in ``out_dir``; returns the report (module docstring).

    ``options`` are the fields of :class:`ExportOptions` (calibration, per_channel, reduce_range,
    keep_float, calibration_size, calibration_data, eval_size, max_drop, accuracy_control, exporter,
    opset, threads, trt_profile, checkpoint, modalities, overwrite). ``threads`` > 0 also sets PyTorch's
    intra-op threads for the duration of the call.
    """
    check_target(target, precision)
    opts = ExportOptions(**options)
    if opts.static_batches and not TARGET_STEPS[target].ships_onnx:
        raise ValueError(f"static shapes are written for the onnx and onnxruntime targets (ONNX graphs); for {target} "
                         f"{'pass -shape to benchmark_app (see the bundle README)' if target == 'openvino' else 'set the batch profile'}")
    with torch_threads(opts.threads):
        return _export_run(Path(run_dir), Path(out_dir), target, precision, opts, progress)


def _export_run(run_dir: Path, out_dir: Path, target: str, precision: str | None, opts: ExportOptions,
                progress: Progress | None) -> dict[str, Any]:
    from hybridssl.runs import load_run

    t_start = time.perf_counter()
    loaded = load_run(run_dir, opts.checkpoint, device="cpu")
    check_finite_weights(loaded.model, run_dir)
    towers = select_modalities(loaded.model.modalities, opts.modalities, run_dir)
    if "text" in towers and loaded.tokenizer is None:
        raise ValueError(f"{run_dir}: the run has a text tower but its checkpoint holds no tokenizer")
    if target == "openvino":
        require("openvino"), require("nncf")
    try:
        with BundleWriter(out_dir, overwrite=opts.overwrite) as writer, tempfile.TemporaryDirectory() as scratch:
            held = HeldOut.build(run_splits(loaded.cfg)[1], loaded.spec, loaded.tokenizer, towers, opts.eval_size)
            ex = ExportSession(loaded, towers, held, writer, Path(scratch), opts, progress,
                               TARGET_STEPS[target].steps(precision))
            shipped = _run_steps(ex, target, precision)
            default = precision or next(p for p in SMALLEST_FIRST if p in shipped)
            _remove_unshipped(writer.folder, shipped)
            static, static_records = write_static_variants(
                shipped, opts.static_batches, lambda m, b: example_feeds(m, loaded.spec, loaded.tokenizer, batch=b, seed=0),
                opts.threads) if opts.static_batches else ({}, [])
            if "text" in towers:
                assert loaded.tokenizer is not None  # checked above
                loaded.tokenizer.save(writer.path(TOKENIZER_FILE))
            report = _report(ex, loaded, run_dir, target, default, shipped, t_start)
            if static_records:
                report["static_shapes"] = static_records
            manifest = build_manifest(ex, run_dir, target, default, shipped, static)
            writer.path(README_FILE).write_text(bundle_readme(manifest.to_dict()))
            writer.commit(manifest, report)
    except (AccuracyGuardError, ParityError) as e:
        raise type(e)(f"{e}; nothing was written to {out_dir}") from None
    report["bundle"] = str(out_dir.absolute())
    return report


def _run_steps(ex: ExportSession, target: str, precision: str | None) -> dict[str, dict[str, dict[str, Path]]]:
    """The PyTorch reference, the fp32 ONNX graphs, then the target's own steps; returns the shipped
    files {precision: {modality: {role: path}}}."""
    spec = TARGET_STEPS[target]
    ex.torch_reference()
    fp32 = ex.onnx_fp32(ex.writer.folder if spec.ships_onnx else ex.scratch)
    shipped = spec.build(ex, fp32, precision)
    if not shipped:
        raise AccuracyGuardError("no variant passed the accuracy guard")
    return shipped


def _remove_unshipped(folder: Path, shipped: dict[str, dict[str, dict[str, Path]]]) -> None:
    """Delete files of rejected variants from the temporary bundle folder."""
    keep = {p.name for per in shipped.values() for files in per.values() for p in files.values()}
    for f in folder.iterdir():
        if f.is_file() and f.name not in keep:
            f.unlink()


def _report(ex: ExportSession, loaded, run_dir: Path, target: str, default: str, shipped: dict,
            t_start: float) -> dict[str, Any]:
    rejected = {s["precision"]: s.get("error", "") for s in ex.steps if not s["passed"]}
    assert ex.reference is not None
    report: dict[str, Any] = {
        "source": source_entry(loaded, run_dir), "target": target, "precision": default,
        "modalities": list(ex.modalities), "embed_dim": ex.embed_dim, "shipped": sorted(shipped, key=PRECISIONS.index),
        "rejected": rejected, "settings": ex.opts.to_dict(),
        "reference": {"backend": "pytorch", "metrics": ex.reference.metrics, "held_out_items": ex.held.size},
        "steps": ex.steps, "seconds": round(time.perf_counter() - t_start, 2),
        "versions": _versions(),
    }
    if target == "tensorrt":
        report["tensorrt_check"] = ex.trt_checks
    return report


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "onnx", "onnxruntime", "onnxscript", "openvino", "nncf", "tensorrt"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


@dataclass(frozen=True)
class ExportResult:
    """A written bundle: its folder and the export report (parity per step, accuracy drop, sizes)."""

    bundle_dir: Path
    report: dict[str, Any] = field(repr=False)


def export(run_dir: str | Path, out: str | Path, *, target: str = "onnx", precision: str | None = None,
           **options: Any) -> ExportResult:
    """The Python API's ``export.export``: :func:`export_run` (``options``: the fields of
    :class:`~export.options.ExportOptions`) returning an :class:`ExportResult`."""
    return ExportResult(Path(out), export_run(run_dir, out, target, precision, **options))
