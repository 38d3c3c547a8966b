"""Inference back ends behind one small interface, each imported lazily.

``Backend.run(inputs: dict[str, np.ndarray]) -> np.ndarray`` returns the model's first output
(the (batch, E) embedding); ``run_outputs(inputs, names)`` returns named outputs (e.g. a head's
logits). Back ends:

- ``onnxruntime``: ``.onnx`` files; ``intra_op_num_threads = threads`` (0 = ORT's default), one
  inter-op thread, sequential execution, ``ORT_ENABLE_ALL`` graph optimisation, CPU provider
  unless ``providers`` are given.
- ``openvino``: OpenVINO IR (``.xml`` + ``.bin``) or ``.onnx``; CPU device, ``LATENCY`` performance
  hint, one stream, ``INFERENCE_NUM_THREADS = threads`` and the tower's ``inference_precision``
  from the manifest (default ``f32``) as ``INFERENCE_PRECISION_HINT`` — never the plugin's own
  default, which is bf16 on AMX CPUs (see :mod:`edge_runtime.openvino_core`).
- ``tensorrt``: serialized engines (``.plan``), NVIDIA GPUs only; needs ``tensorrt`` and
  ``cuda-python`` (device buffers and a stream through ``cuda.bindings.runtime``).

``backend="auto"`` (:func:`choose_backend`): the exporter's hint when that back end is installed
and can read the file, else the first installed one that can (``.onnx``: onnxruntime, then
openvino; ``.xml``: openvino; ``.plan``: tensorrt). A missing back end raises
:class:`BackendError` in one line naming the pip extra.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

INSTALL = {
    "onnxruntime": "ONNX Runtime is not installed: pip install 'hssl[runtime]'",
    "openvino": "OpenVINO is not installed: pip install 'hssl[openvino]'",
    "tensorrt": "TensorRT is not installed: pip install 'hssl[tensorrt]' (NVIDIA GPU only)",
}
READS = {".onnx": ("onnxruntime", "openvino"), ".xml": ("openvino",), ".plan": ("tensorrt",), ".engine": ("tensorrt",)}


class BackendError(ValueError):
    """No usable back end: unknown name, not installed, or unable to read the model file."""


class Backend(Protocol):
    name: str
    input_names: list[str]
    output_names: list[str]

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...

    def run_outputs(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]: ...


@lru_cache(maxsize=None)
def is_installed(name: str) -> bool:
    """Whether the back end's Python package can be imported (without importing it)."""
    module = {"onnxruntime": "onnxruntime", "openvino": "openvino", "tensorrt": "tensorrt"}[name]
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install, or an import hook that refuses it
        return False


def choose_backend(model: Path, requested: str = "auto", hint: str | None = None) -> str:
    """The back end that will run ``model`` (see the module docstring)."""
    readers = READS.get(model.suffix.lower())
    if readers is None:
        raise BackendError(f"{model.name}: unknown model file type {model.suffix!r} (expected .onnx, .xml or .plan)")
    if requested != "auto":
        if requested not in INSTALL:
            raise BackendError(f"unknown back end {requested!r}; choose auto, {', '.join(INSTALL)}")
        if requested not in readers:
            raise BackendError(f"the {requested} back end cannot run {model.name} (it needs {' or '.join(readers)})")
        if not is_installed(requested):
            raise BackendError(INSTALL[requested])
        return requested
    order = ([hint] if hint in readers else []) + [r for r in readers if r != hint]
    for name in order:
        if is_installed(name):
            return name
    raise BackendError(INSTALL[readers[0]])


