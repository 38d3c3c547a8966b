"""TensorRT without TensorRT: is a tower graph buildable, and the graph the engine builder gets.

**Check** (:func:`check_graph`, needs only ``onnx``) — what is known to break TensorRT engine builds:

* an op outside :data:`SUPPORTED_OPS` (what TensorRT 10's ONNX parser imports, onnx-tensorrt
  ``docs/operators.md``): the ORT-only ``com.microsoft`` ops, and the integer ops of dynamic
  quantization (``MatMulInteger``, ``ConvInteger``, ``DynamicQuantizeLinear``);
* a ``Resize`` / ``Upsample`` whose ``scales`` are computed in the graph rather than constant:
  the parser's "Resize scales must be an initializer!" (MobileViT's ``F.interpolate``, timm issue
  #1373; resizing to computed ``sizes`` is fine);
* an input dimension that is dynamic in the graph but fixed in the bundle signature, or a named
  dynamic axis (``batch``, a sequence tower's ``time``) without a range in the optimisation profile;
* an ``int64`` input: TensorRT ≤ 8.6 has no int64 bindings ("INT64 ... cast down to INT32"), so the
  engine's graph takes int32 (:func:`int32_inputs`) and the runner casts the feeds;
* an int8 ``QuantizeLinear`` with a non-zero or unsigned zero point (TensorRT's explicit
  quantization is symmetric).

**Profile**: one optimisation profile; every input's ``min / opt / max`` shape, from the
:class:`BatchProfile` on the batch axis and :func:`axis_ranges` on the others
(:func:`profile_shapes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.modalities import TIME, is_sequence, sequence_stream
from edge_runtime.schema import BATCH, TowerIO
from export.backends import require
from export.onnx_graph import op_types, save_checked

SUPPORTED_OPS = frozenset("""
Abs Acos Acosh Add AffineGrid And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
BitShift BlackmanWindow Cast CastLike Ceil Celu Clip Compress Concat ConcatFromSequence Constant
ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout
Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm
GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU
HammingWindow HannWindow HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf
IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LpNormalization LpPool LRN LSTM
MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not
OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean
ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round
ScaledTanh Scan Scatter ScatterElements ScatterND Selu SequenceAt SequenceConstruct SequenceEmpty
SequenceErase SequenceInsert SequenceLength Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax
Softplus Softsign SpaceToDepth Split SplitToSequence Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile
TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

#: input index of the ``scales`` of each resizing op (Resize ≥ 11: X, roi, scales, sizes)
SCALES_INPUT = {"Resize": 2, "Upsample": 1}

AxisRange = tuple[int, int, int]


@dataclass(frozen=True)
class BatchProfile:
    min: int = 1
    opt: int = 8
    max: int = 64

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise ValueError(f"the TensorRT batch profile needs 1 ≤ min ≤ opt ≤ max, got {self.min}/{self.opt}/{self.max}")

    def to_dict(self) -> dict[str, int]:
        return {"min": self.min, "opt": self.opt, "max": self.max}


DEFAULT_PROFILE = BatchProfile()


def axis_ranges(modality: str, spec: Any) -> dict[str, AxisRange]:
    """``(min, opt, max)`` of every dynamic non-batch axis of ``modality``'s signature: a sequence
    tower's ``time`` from one token (``patch`` frames) to the longest padded window, optimised for it."""
    if not is_sequence(modality):
        return {}
    s = spec.sequences[sequence_stream(modality)]
    return {TIME: (s.patch, s.padded_frames, s.padded_frames)}


def profile_shapes(io: TowerIO, profile: BatchProfile,
                   axes: Mapping[str, AxisRange] | None = None) -> dict[str, dict[str, list[int]]]:
    """``{input: {"min"|"opt"|"max": shape}}`` of the optimisation profile; ValueError naming a
    dynamic axis that has no range."""
    ranges: dict[str, AxisRange] = {BATCH: (profile.min, profile.opt, profile.max), **(axes or {})}
    missing = sorted({d for t in io.inputs for d in t.shape if isinstance(d, str) and d not in ranges})
    if missing:
        raise ValueError(f"the TensorRT profile has no range for dynamic axis {', '.join(missing)} of the {io.modality} tower")
    return {t.name: {k: [ranges[d][i] if isinstance(d, str) else int(d) for d in t.shape]
                     for i, k in enumerate(("min", "opt", "max"))} for t in io.inputs}


