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

import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.backends import OpenVinoRunner, OrtRunner, Runner, RunnerModel, require
from edge_runtime.openvino_core import DEFAULT_INFERENCE_PRECISION
from export.bundle import BUNDLE_README, BundleWriter, bundle_readme, labels_entry, model_file_name
from export.data import batch_feeds, calibration_feeds, run_splits
from export.onnx_graph import DEFAULT_OPSET, EXPORTERS, check_onnx, export_onnx, optimize_onnx
from export.parity import (FP32_MIN_COSINE, AccuracyGuardError, Evaluation, HeldOut, ParityError, check_drop,
                           check_parity, compare, evaluate)
from export.quantize_ort import (CALIBRATION_METHODS, DEFAULT_KEEP_FLOAT, QUANT_OP_TYPES, QuantSettings, convert_fp16,
                                 quantize_dynamic_int8, quantize_static_qdq)
from export.static_shapes import check_batches, write_static_variants
from export.tensorrt_backend import BatchProfile, TensorRTUnavailable, check_graph, summarize_problems
from export.towers import MODALITY_ORDER, TowerIO, embed_dim_of, example_feeds, torch_embed, tower_io, tower_module

Progress = Callable[[str, int, int], None]            # (what is running, steps done, steps total)

TARGETS = ("onnx", "onnxruntime", "openvino", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
SMALLEST_FIRST = ("int8", "fp16", "fp32")
TARGET_PRECISIONS = {"onnx": ("fp32",), "onnxruntime": PRECISIONS, "openvino": PRECISIONS, "tensorrt": ("fp16", "int8")}
BACKEND = {"onnx": "onnxruntime", "onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt"}


@dataclass
class ExportOptions:
    """Everything an export can be told besides run, output, target and precision (recorded in the report)."""

    checkpoint: str | None = None
    modalities: tuple[str, ...] | None = None
    calibration: str = "minmax"
    per_channel: bool = True
    reduce_range: bool = True
    keep_float: tuple[str, ...] = DEFAULT_KEEP_FLOAT
    int8_op_types: tuple[str, ...] | None = QUANT_OP_TYPES   # static int8: ops to quantize; None = all ORT can
    calibration_size: int = 256
    calibration_data: Any = None                 # a dataset to calibrate on instead of the run's training split
    eval_size: int = 512
    max_drop: float = 1.0
    accuracy_control: bool = False
    exporter: str = "legacy"
    opset: int | None = None
    threads: int = 0
    trt_profile: BatchProfile = field(default_factory=BatchProfile)
    overwrite: bool = False
    static_batches: tuple[int, ...] = ()         # fixed-batch copies of the .onnx towers (export.static_shapes)

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATION_METHODS:
            raise ValueError(f"calibration must be one of {', '.join(CALIBRATION_METHODS)}; got {self.calibration!r}")
        if isinstance(self.max_drop, bool) or not isinstance(self.max_drop, (int, float)) \
                or not math.isfinite(self.max_drop) or self.max_drop < 0:
            raise ValueError(f"max_drop must be a finite number of points ≥ 0, got {self.max_drop!r}")
        if self.calibration_size < 1:
            raise ValueError(f"calibration_size must be positive, got {self.calibration_size}")
        if self.eval_size < 2:
            raise ValueError(f"eval_size must be at least 2, got {self.eval_size}")
        if self.exporter not in EXPORTERS:
            raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}; got {self.exporter!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be ≥ 0, got {self.threads}")
        if not isinstance(self.trt_profile, BatchProfile):
            self.trt_profile = BatchProfile(*self.trt_profile)
        self.keep_float = tuple(self.keep_float)
        self.int8_op_types = tuple(self.int8_op_types) if self.int8_op_types is not None else None
        self.modalities = tuple(self.modalities) if self.modalities else None
        self.opset = DEFAULT_OPSET[self.exporter] if self.opset is None else int(self.opset)
        self.max_drop = float(self.max_drop)
        self.static_batches = check_batches(self.static_batches) if self.static_batches else ()
        QuantSettings(self.calibration, self.per_channel, self.reduce_range, keep_float=self.keep_float)  # validates

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("calibration_data", "trt_profile")}
        out["trt_profile"] = self.trt_profile.to_dict()
        out["calibration_data"] = "the run's training split" if self.calibration_data is None else \
            getattr(self.calibration_data, "name", type(self.calibration_data).__name__)
        return out