def open_backend(name: str, model: Path, threads: int | None = None, inference_precision: str | None = None,
                 weights: Path | None = None, providers: list[str] | None = None) -> Backend:
    """Create back end ``name`` for one model file."""
    if not is_installed(name):
        raise BackendError(INSTALL[name])
    if name == "onnxruntime":
        return OnnxRuntimeBackend(model, threads, providers)
    if name == "openvino":
        return OpenVINOBackend(model, threads, inference_precision, weights)
    if name == "tensorrt":
        return TensorRTBackend(model)
    raise BackendError(f"unknown back end {name!r}")


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, model: Path, threads: int | None = None, providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or 0)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(model), sess_options=opts, providers=providers or ["CPUExecutionProvider"])
        except Exception as e:
            raise BackendError(f"onnxruntime cannot load {model.name}: {str(e).splitlines()[0]}") from None
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.session.run(self.output_names[:1], inputs)[0])

    def run_outputs(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        return dict(zip(names, self.session.run(names, inputs)))


class OpenVINOBackend:
    name = "openvino"

    def __init__(self, model: Path, threads: int | None = None, inference_precision: str | None = None,
                 weights: Path | None = None) -> None:
        from edge_runtime.openvino_core import compile_config, core

        config = compile_config(threads, inference_precision)
        try:
            shared = core()  # one Core per process, never freed: see edge_runtime.openvino_core
            graph = shared.read_model(str(model), str(weights)) if weights else shared.read_model(str(model))
            self.compiled = shared.compile_model(graph, "CPU", config)
        except Exception as e:
            raise BackendError(f"openvino cannot load {model.name}: {str(e).splitlines()[0]}") from None
        self.request = self.compiled.create_infer_request()
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]
        self.input_names = [i.get_any_name() for i in self.compiled.inputs]

    def _infer(self, inputs: dict[str, np.ndarray]) -> None:
        self.request.infer(inputs)

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        self._infer(inputs)
        return np.array(self.request.get_output_tensor(0).data)

    def run_outputs(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        self._infer(inputs)
        return {n: self.request.get_tensor(self.compiled.output(n)).data.copy() for n in names}


class TensorRTBackend:
    """A serialized TensorRT engine with a dynamic batch; device buffers are (re)allocated per
    input shape through ``cuda.bindings.runtime``."""

    name = "tensorrt"

    def __init__(self, model: Path) -> None:
        import tensorrt as trt

        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            try:
                from cuda import cudart  # cuda-python < 12.6
            except ImportError:
                raise BackendError("cuda-python is not installed: pip install 'hssl[tensorrt]'") from None
        self.trt, self.cudart = trt, cudart
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(model.read_bytes())
        if self.engine is None:
            raise BackendError(f"tensorrt cannot deserialize {model.name} (built for another GPU or TensorRT version?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.stream = self._check(cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}  # name → (device pointer, bytes)

    def _check(self, result: Any) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise BackendError(f"CUDA error {err}")
        return rest[0] if len(rest) == 1 else rest

    def _device(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self._check(self.cudart.cudaFree(ptr))
            ptr = self._check(self.cudart.cudaMalloc(nbytes))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def run_outputs(self, inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        cudart, h2d, d2h = self.cudart, self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name in self.input_names:
            x = np.ascontiguousarray(inputs[name], dtype=self.trt.nptype(self.engine.get_tensor_dtype(name)))
            self.context.set_input_shape(name, x.shape)
            ptr = self._device(name, x.nbytes)
            self._check(cudart.cudaMemcpyAsync(ptr, x.ctypes.data, x.nbytes, h2d, self.stream))
            self.context.set_tensor_address(name, ptr)
        outs: dict[str, np.ndarray] = {}
        for name in self.output_names:
            out = np.empty(tuple(self.context.get_tensor_shape(name)), dtype=self.trt.nptype(self.engine.get_tensor_dtype(name)))
            self.context.set_tensor_address(name, self._device(name, out.nbytes))
            outs[name] = out
        if not self.context.execute_async_v3(self.stream):
            raise BackendError("tensorrt execution failed")
        for name in names:
            out = outs[name]
            self._check(cudart.cudaMemcpyAsync(out.ctypes.data, self._buffers[name][0], out.nbytes, d2h, self.stream))
        self._check(cudart.cudaStreamSynchronize(self.stream))
        return {n: outs[n].astype(np.float32, copy=False) for n in names}

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.run_outputs(inputs, self.output_names[:1])[self.output_names[0]]

    def __del__(self) -> None:
        cudart = getattr(self, "cudart", None)
        for ptr, _ in getattr(self, "_buffers", {}).values():
            if cudart is not None:
                cudart.cudaFree(ptr)
