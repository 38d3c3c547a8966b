"""PyTorch tower → one ONNX graph: export, optimise, check.

Contract of every graph written here: the inputs and output of :func:`export.towers.tower_io`
(names, dtypes, fixed non-batch dims, written onto the graph by :func:`pin_io_shapes` — the exporters
leave e.g. the embedding width symbolic), the batch axis dynamic (``"batch"``; a sequence tower's time
axis too, ``"time"``), default-domain opset
``opset`` (≥ 17: ``LayerNormalization`` is a single op), IR version ≤ :data:`MAX_IR_VERSION` = 10
(what ONNX Runtime ≥ 1.16, OpenVINO 2024+ and TensorRT 10's parser all load; onnx ≥ 1.19 stamps IR
14 on hand-built graphs, which ONNX Runtime 1.31 refuses — the PERF.md gotcha), weights embedded (one
self-contained file), ``onnx.checker.check_model(full_check=True)`` passes.

Exporter choice, measured on this machine (torch 2.14.1, ``small`` teacher, 2 threads):

==============================  =====================  ==================  =========================
exporter                        time per tower         nodes (image/text)  max |Δ| vs torch (B = 5)
==============================  =====================  ==================  =========================
legacy TorchScript, opset 17    0.3–0.9 s              306 / 340           1e-7
  + onnxscript optimizer        +0.4 s                 191 / 212           0 (vs unoptimised)
dynamo (torch.export), opset 18 3.7–4.4 s              177 / —             3e-7 (image)
==============================  =====================  ==================  =========================

The dynamo exporter is 5–10× slower and, with ``output_names=["embedding"]``, writes an *invalid*
text graph: the value produced by ``aten.embedding`` is also named ``embedding`` (ONNX Runtime:
"Duplicate definition of name (embedding)"). Both give the same accuracy and the optimised graphs
run equally fast in ONNX Runtime (PERF.md), so the default is ``exporter="legacy"`` (opset 17)
followed by onnxscript's optimizer (constant folding, dead-code and redundant-op elimination: 306 →
191 nodes). ``exporter="dynamo"`` (opset 18) stays selectable for when the TorchScript exporter is
removed from PyTorch; it exports under a neutral output name and renames the colliding internal
value before naming the graph output ``embedding``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_runtime.schema import TowerIO
from export.towers import feeds_to_torch

MAX_IR_VERSION = 10            # ONNX Runtime ≥ 1.16 and OpenVINO 2024+ load IR 10
EXPORTERS = ("legacy", "dynamo")
DEFAULT_OPSET = {"legacy": 17, "dynamo": 18}


def export_onnx(tower: nn.Module, io: TowerIO, feeds: dict[str, np.ndarray], path: Path,
                exporter: str = "legacy", opset: int | None = None) -> Path:
    """Export ``tower`` (already in eval mode) to ``path`` with a dynamic batch axis; returns ``path``."""
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    opset = DEFAULT_OPSET[exporter] if opset is None else int(opset)
    if opset < 17:
        raise ValueError(f"opset must be at least 17 (single-op LayerNormalization), got {opset}")
    args = feeds_to_torch(feeds)
    path = Path(path)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings on static shape checks, the legacy deprecation notice
        if exporter == "legacy":
            _export_legacy(tower, io, args, path, opset)
        else:
            _export_dynamo(tower, io, args, path, opset)
    import onnx

    model = onnx.load(str(path))
    pin_io_shapes(model, io)
    save_checked(model, path)
    return path


def pin_io_shapes(model, io: TowerIO) -> None:
    """Write the signature's shapes on the graph inputs/outputs: ``"batch"`` symbolic, the rest fixed
    (exporters leave e.g. the embedding width symbolic)."""
    for declared, specs in ((model.graph.input, io.inputs), (model.graph.output, io.outputs)):
        by_name = {v.name: v for v in declared}
        for spec in specs:
            if spec.name not in by_name:
                raise ValueError(f"the exported graph has no {spec.name!r} (it has {sorted(by_name)})")
            dims = by_name[spec.name].type.tensor_type.shape.dim
            del dims[:]
            for d in spec.shape:
                dim = dims.add()
                if isinstance(d, int):
                    dim.dim_value = d
                else:
                    dim.dim_param = d


def dynamic_axes(io: TowerIO) -> dict[str, dict[int, str]]:
    """``{value name: {axis: axis name}}`` of every named (dynamic) dimension of the signature."""
    return {spec.name: {i: d for i, d in enumerate(spec.shape) if isinstance(d, str)}
            for spec in (*io.inputs, *io.outputs)}


def _export_legacy(tower: nn.Module, io: TowerIO, args: tuple, path: Path, opset: int) -> None:
    axes = dynamic_axes(io)
    torch.onnx.export(tower, args, str(path), dynamo=False, opset_version=opset, input_names=io.input_names,
                      output_names=io.output_names, dynamic_axes=axes, do_constant_folding=True)


def _export_dynamo(tower: nn.Module, io: TowerIO, args: tuple, path: Path, opset: int) -> None:
    import onnx
    from torch.export import Dim

    named = {"batch": Dim("batch", min=1, max=4096), "time": Dim("time", min=1, max=1 << 14)}
    shapes = tuple({i: named[d] for i, d in enumerate(spec.shape) if isinstance(d, str)} for spec in io.inputs)
    program = torch.onnx.export(tower, args, None, dynamo=True, opset_version=opset, input_names=io.input_names,
                                output_names=["__tower_output__"], dynamic_shapes=shapes, optimize=True,
                                verbose=False)
    if program is None:
        raise RuntimeError("torch.onnx.export (dynamo) returned no program")
    model = program.model_proto
    for name in io.output_names:
        rename_value(model, name, f"{name}__internal")
    rename_value(model, "__tower_output__", io.output_names[0])
    onnx.save_model(model, str(path))


def rename_value(model, old: str, new: str) -> None:
    """Rename every occurrence of value ``old`` (node inputs/outputs, graph inputs/outputs,
    initializers, value_info) of an ``onnx.ModelProto`` in place."""
    graph = model.graph
    for node in graph.node:
        node.input[:] = [new if v == old else v for v in node.input]
        node.output[:] = [new if v == old else v for v in node.output]
    for coll in (graph.input, graph.output, graph.value_info, graph.initializer):
        for item in coll:
            if item.name == old:
                item.name = new


def optimize_onnx(src: Path, dst: Path) -> Path:
    """onnxscript optimizer (constant folding, dead code, redundant ops) + IR pin + full check."""
    import onnx
    from onnxscript import optimizer

    model = onnx.load(str(src))
    model = optimizer.optimize(model)
    save_checked(model, dst)
    return Path(dst)


def save_checked(model, path: Path) -> None:
    """Pin the IR version to what the back ends load, run the full ONNX checker, save (one file)."""
    import onnx

    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, str(path))


def compact_names(model) -> None:
    """Short names for a derived graph's nodes (``<op>_<i>``) and internal values (``t<i>``), no
    value_info: quantization tools name every Q/DQ node and value after the long PyTorch module path, which
    made 20–25 % of an int8 MobileViT file (1.50 → 1.14 MB). Graph inputs and outputs keep their names."""
    graph = model.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output} | {""}
    mapping: dict[str, str] = {}

    def short(name: str) -> str:
        if name in keep:
            return name
        return mapping.setdefault(name, f"t{len(mapping)}")

    for t in graph.initializer:
        t.name = short(t.name)
    for i, node in enumerate(graph.node):
        node.name = f"{node.op_type}_{i}"
        node.doc_string = ""
        node.input[:] = [short(v) for v in node.input]
        node.output[:] = [short(v) for v in node.output]
    del graph.value_info[:]


def topological_sort(model) -> None:
    """Reorder the main graph's nodes so every node follows the producers of its inputs (some tools,
    e.g. the fp16 converter's I/O casts, append nodes at the end; the checker requires the order)."""
    graph = model.graph
    known = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:
            raise ValueError(f"the graph has a cycle or undefined inputs near node {pending[0].name!r}")
        for n in ready:
            known.update(n.output)
        ordered += ready
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
    copies = [type(n)() for n in ordered]
    for c, n in zip(copies, ordered):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)