def check_target(target: str, precision: str | None) -> None:
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}; got {target!r}")
    if precision is not None and precision not in TARGET_PRECISIONS[target]:
        raise ValueError(f"target {target} offers precision {' / '.join(TARGET_PRECISIONS[target])}; got {precision!r}"
                         + (" (use --target onnxruntime for int8/fp16 ONNX graphs)" if target == "onnx" else ""))


def select_modalities(available: Sequence[str], requested: Sequence[str] | None, run_dir: Path) -> tuple[str, ...]:
    """The towers to export, in bundle order; a requested tower the run lacks is an error."""
    if not requested:
        return tuple(m for m in MODALITY_ORDER if m in available)
    unknown = [m for m in requested if m not in MODALITY_ORDER]
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; choose from {', '.join(MODALITY_ORDER)}")
    missing = [m for m in requested if m not in available]
    if missing:
        raise ValueError(f"{run_dir} has no {', '.join(missing)} tower (its towers: {', '.join(available)})")
    return tuple(m for m in MODALITY_ORDER if m in requested)


def check_finite_weights(model: torch.nn.Module, run_dir: Path) -> None:
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise ValueError(f"{run_dir}: the checkpoint's weights hold non-finite values ({', '.join(bad[:3])}…)")


def source_entry(loaded, run_dir: Path) -> dict[str, Any]:
    """Provenance for the manifest: run, kind, model, step, held-out metrics of the run."""
    state = loaded.state
    kind = "student" if state.get("model_kind") == "student" else "teacher"
    metrics = None
    path = Path(run_dir) / "metrics.json"
    if path.is_file():
        held = json.loads(path.read_text()).get("heldout", {})
        metrics = {"retrieval_R@1": {k: v["R@1"] for k, v in held.get("retrieval", {}).items()},
                   "zero_shot_accuracy": {k: v["accuracy"] for k, v in held.get("zero_shot", {}).items()}}
    model = state.get("student") if kind == "student" else "hybrid"
    return {"run_dir": str(Path(run_dir).absolute()), "kind": kind, "model": model, "step": state.get("step"),
            "metrics": metrics}


def learned_logit_scale(run_dir: Path, checkpoint: str | None, cfg) -> float | None:
    """The contrastive logit scale 1/T of the exported checkpoint, as the run's
    :class:`hybridssl.losses.temperature.LearnableTemperature` computes it (``exp(log_scale)``
    clamped to its range); None for a checkpoint without one (a student run). Only that one tensor is
    read from the file."""
    from safetensors import safe_open

    from hybridssl.checkpoint import latest_checkpoint
    from hybridssl.losses.temperature import LearnableTemperature

    folder = Path(run_dir) / "checkpoints" / checkpoint if checkpoint else latest_checkpoint(Path(run_dir))
    if folder is None or not (folder / "model.safetensors").is_file():
        return None
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        if "temperature.log_scale" not in f.keys():
            return None
        log_scale = f.get_tensor("temperature.log_scale")
    temperature = LearnableTemperature(min_temperature=cfg.loss.min_temperature, learnable=False)
    temperature.log_scale.copy_(log_scale)
    return round(float(temperature()), 4)


def file_sizes(paths: dict[str, dict[str, Path]]) -> dict[str, dict[str, Any]]:
    """{modality: {"files": {role: name}, "bytes": total}}."""
    return {m: {"files": {role: p.name for role, p in files.items()}, "bytes": sum(p.stat().st_size for p in files.values())}
            for m, files in paths.items()}