def check_graph(onnx_path: Path, io: TowerIO, profile: BatchProfile = DEFAULT_PROFILE,
                axes: Mapping[str, AxisRange] | None = None) -> dict[str, Any]:
    """TensorRT compatibility of one graph (module docstring) →
    ``{"ok", "problems", "ops", "unsupported_ops", "profile"}``, a dict for report.json."""
    onnx = require("onnx")
    model = onnx.load(str(onnx_path))
    ops = op_types(Path(onnx_path))
    unsupported = [op for op in ops if op not in SUPPORTED_OPS]
    problems = [f"unsupported op(s) {', '.join(unsupported)}"] if unsupported else []
    problems += _computed_scales(model)
    problems += _input_problems(model, io)
    problems += _asymmetric_quantizers(model)
    try:
        shapes = profile_shapes(io, profile, axes)
    except ValueError as e:
        problems.append(str(e))
        shapes = {}
    return {"ok": not problems, "problems": problems, "ops": ops, "unsupported_ops": unsupported,
            "profile": {"batch": profile.to_dict(), "axes": {k: list(v) for k, v in (axes or {}).items()},
                        "shapes": shapes}}


def _input_problems(model, io: TowerIO) -> list[str]:
    """Dynamic dims the signature fixes; int64 inputs."""
    from onnx import TensorProto

    declared = {t.name: t.shape for t in io.inputs}
    problems, wide = [], []
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        fixed_in_signature = [i for i, d in enumerate(declared.get(value.name, ())) if not isinstance(d, str)]
        dynamic = [i for i, d in enumerate(dims) if not d.HasField("dim_value")]
        bad = [i for i in dynamic if i in fixed_in_signature or value.name not in declared]
        if bad:
            problems.append(f"input {value.name!r}: dynamic axes {bad} that the bundle signature fixes "
                            f"(only its named axes may be dynamic)")
        if value.type.tensor_type.elem_type == TensorProto.INT64:
            wide.append(value.name)
    if wide:
        problems.append(f"int64 input(s) {', '.join(wide)}: TensorRT ≤ 8.6 has no int64 bindings "
                        f"(int32_inputs gives the engine int32 ones)")
    return problems


def _computed_scales(model) -> list[str]:
    """Resize/Upsample nodes whose ``scales`` input is not a constant (initializer or Constant node)."""
    graph = model.graph
    constant = {t.name for t in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    bad = [n.name or n.output[0] for n in graph.node if n.op_type in SCALES_INPUT
           and len(n.input) > SCALES_INPUT[n.op_type] and n.input[SCALES_INPUT[n.op_type]] not in ("", *constant)]
    return [f"{len(bad)} Resize/Upsample node(s) with computed scales ({', '.join(bad[:3])}): TensorRT needs constant "
            f"scales (resize to sizes instead)"] if bad else []


def _asymmetric_quantizers(model) -> list[str]:
    """QuantizeLinear nodes with a non-zero or unsigned zero point (TensorRT needs symmetric int8)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    bad = []
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] in inits:
            zp = numpy_helper.to_array(inits[node.input[2]])
            if zp.dtype != np.int8 or np.any(zp != 0):
                bad.append(node.name or node.output[0])
    return [f"{len(bad)} QuantizeLinear node(s) with a non-zero/unsigned zero point (need symmetric int8)"] if bad else []


def int32_inputs(src: Path, dst: Path) -> Path:
    """``src`` with every int64 graph input taken as int32 and cast to int64 inside the graph (one
    ``Cast`` per input, consumers rewired), so every TensorRT version binds it; the rest of the graph
    is unchanged. A graph without int64 inputs is returned as it is (``src``, nothing written). Token ids and masks fit int32 (vocabularies and lengths are bounded far below 2³¹)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(src))
    graph = model.graph
    if all(v.type.tensor_type.elem_type != TensorProto.INT64 for v in graph.input):
        return Path(src)                                    # nothing to rewrite: the graph itself
    casts = []
    for value in graph.input:
        if value.type.tensor_type.elem_type != TensorProto.INT64:
            continue
        wide = f"{value.name}__int64"
        for node in graph.node:
            node.input[:] = [wide if v == value.name else v for v in node.input]
        for out in graph.output:
            if out.name == value.name:
                raise ValueError(f"{Path(src).name}: input {value.name!r} is also a graph output")
        value.type.tensor_type.elem_type = TensorProto.INT32
        casts.append(helper.make_node("Cast", [value.name], [wide], to=TensorProto.INT64, name=f"{value.name}_to_int64"))
    nodes = [*casts, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    save_checked(model, Path(dst))
    return Path(dst)


def summarize_problems(checks: dict[str, dict[str, Any]]) -> str:
    """One line naming every incompatible graph and why."""
    return "; ".join(f"{name}: {', '.join(c['problems'])}" for name, c in checks.items() if not c["ok"])
