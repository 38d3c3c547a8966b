"""TensorRT engines: build a serialized engine of a tower graph, run it.

The graph side (which graphs TensorRT builds, the optimisation profile, the int32 inputs) is
:mod:`export.tensorrt_graph`, torch- and TensorRT-free.

**Engine** (:func:`build_engine`, needs ``tensorrt`` and an NVIDIA GPU): ``trt.Builder`` +
``trt.OnnxParser`` on the ONNX graph, one optimisation profile (:func:`~export.tensorrt_graph.profile_shapes`:
the batch axis and a sequence tower's time axis), ``fp16`` → ``BuilderFlag.FP16``; ``int8`` → the
symmetric QDQ graph with ``INT8`` (+ ``FP16`` for the float parts), i.e. TensorRT's explicit
quantization: the scales come from the graph, not a TensorRT calibrator. The serialized engine is
written as ``<modality>.<precision>.plan``; it only runs on the GPU model and TensorRT version that
built it (the manifest records both).

**Runner** (:class:`TensorRTRunner`): deserialises the plan and runs it with torch CUDA tensors as
buffers (``execute_async_v3`` on the current stream), each feed cast to the engine's input dtype
(int64 token ids → the engine's int32), batches above the profile's max split.

Without TensorRT or a GPU, :func:`require_tensorrt_gpu` raises :class:`TensorRTUnavailable` with one
line saying what is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.schema import TowerIO
from export.backends import require
from export.tensorrt_graph import DEFAULT_PROFILE, AxisRange, BatchProfile, profile_shapes

PRECISIONS = ("fp16", "int8")


class TensorRTUnavailable(RuntimeError):
    """TensorRT or an NVIDIA GPU is missing (one-line message)."""


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
                 profile: BatchProfile = DEFAULT_PROFILE, axes: Mapping[str, AxisRange] | None = None,
                 workspace_bytes: int = 1 << 30) -> dict[str, Any]:
    """Build and serialize a TensorRT engine of one tower graph (module docstring)."""
    if precision not in PRECISIONS:
        raise ValueError(f"TensorRT precision must be one of {PRECISIONS}, got {precision!r}")
    shapes = profile_shapes(io, profile, axes)
    trt = require_tensorrt_gpu()
    if not hasattr(trt.BuilderFlag, "FP16"):
        raise TensorRTUnavailable(f"TensorRT {trt.__version__} has no FP16/INT8 builder flags (removed in 11, strong "
                                  f"typing only); hssl builds engines with TensorRT 10: pip install 'hssl[tensorrt]'")
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
    for name, s in shapes.items():
        opt.set_shape(name, tuple(s["min"]), tuple(s["opt"]), tuple(s["max"]))
    config.add_optimization_profile(opt)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {Path(onnx_path).name} ({precision})")
    Path(plan_path).write_bytes(bytes(serialized))
    return {"precision": precision, "profile": profile.to_dict(), "shapes": shapes, "tensorrt": trt.__version__,
            "gpu": gpu_name()}


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
        self.input_dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names
                             if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT}

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(feeds.values())))
        parts = [self._run({k: v[i : i + self.max_batch] for k, v in feeds.items()}) for i in range(0, n, self.max_batch)]
        return np.concatenate(parts)

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        inputs = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=self.input_dtypes[k])).cuda()
                  for k, v in feeds.items()}
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