class _Export:
    """One export in progress: the loaded run, held-out evaluation, the bundle being written, the report."""

    def __init__(self, loaded, modalities: tuple[str, ...], held: HeldOut, writer: BundleWriter, scratch: Path,
                 opts: ExportOptions, progress: Progress | None, total_steps: int) -> None:
        self.loaded, self.modalities, self.held = loaded, modalities, held
        self.writer, self.scratch, self.opts = writer, scratch, opts
        self.progress, self.total, self.done = progress, total_steps, 0
        self.spec, self.tokenizer = loaded.spec, loaded.tokenizer
        self.embed_dim = embed_dim_of(loaded.model, modalities[0], self.spec, self.tokenizer)
        self.io = {m: tower_io(m, self.spec, self.embed_dim) for m in modalities}
        self.steps: list[dict[str, Any]] = []
        self.reference: Evaluation | None = None
        self._calibration: dict[str, list[dict[str, np.ndarray]]] = {}

    # ---------------------------------------------------------------- bookkeeping
    def tick(self, what: str) -> None:
        if self.progress:
            self.progress(what, self.done, self.total)

    def advance(self) -> None:
        self.done += 1
        if self.progress:
            self.progress("", self.done, self.total)

    def torch_reference(self) -> Evaluation:
        self.tick("PyTorch reference")
        model = self.loaded.model
        runners: dict[str, Runner] = {m: (lambda feeds, m=m: torch_embed(model, m, feeds)) for m in self.modalities}
        ref = evaluate(RunnerModel(runners), self.held)
        for m, e in ref.embeddings.by_modality.items():
            if not np.isfinite(e).all():
                raise ValueError(f"{self.loaded.run_dir}: the PyTorch {m} tower produces non-finite embeddings "
                                 "(corrupt or diverged weights)")
        self.reference = ref
        self.advance()
        return ref

    def calibration(self, modality: str) -> list[dict[str, np.ndarray]]:
        if modality not in self._calibration:
            data = self.opts.calibration_data
            if data is None:
                data = run_splits(self.loaded.cfg)[0]
            self._calibration[modality] = calibration_feeds(data, modality, self.spec, self.tokenizer,
                                                            self.opts.calibration_size, batch_size=16)
        return self._calibration[modality]

    def evaluate_step(self, step: str, backend: str, precision: str, runners: dict[str, Runner],
                      files: dict[str, dict[str, Path]], t0: float, extra: dict[str, Any] | None = None,
                      strict: bool = True) -> dict[str, Any]:
        """Run the parity gate of one step and record it: fp32 steps must reach the cosine gate (their
        metric changes are recorded, not gated: they are the baseline), other precisions the accuracy
        guard (raised only when ``strict``; else the record says ``passed: False``)."""
        self.tick(f"{step}: parity")
        assert self.reference is not None
        result = compare(self.reference, evaluate(RunnerModel(runners), self.held))
        record = {"step": step, "backend": backend, "precision": precision, "files": file_sizes(files), **result,
                  "seconds": round(time.perf_counter() - t0, 2), **(extra or {})}
        record["gate"] = f"min cosine ≥ {FP32_MIN_COSINE}" if precision == "fp32" else \
            f"drop ≤ {self.opts.max_drop:g} points"
        try:
            if precision == "fp32":
                check_parity(step, result)
            else:
                check_drop(step, result, self.opts.max_drop)
            record["passed"] = True
        except ValueError as e:
            record["passed"], record["error"] = False, str(e)
            self.steps.append(record)
            if strict or precision == "fp32":
                raise
        else:
            self.steps.append(record)
        self.advance()
        return record

    # ---------------------------------------------------------------- ONNX
    def onnx_fp32(self, final_dir: Path) -> dict[str, Path]:
        """Steps 1–2: export and optimise every tower; the optimised graphs land in ``final_dir``."""
        t0 = time.perf_counter()
        raw: dict[str, Path] = {}
        for m in self.modalities:
            self.tick(f"export {m} tower")
            feeds = example_feeds(m, self.spec, self.tokenizer)
            raw[m] = export_onnx(tower_module(self.loaded.model, m), self.io[m], feeds, self.scratch / f"{m}.raw.onnx",
                                 exporter=self.opts.exporter, opset=self.opts.opset)
            check_onnx(raw[m], self.io[m])
        threads = self.opts.threads
        self.evaluate_step("export", "onnxruntime", "fp32", {m: OrtRunner(p, threads) for m, p in raw.items()},
                           {m: {"model": p} for m, p in raw.items()}, t0,
                           {"exporter": self.opts.exporter, "opset": self.opts.opset})
        t0 = time.perf_counter()
        final: dict[str, Path] = {}
        for m in self.modalities:
            self.tick(f"optimise {m} graph")
            final[m] = optimize_onnx(raw[m], final_dir / model_file_name(m, "onnx", "fp32")["model"])
            check_onnx(final[m], self.io[m])
        self.evaluate_step("optimize", "onnxruntime", "fp32", {m: OrtRunner(p, threads) for m, p in final.items()},
                           {m: {"model": p} for m, p in final.items()}, t0, {"optimizer": "onnxscript"})
        return final

    def ort_int8(self, fp32: dict[str, Path], strict: bool) -> dict[str, Path]:
        t0 = time.perf_counter()
        o = self.opts
        settings = QuantSettings(o.calibration, o.per_channel, o.reduce_range, keep_float=o.keep_float,
                                 op_types=o.int8_op_types)
        out: dict[str, Path] = {}
        quant: dict[str, Any] = {}
        for m in self.modalities:
            self.tick(f"int8 {m} tower")
            dst = self.writer.path(model_file_name(m, "onnxruntime", "int8")["model"])
            if m == "text":
                r = quantize_dynamic_int8(fp32[m], dst, o.per_channel, o.reduce_range)
            else:
                r = quantize_static_qdq(fp32[m], dst, self.calibration(m), settings, self.scratch)
            check_onnx(r.path, self.io[m])
            out[m], quant[m] = r.path, r.to_dict()
        self.evaluate_step("ort-int8", "onnxruntime", "int8", {m: OrtRunner(p, o.threads) for m, p in out.items()},
                           {m: {"model": p} for m, p in out.items()}, t0, {"quantization": quant}, strict)
        return out

    def ort_fp16(self, fp32: dict[str, Path], strict: bool) -> dict[str, Path]:
        t0 = time.perf_counter()
        out = {}
        for m in self.modalities:
            self.tick(f"fp16 {m} tower")
            out[m] = convert_fp16(fp32[m], self.writer.path(model_file_name(m, "onnxruntime", "fp16")["model"])).path
            check_onnx(out[m], self.io[m])
        self.evaluate_step("ort-fp16", "onnxruntime", "fp16", {m: OrtRunner(p, self.opts.threads) for m, p in out.items()},
                           {m: {"model": p} for m, p in out.items()}, t0, {"conversion": "float16, fp32 I/O"}, strict)
        return out

    # ---------------------------------------------------------------- OpenVINO
    def openvino(self, fp32: dict[str, Path], precision: str, strict: bool) -> dict[str, dict[str, Path]]:
        from export.openvino_backend import convert_ir, quantize_ir, retrieval_metric

        t0 = time.perf_counter()
        files: dict[str, dict[str, Path]] = {}
        extra: dict[str, Any] = {}
        for m in self.modalities:
            self.tick(f"OpenVINO {precision} {m} tower")
            names = model_file_name(m, "openvino", precision)
            xml = self.writer.path(names["model"])
            if precision == "int8":
                base = self.scratch / f"{m}.ir.xml"
                convert_ir(fp32[m], base, fp16=False)
                validation = None
                if self.opts.accuracy_control:
                    validation = self._ov_validation(m, retrieval_metric)
                extra.setdefault("quantization", {})[m] = quantize_ir(base, xml, self.calibration(m), validation,
                                                                      self.opts.max_drop)
            else:
                convert_ir(fp32[m], xml, fp16=precision == "fp16")
            files[m] = {"model": xml, "weights": xml.with_suffix(".bin")}
        runners = {m: OpenVinoRunner(f["model"], self.opts.threads) for m, f in files.items()}
        self.evaluate_step(f"openvino-{precision}", "openvino", precision, runners, files, t0, extra,
                           strict or precision == "fp32")
        return files

    def _ov_validation(self, m: str, metric_fn):
        """Single-item held-out feeds of tower m + the R@1 metric against PyTorch partner embeddings."""
        assert self.reference is not None
        emb = self.reference.embeddings
        partner = next((p for p in (("text", "image", "audio") if m != "text" else ("image", "audio"))
                        if p != m and p in emb.by_modality), None)
        if partner is None:
            raise ValueError(f"accuracy control for the {m} tower needs a second tower to retrieve against")
        partner_row = {int(pos): j for j, pos in enumerate(emb.index[partner])}
        items, rows, keys, offset = [], [], [], 0
        for batch in self.held.batches:
            feeds = batch_feeds(batch, m)
            if feeds is not None:
                for r, pos in enumerate(batch[f"{m}_idx"].numpy() + offset):
                    if int(pos) in partner_row:
                        items.append({k: v[r : r + 1] for k, v in feeds.items()})
                        rows.append(partner_row[int(pos)])
                        keys.append(emb.keys[int(pos)])
            offset += batch["n"]
        if len(items) < 2:
            raise ValueError(f"accuracy control for the {m} tower needs held-out items that also carry {partner}")
        return items, metric_fn(emb.by_modality[partner][rows], keys)

    # ---------------------------------------------------------------- TensorRT
    def tensorrt(self, fp32: dict[str, Path], precisions: Sequence[str], strict: bool) -> dict[str, dict[str, Path]]:
        from export.tensorrt_backend import TensorRTRunner, build_engine, require_tensorrt_gpu

        profile = self.opts.trt_profile
        graphs = {"fp16": fp32}
        if "int8" in precisions:
            graphs["int8"] = self._symmetric_qdq(fp32)
        checks = {f"{m}.{p}": check_graph(g[m], self.io[m], profile) for p, g in graphs.items() for m in self.modalities}
        self.trt_checks = checks
        problems = summarize_problems(checks)
        if problems:
            raise ValueError(f"the graphs are not TensorRT-compatible: {problems}")
        try:
            require_tensorrt_gpu()
        except TensorRTUnavailable as e:
            batch = profile.to_dict()
            raise TensorRTUnavailable(f"{e} (the ONNX graphs passed the TensorRT check: {len(checks)} graph(s), "
                                      f"batch profile min/opt/max {batch['min']}/{batch['opt']}/{batch['max']})") from None
        out: dict[str, dict[str, Path]] = {}
        for p in precisions:
            t0 = time.perf_counter()
            files, info = {}, {}
            for m in self.modalities:
                self.tick(f"TensorRT {p} {m} engine")
                plan = self.writer.path(model_file_name(m, "tensorrt", p)["model"])
                info[m] = build_engine(graphs[p][m], plan, self.io[m], p, profile)
                files[m] = {"model": plan}
            runners = {m: TensorRTRunner(f["model"], profile.max) for m, f in files.items()}
            rec = self.evaluate_step(f"tensorrt-{p}", "tensorrt", p, runners, files, t0, {"engines": info}, strict)
            if rec["passed"]:
                out[p] = files
        return out

    def _symmetric_qdq(self, fp32: dict[str, Path]) -> dict[str, Path]:
        """Static symmetric int8 QDQ graphs of every tower (TensorRT's explicit quantization)."""
        o = self.opts
        settings = QuantSettings(o.calibration, per_channel=True, reduce_range=False, symmetric=True,
                                 keep_float=o.keep_float, op_types=o.int8_op_types)
        out = {}
        for m in self.modalities:
            self.tick(f"symmetric QDQ {m} tower")
            out[m] = quantize_static_qdq(fp32[m], self.scratch / f"{m}.qdq.onnx", self.calibration(m), settings,
                                         self.scratch).path
        return out


