"""TensorRT: check a tower graph for TensorRT, build a serialized engine, run it.

**Graph check** (:func:`check_graph`, needs only ``onnx``): every op of the graph is in
:data:`SUPPORTED_OPS` (the ONNX ops TensorRT 10's parser imports, onnx-tensorrt ``docs/operators.md``;
the ORT-only ``com.microsoft`` ops and the integer ops of dynamic quantization —
``MatMulInteger``, ``ConvInteger``, ``DynamicQuantizeLinear`` — are not), every input has static
non-batch dimensions, int8 ``QuantizeLinear`` zero points are 0 (TensorRT's explicit quantization is
symmetric), and the optimisation profile ``min ≤ opt ≤ max`` batch sizes is valid. The result is a
dict for report.json.

**Engine** (:func:`build_engine`, needs ``tensorrt`` and an NVIDIA GPU): ``trt.Builder`` +
``trt.OnnxParser`` on the ONNX graph, one optimisation profile over the batch axis, ``fp16`` →
``BuilderFlag.FP16``; ``int8`` → the symmetric QDQ graph with ``INT8`` (+ ``FP16`` for the float
parts), i.e. TensorRT's explicit quantization: the scales come from the graph, not a TensorRT
calibrator. The serialized engine is written as ``<modality>.<precision>.plan``; it only runs on the
GPU model and TensorRT version that built it (the manifest records both).

**Runner** (:class:`TensorRTRunner`): deserialises the plan and runs it with torch CUDA tensors as
buffers (``execute_async_v3`` on the current stream), splitting batches above the profile's max.

Without TensorRT or a GPU, :func:`require_tensorrt_gpu` raises :class:`TensorRTUnavailable` with one
line saying what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.schema import TowerIO
from export.backends import require
from export.onnx_graph import op_types

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

PRECISIONS = ("fp16", "int8")


class TensorRTUnavailable(RuntimeError):
    """TensorRT or an NVIDIA GPU is missing (one-line message)."""


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


def check_graph(onnx_path: Path, io: TowerIO, profile: BatchProfile = BatchProfile()) -> dict[str, Any]:
    """TensorRT compatibility of one graph → ``{"ok", "problems", "ops", "unsupported_ops", "profile"}``."""
    onnx = require("onnx")
    model = onnx.load(str(onnx_path))
    ops = op_types(Path(onnx_path))
    unsupported = [op for op in ops if op not in SUPPORTED_OPS]
    problems = [f"unsupported op(s) {', '.join(unsupported)}"] if unsupported else []
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        dynamic = [i for i, d in enumerate(dims) if not d.HasField("dim_value")]
        if dynamic != [0]:
            problems.append(f"input {value.name!r}: dynamic axes {dynamic} (only axis 0, the batch, may be dynamic)")
    problems += _asymmetric_quantizers(model)
    shapes = {t.name: {k: [getattr(profile, k), *t.shape[1:]] for k in ("min", "opt", "max")} for t in io.inputs}
    return {"ok": not problems, "problems": problems, "ops": ops, "unsupported_ops": unsupported,
            "profile": {"batch": profile.to_dict(), "shapes": shapes}}


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


def summarize_problems(checks: dict[str, dict[str, Any]]) -> str:
    """One line naming every incompatible graph and why."""
    return "; ".join(f"{name}: {', '.join(c['problems'])}" for name, c in checks.items() if not c["ok"])


def gpu_name() -> str | None:
    """The first CUDA device's name, or None without an NVIDIA GPU."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def require_tensorrt_gpu():
    """Return the ``tensorrt`` module when it and an NVIDIA GPU are present; else :class:`TensorRTUnavailable`."""
    try:
        trt = require("tensorrt")
    except ModuleNotFoundError as e:
        raise TensorRTUnavailable(str(e)) from None
    if gpu_name() is None:
        raise TensorRTUnavailable("no NVIDIA GPU found: TensorRT builds and runs engines on the GPU they target")
    return trt


def build_engine(onnx_path: Path, plan_path: Path, io: TowerIO, precision: str,
                 profile: BatchProfile = BatchProfile(), workspace_bytes: int = 1 << 30) -> dict[str, Any]:
    """Build and serialize a TensorRT engine of one tower graph (module docstring)."""
    if precision not in PRECISIONS:
        raise ValueError(f"TensorRT precision must be one of {PRECISIONS}, got {precision!r}")
    trt = require_tensorrt_gpu()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT could not parse {Path(onnx_path).name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    opt = builder.create_optimization_profile()
    for t in io.inputs:
        fixed = tuple(int(d) for d in t.shape[1:])
        opt.set_shape(t.name, (profile.min, *fixed), (profile.opt, *fixed), (profile.max, *fixed))
    config.add_optimization_profile(opt)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {Path(onnx_path).name} ({precision})")
    Path(plan_path).write_bytes(bytes(serialized))
    return {"precision": precision, "profile": profile.to_dict(), "tensorrt": trt.__version__, "gpu": gpu_name()}


class TensorRTRunner:
    """Runs a serialized engine on the GPU; feeds and outputs are numpy (bundle names)."""

    def __init__(self, plan_path: Path, max_batch: int) -> None:
        trt = require_tensorrt_gpu()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(Path(plan_path).read_bytes())
        if self.engine is None:
            raise ValueError(f"{Path(plan_path).name} is not a TensorRT engine for this TensorRT/GPU")
        self.context = self.engine.create_execution_context()
        self.max_batch = int(max_batch)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(feeds.values())))
        parts = [self._run({k: v[i : i + self.max_batch] for k, v in feeds.items()}) for i in range(0, n, self.max_batch)]
        return np.concatenate(parts)

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        inputs = {k: torch.from_numpy(np.ascontiguousarray(v)).cuda() for k, v in feeds.items()}
        for name, t in inputs.items():
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
        out_name = self.outputs[0]
        out = torch.empty(tuple(self.context.get_tensor_shape(out_name)), dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(out_name, out.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return out.cpu().numpy()
