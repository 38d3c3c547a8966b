"""Fixed-batch copies of the shipped ONNX graphs, for execution providers that need static shapes.

A bundle's graphs have one dynamic axis (``"batch"``). ONNX Runtime's mobile execution providers
(NNAPI, CoreML, XNNPACK partitions) and OpenVINO's ``benchmark_app`` take only fully static shapes:
ORT's mobile checker places 12–47 of 91–168 nodes of a dynamic tower on NNAPI/CoreML, and a
fixed-shape copy far more. For every requested batch size B and every shipped ``.onnx`` tower this
module writes ``<modality>[.<precision>].b<B>.onnx``:

1. ``onnxruntime.tools.onnx_model_utils.make_dim_param_fixed(graph, "batch", B)`` and
   ``fix_output_shapes`` (ONNX Runtime's own tool for exactly this);
2. ``onnx.shape_inference.infer_shapes`` then ``onnx.checker.check_model``;
3. parity: ONNX Runtime runs the fixed graph and the dynamic one on the same batch of B example
   feeds; the largest absolute difference of the embeddings must be ≤ :data:`MAX_ABS_DIFF` (the same
   kernels run, so only a changed graph differs), else :class:`export.parity.ParityError`.

The manifest lists them per tower as ``"static": {"B": {"model": name}}`` (docs/bundle.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from export.backends import OrtRunner, require
from export.parity import ParityError

MAX_ABS_DIFF = 1e-5
MAX_STATIC_BATCH = 1024


def check_batches(batches: Sequence[int]) -> tuple[int, ...]:
    out = tuple(sorted({int(b) for b in batches}))
    if any(b < 1 or b > MAX_STATIC_BATCH for b in out):
        raise ValueError(f"static batch sizes must lie in [1, {MAX_STATIC_BATCH}], got {list(batches)}")
    return out


def static_name(dynamic_name: str, batch: int) -> str:
    """``image.int8.onnx`` → ``image.int8.b8.onnx``."""
    stem = dynamic_name[: -len(".onnx")]
    return f"{stem}.b{batch}.onnx"


def fix_batch(src: Path, dst: Path, batch: int) -> Path:
    """Write ``src`` with its ``"batch"`` axis fixed to ``batch`` to ``dst`` (module docstring, 1–2)."""
    onnx = require("onnx")
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_dim_param_fixed

    model = onnx.load(str(src))
    make_dim_param_fixed(model.graph, "batch", batch)
    fix_output_shapes(model)
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if not all(d.HasField("dim_value") for d in dims):
            raise ParityError(f"{dst.name}: {value.name} still has a symbolic dimension after fixing the batch")
    onnx.save_model(model, str(dst))
    return dst


def write_static_variants(shipped: dict[str, dict[str, dict[str, Path]]], batches: Sequence[int],
                          feeds_of: Any, threads: int = 0) -> tuple[dict[str, dict[str, dict[int, Path]]], list[dict]]:
    """Fixed-batch copies of every shipped ``.onnx`` tower, next to it (module docstring).

    ``feeds_of(modality, batch)`` gives example feeds. Returns ``({precision: {modality: {B: path}}},
    parity records for the report)``."""
    out: dict[str, dict[str, dict[int, Path]]] = {}
    records: list[dict] = []
    for precision, per in shipped.items():
        for modality, files in per.items():
            model = files["model"]
            if model.suffix != ".onnx":
                continue
            dynamic = OrtRunner(model, threads)
            for b in check_batches(batches):
                path = fix_batch(model, model.with_name(static_name(model.name, b)), b)
                feeds = feeds_of(modality, b)
                diff = float(np.abs(OrtRunner(path, threads)(feeds) - dynamic(feeds)).max())
                records.append({"precision": precision, "modality": modality, "batch": b, "file": path.name,
                                "max_abs_diff": diff, "bytes": path.stat().st_size})
                if not diff <= MAX_ABS_DIFF:
                    raise ParityError(f"{path.name}: the fixed-batch graph differs from {model.name} by {diff:.2e} "
                                      f"(> {MAX_ABS_DIFF})")
                out.setdefault(precision, {}).setdefault(modality, {})[b] = path
    return out, records