def _total_steps(target: str, precisions: Sequence[str]) -> int:
    return 3 + (len(precisions) - (1 if target in ("onnx", "onnxruntime") else 0))


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
    if opts.static_batches and target not in ("onnx", "onnxruntime"):
        raise ValueError(f"static shapes are written for the onnx and onnxruntime targets (ONNX graphs); for {target} "
                         f"{'pass -shape to benchmark_app (see the bundle README)' if target == 'openvino' else 'set the batch profile'}")
    previous = torch.get_num_threads()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    try:
        return _export_run(Path(run_dir), Path(out_dir), target, precision, opts, progress)
    finally:
        torch.set_num_threads(previous)


def _export_run(run_dir: Path, out_dir: Path, target: str, precision: str | None, opts: ExportOptions,
                progress: Progress | None) -> dict[str, Any]:
    from distill.runs import load_any_run

    t_start = time.perf_counter()
    loaded = load_any_run(run_dir, opts.checkpoint, device="cpu")
    check_finite_weights(loaded.model, run_dir)
    towers = select_modalities(loaded.model.modalities, opts.modalities, run_dir)
    if "text" in towers and loaded.tokenizer is None:
        raise ValueError(f"{run_dir}: the run has a text tower but its checkpoint holds no tokenizer")
    precisions = TARGET_PRECISIONS[target] if precision is None or target != "tensorrt" else (precision,)
    if target == "openvino":
        require("openvino"), require("nncf")
    try:
        with BundleWriter(out_dir, overwrite=opts.overwrite) as writer, tempfile.TemporaryDirectory() as scratch:
            held = HeldOut.build(run_splits(loaded.cfg)[1], loaded.spec, loaded.tokenizer, towers, opts.eval_size)
            ex = _Export(loaded, towers, held, writer, Path(scratch), opts, progress, _total_steps(target, precisions))
            shipped = _run_steps(ex, target, precision, precisions)
            default = precision or next(p for p in SMALLEST_FIRST if p in shipped)
            _remove_unshipped(writer.folder, shipped)
            static, static_records = write_static_variants(
                shipped, opts.static_batches, lambda m, b: example_feeds(m, loaded.spec, loaded.tokenizer, batch=b, seed=0),
                opts.threads) if opts.static_batches else ({}, [])
            if "text" in towers:
                loaded.tokenizer.save(writer.path("tokenizer.json"))
            report = _report(ex, loaded, run_dir, target, default, shipped, t_start)
            if static_records:
                report["static_shapes"] = static_records
            manifest = _manifest(ex, loaded, run_dir, target, default, shipped, static)
            writer.path(BUNDLE_README).write_text(bundle_readme(manifest))
            writer.commit(manifest, report)
    except (AccuracyGuardError, ParityError) as e:
        raise type(e)(f"{e}; nothing was written to {out_dir}") from None
    report["bundle"] = str(out_dir.absolute())
    return report