def check_onnx(path: Path, io: TowerIO) -> None:
    """The checker passes and the graph's I/O names, dtypes and shapes are exactly ``io``'s."""
    import onnx

    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    if model.ir_version > MAX_IR_VERSION:
        raise ValueError(f"{path.name}: IR version {model.ir_version} > {MAX_IR_VERSION} (ONNX Runtime may refuse it)")
    for kind, declared, specs in (("input", model.graph.input, io.inputs), ("output", model.graph.output, io.outputs)):
        got = [(v.name, _np_dtype(v.type.tensor_type.elem_type), _dims(v)) for v in declared]
        want = [(s.name, s.dtype, tuple(d if isinstance(d, int) else "batch" for d in s.shape)) for s in specs]
        if got != want:
            raise ValueError(f"{path.name}: graph {kind}s {got} do not match the bundle signature {want}")


def _dims(value) -> tuple[int | str, ...]:
    return tuple(d.dim_value if d.HasField("dim_value") else "batch" for d in value.type.tensor_type.shape.dim)


def _np_dtype(elem_type: int) -> str:
    import onnx

    return str(onnx.helper.tensor_dtype_to_np_dtype(elem_type))


def op_types(path: Path) -> list[str]:
    """Sorted distinct op types of a graph (main graph and subgraphs)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    found: set[str] = set()
    stack = [model.graph]
    while stack:
        g = stack.pop()
        for node in g.node:
            found.add(node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}")
            stack.extend(a.g for a in node.attribute if a.HasField("g"))
    return sorted(found)
