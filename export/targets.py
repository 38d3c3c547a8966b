"""The export targets, registered by name (as students are): what each builds after the fp32 ONNX
graphs, the precisions it offers and the back end its bundle runs on.

======================  ===========================================================================
``onnx``                the fp32 graphs (ONNX Runtime runs the parity check)
``onnxruntime``         ``ort-int8`` (static QDQ for image/audio calibrated on real training items,
                        dynamic int8 for text) and ``ort-fp16`` beside fp32 (:mod:`export.quantize_ort`)
``openvino``            IR ``openvino-fp32``, ``openvino-fp16`` and NNCF ``openvino-int8``
                        (:mod:`export.openvino_backend`)
``tensorrt``            the graphs checked for TensorRT (ops, resize scales, shapes, profile) with int32 token inputs; with
                        TensorRT and an NVIDIA GPU, ``tensorrt-fp16`` and ``tensorrt-int8`` engines
======================  ===========================================================================

A target's ``build(ex, fp32, precision)`` returns the files it ships per precision
``{precision: {modality: {role: path}}}``; variants that fail the accuracy guard are not shipped
(an explicit ``precision`` makes its own variant strict).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.schema import PRECISIONS, model_file_name
from export.backends import OpenVinoRunner, OrtRunner, Runner
from export.data import batch_feeds
from export.onnx_graph import check_onnx
from export.quantize_ort import QuantSettings, convert_fp16, quantize_dynamic_int8, quantize_static_qdq
from export.session import ExportSession
from export.tensorrt_backend import TensorRTUnavailable
from export.tensorrt_graph import axis_ranges, check_graph, int32_inputs, summarize_problems

Shipped = dict[str, dict[str, dict[str, Path]]]   # {precision: {modality: {role: path}}}


@dataclass(frozen=True)
class Target:
    name: str
    precisions: tuple[str, ...]
    backend: str
    ships_onnx: bool      # the fp32 ONNX graphs are part of the bundle (else scratch for conversion)
    build: Callable[[ExportSession, dict[str, Path], str | None], Shipped]

    def steps(self, precision: str | None) -> int:
        """Progress units: the reference, export, optimise, then one per built variant."""
        built = self.precisions if precision is None or self.name != "tensorrt" else (precision,)
        return 3 + len(built) - (1 if self.ships_onnx else 0)


TARGET_STEPS: dict[str, Target] = {}


def register_target(name: str, precisions: tuple[str, ...], backend: str, ships_onnx: bool):
    def add(build: Callable[[ExportSession, dict[str, Path], str | None], Shipped]):
        TARGET_STEPS[name] = Target(name, precisions, backend, ships_onnx, build)
        return build
    return add


def _as_files(paths: dict[str, Path]) -> dict[str, dict[str, Path]]:
    return {m: {"model": p} for m, p in paths.items()}


@register_target("onnx", ("fp32",), "onnxruntime", ships_onnx=True)
def build_onnx(ex: ExportSession, fp32: dict[str, Path], precision: str | None) -> Shipped:
    return {"fp32": _as_files(fp32)}


@register_target("onnxruntime", PRECISIONS, "onnxruntime", ships_onnx=True)
def build_onnxruntime(ex: ExportSession, fp32: dict[str, Path], precision: str | None) -> Shipped:
    shipped: Shipped = {"fp32": _as_files(fp32)}
    for p, fn in (("int8", ort_int8), ("fp16", ort_fp16)):
        out = fn(ex, fp32, precision == p)
        if ex.steps[-1]["passed"]:
            shipped[p] = _as_files(out)
    return shipped


@register_target("openvino", PRECISIONS, "openvino", ships_onnx=False)
def build_openvino(ex: ExportSession, fp32: dict[str, Path], precision: str | None) -> Shipped:
    shipped: Shipped = {}
    for p in ("fp32", "fp16", "int8"):
        files = openvino(ex, fp32, p, precision == p)
        if ex.steps[-1]["passed"]:
            shipped[p] = files
    return shipped


@register_target("tensorrt", ("fp16", "int8"), "tensorrt", ships_onnx=False)
def build_tensorrt(ex: ExportSession, fp32: dict[str, Path], precision: str | None) -> Shipped:
    return dict(tensorrt(ex, fp32, (precision,) if precision else ("fp16", "int8"), precision is not None))


def ort_int8(ex: ExportSession, fp32: dict[str, Path], strict: bool) -> dict[str, Path]:
    t0 = time.perf_counter()
    o = ex.opts
    settings = QuantSettings(o.calibration, o.per_channel, o.reduce_range, keep_float=o.keep_float,
                             op_types=o.int8_op_types)
    out: dict[str, Path] = {}
    quant: dict[str, Any] = {}
    for m in ex.modalities:
        ex.tick(f"int8 {m} tower")
        dst = ex.writer.path(model_file_name(m, "onnxruntime", "int8")["model"])
        if m == "text":
            r = quantize_dynamic_int8(fp32[m], dst, o.per_channel, o.reduce_range)
        else:
            r = quantize_static_qdq(fp32[m], dst, ex.calibration(m), settings, ex.scratch)
        check_onnx(r.path, ex.io[m])
        out[m], quant[m] = r.path, r.to_dict()
    ex.evaluate_step("ort-int8", "onnxruntime", "int8", {m: OrtRunner(p, o.threads) for m, p in out.items()},
                       {m: {"model": p} for m, p in out.items()}, t0, {"quantization": quant}, strict)
    return out


def ort_fp16(ex: ExportSession, fp32: dict[str, Path], strict: bool) -> dict[str, Path]:
    t0 = time.perf_counter()
    out = {}
    for m in ex.modalities:
        ex.tick(f"fp16 {m} tower")
        out[m] = convert_fp16(fp32[m], ex.writer.path(model_file_name(m, "onnxruntime", "fp16")["model"])).path
        check_onnx(out[m], ex.io[m])
    ex.evaluate_step("ort-fp16", "onnxruntime", "fp16", {m: OrtRunner(p, ex.opts.threads) for m, p in out.items()},
                       {m: {"model": p} for m, p in out.items()}, t0, {"conversion": "float16, fp32 I/O"}, strict)
    return out

def openvino(ex: ExportSession, fp32: dict[str, Path], precision: str, strict: bool) -> dict[str, dict[str, Path]]:
    from export.openvino_backend import convert_ir, quantize_ir, retrieval_metric

    t0 = time.perf_counter()
    files: dict[str, dict[str, Path]] = {}
    extra: dict[str, Any] = {}
    for m in ex.modalities:
        ex.tick(f"OpenVINO {precision} {m} tower")
        names = model_file_name(m, "openvino", precision)
        xml = ex.writer.path(names["model"])
        if precision == "int8":
            base = ex.scratch / f"{m}.ir.xml"
            convert_ir(fp32[m], base, fp16=False)
            validation = None
            if ex.opts.accuracy_control:
                validation = ov_validation(ex, m, retrieval_metric)
            extra.setdefault("quantization", {})[m] = quantize_ir(base, xml, ex.calibration(m), validation,
                                                                  ex.opts.max_drop)
        else:
            convert_ir(fp32[m], xml, fp16=precision == "fp16")
        files[m] = {"model": xml, "weights": xml.with_suffix(".bin")}
    runners: dict[str, Runner] = {m: OpenVinoRunner(f["model"], ex.opts.threads) for m, f in files.items()}
    ex.evaluate_step(f"openvino-{precision}", "openvino", precision, runners, files, t0, extra,
                       strict or precision == "fp32")
    return files


def ov_validation(ex: ExportSession, m: str, metric_fn):
    """Single-item held-out feeds of tower m + the R@1 metric against PyTorch partner embeddings."""
    assert ex.reference is not None
    emb = ex.reference.embeddings
    partner = next((p for p in (("text", "image", "audio") if m != "text" else ("image", "audio"))
                    if p != m and p in emb.by_modality), None)
    if partner is None:
        raise ValueError(f"accuracy control for the {m} tower needs a second tower to retrieve against")
    partner_row = {int(pos): j for j, pos in enumerate(emb.index[partner])}
    items, rows, keys, offset = [], [], [], 0
    for batch in ex.held.batches:
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

def tensorrt(ex: ExportSession, fp32: dict[str, Path], precisions: Sequence[str], strict: bool) -> Shipped:
    from export.tensorrt_backend import TensorRTRunner, build_engine, require_tensorrt_gpu

    profile = ex.opts.trt_profile
    axes = {m: axis_ranges(m, ex.spec) for m in ex.modalities}
    sources = {"fp16": fp32, **({"int8": symmetric_qdq(ex, fp32)} if "int8" in precisions else {})}
    graphs = {p: {m: int32_inputs(g[m], ex.scratch / f"{m}.{p}.trt.onnx") for m in ex.modalities}
              for p, g in sources.items()}
    checks = {f"{m}.{p}": check_graph(g[m], ex.io[m], profile, axes[m]) for p, g in graphs.items() for m in ex.modalities}
    ex.trt_checks = checks                                   # the report lists them
    problems = summarize_problems(checks)
    if problems:
        raise ValueError(f"the graphs are not TensorRT-compatible: {problems}")
    try:
        require_tensorrt_gpu()
    except TensorRTUnavailable as e:
        batch = profile.to_dict()
        raise TensorRTUnavailable(f"{e} (the ONNX graphs passed the TensorRT check: {len(checks)} graph(s), "
                                  f"batch profile min/opt/max {batch['min']}/{batch['opt']}/{batch['max']})") from None
    out: Shipped = {}
    for p in precisions:
        t0 = time.perf_counter()
        files: dict[str, dict[str, Path]] = {}
        info: dict[str, Any] = {}
        for m in ex.modalities:
            ex.tick(f"TensorRT {p} {m} engine")
            plan = ex.writer.path(model_file_name(m, "tensorrt", p)["model"])
            info[m] = build_engine(graphs[p][m], plan, ex.io[m], p, profile, axes[m])
            files[m] = {"model": plan}
        runners: dict[str, Runner] = {m: TensorRTRunner(f["model"], profile.max) for m, f in files.items()}
        rec = ex.evaluate_step(f"tensorrt-{p}", "tensorrt", p, runners, files, t0, {"engines": info}, strict)
        if rec["passed"]:
            out[p] = files
    return out


def symmetric_qdq(ex: ExportSession, fp32: dict[str, Path]) -> dict[str, Path]:
    """Static symmetric int8 QDQ graphs of every tower (TensorRT's explicit quantization)."""
    o = ex.opts
    settings = QuantSettings(o.calibration, per_channel=True, reduce_range=False, symmetric=True,
                             keep_float=o.keep_float, op_types=o.int8_op_types)
    out = {}
    for m in ex.modalities:
        ex.tick(f"symmetric QDQ {m} tower")
        out[m] = quantize_static_qdq(fp32[m], ex.scratch / f"{m}.qdq.onnx", ex.calibration(m), settings,
                                     ex.scratch).path
    return out