def _run_steps(ex: _Export, target: str, precision: str | None,
               precisions: Sequence[str]) -> dict[str, dict[str, dict[str, Path]]]:
    """Every step of the target; returns the shipped files {precision: {modality: {role: path}}}."""
    ex.torch_reference()
    in_bundle = target in ("onnx", "onnxruntime")
    fp32 = ex.onnx_fp32(ex.writer.folder if in_bundle else ex.scratch)
    shipped: dict[str, dict[str, dict[str, Path]]] = {}
    strict = precision is not None
    if in_bundle:
        shipped["fp32"] = {m: {"model": p} for m, p in fp32.items()}
    if target == "onnxruntime":
        for p, fn in (("int8", ex.ort_int8), ("fp16", ex.ort_fp16)):
            out = fn(fp32, strict and p == precision)
            if ex.steps[-1]["passed"]:
                shipped[p] = {m: {"model": path} for m, path in out.items()}
    elif target == "openvino":
        for p in ("fp32", "fp16", "int8"):
            files = ex.openvino(fp32, p, strict and p == precision)
            if ex.steps[-1]["passed"]:
                shipped[p] = files
    elif target == "tensorrt":
        shipped.update(ex.tensorrt(fp32, precisions, strict))
    if not shipped:
        raise AccuracyGuardError("no variant passed the accuracy guard")
    return shipped


def _remove_unshipped(folder: Path, shipped: dict[str, dict[str, dict[str, Path]]]) -> None:
    """Delete files of rejected variants from the temporary bundle folder."""
    keep = {p.name for per in shipped.values() for files in per.values() for p in files.values()}
    for f in folder.iterdir():
        if f.is_file() and f.name not in keep:
            f.unlink()


def _report(ex: _Export, loaded, run_dir: Path, target: str, default: str, shipped: dict,
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
        report["tensorrt_check"] = getattr(ex, "trt_checks", {})
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


def _static_entry(static: dict, precision: str, m: str) -> dict[str, Any]:
    per = static.get(precision, {}).get(m)
    return {"static": {str(b): {"model": p.name} for b, p in sorted(per.items())}} if per else {}


def _manifest(ex: _Export, loaded, run_dir: Path, target: str, default: str, shipped: dict,
              static: dict | None = None) -> dict[str, Any]:
    import importlib.metadata as md

    backend = BACKEND[target]
    # OpenVINO: the inference precision the parity gate measured, so no CPU picks another (bf16 on AMX)
    hint = {"inference_precision": DEFAULT_INFERENCE_PRECISION} if backend == "openvino" else {}
    modalities = {}
    for m in ex.modalities:
        io: TowerIO = ex.io[m]
        modalities[m] = {"precision": default, "files": {r: p.name for r, p in shipped[default][m].items()},
                         "backend": backend, **hint, **_static_entry(static or {}, default, m),
                         "inputs": [t.to_dict() for t in io.inputs], "outputs": [t.to_dict() for t in io.outputs]}
    variants = {m: {p: {"files": {r: path.name for r, path in shipped[p][m].items()}, "backend": backend, **hint,
                        **_static_entry(static or {}, p, m)}
                    for p in PRECISIONS if p in shipped and p != default} for m in ex.modalities}
    variants = {m: v for m, v in variants.items() if v}
    try:
        version = md.version("hssl")
    except md.PackageNotFoundError:
        version = "0.1.0"
    return {
        "format": "hssl-bundle", "format_version": 1, "target": target, "precision": default,
        "embed_dim": ex.embed_dim, "modalities": modalities, "variants": variants or None,
        "preprocessing": loaded.spec.to_dict(),
        "tokenizer": {"file": "tokenizer.json", "max_length": loaded.spec.text.max_length} if "text" in ex.modalities else None,
        "labels": labels_entry(ex.held.prompts), "head": None,
        **({"logit_scale": scale} if (scale := learned_logit_scale(run_dir, ex.opts.checkpoint, loaded.cfg)) else {}),
        "source": source_entry(loaded, run_dir),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "hssl_version": version,
    }
