"""The real back ends that run exported towers, and an adapter that lets hybridssl's evaluation use them.

A *runner* is a callable ``feeds → (B, E) float32`` over bundle feeds (:mod:`export.towers`):

* :class:`OrtRunner` — an ``onnxruntime.InferenceSession`` (CPU execution provider, ``threads``
  intra-op threads, one inter-op thread, all graph optimisations);
* :class:`OpenVinoRunner` — ``openvino.Core().compile_model(xml, "CPU")`` with the latency hint, one
  stream and ``INFERENCE_PRECISION_HINT = f32`` (the parity gate measures the IR, not a bf16 fallback
  a CPU with AMX would otherwise pick);
* ``export.tensorrt_backend.TensorRTRunner`` — a deserialised engine on the GPU.

:class:`RunnerModel` wraps ``{modality: runner}`` in the tower interface (``modalities``,
``embed(m, x, attention)``) so ``hybridssl.evaluation.embed.extract_embeddings`` and
``hybridssl.evaluation.heldout`` evaluate an exported bundle exactly as they evaluate the PyTorch model.

Optional dependencies are imported inside the functions that need them; a missing one raises a
one-line ``ModuleNotFoundError`` naming the pip extra (:func:`require`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import Tensor, nn

from export.towers import torch_to_feeds

Runner = Callable[..., np.ndarray]   # feeds {input name: array} → (B, E) embeddings

EXTRAS = {"onnxruntime": "export", "onnx": "export", "onnxscript": "export", "openvino": "openvino",
          "nncf": "openvino", "tensorrt": "tensorrt"}
NAMES = {"onnxruntime": "ONNX Runtime", "onnx": "onnx", "onnxscript": "onnxscript", "openvino": "OpenVINO",
         "nncf": "NNCF", "tensorrt": "TensorRT"}


@lru_cache(maxsize=None)
def available(module: str) -> bool:
    """Whether an optional dependency can be imported (cached)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def require(module: str) -> ModuleType:
    """Import an optional dependency or raise a one-line error naming its pip extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        suffix = " (needs an NVIDIA GPU)" if module == "tensorrt" else ""
        raise ModuleNotFoundError(f"{NAMES.get(module, module)} is not installed: "
                                  f"pip install 'hssl[{EXTRAS.get(module, module)}]'{suffix}") from None


class OrtRunner:
    """An ONNX Runtime CPU session over one tower graph."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        ort = require("onnxruntime")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.session.run(None, feeds)[0], dtype=np.float32)


class OpenVinoRunner:
    """An OpenVINO CPU compiled model over one tower IR (``.xml`` + ``.bin``)."""

    def __init__(self, xml: Path, threads: int = 0) -> None:
        require("openvino")
        from edge_runtime.openvino_core import compile_config, core

        config = compile_config(threads)  # the inference precision the manifest records for the runtime
        self.path = Path(xml)
        self.compiled = core().compile_model(str(xml), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        result = self.request.infer({name: np.ascontiguousarray(v) for name, v in feeds.items()})
        return np.array(result[self.compiled.output(0)], dtype=np.float32)


class RunnerModel(nn.Module):
    """The tower interface over exported runners, for ``hybridssl.evaluation``.

    An exported graph ends at the joint embedding, so ``forward_features`` returns the embedding and
    ``forward_head`` is the identity (``embed = forward_head ∘ forward_features`` still holds).
    ``extract_embeddings`` asks ``next(model.parameters()).device`` for where to put batches; the one
    empty parameter answers "cpu" (runners take numpy)."""

    def __init__(self, runners: dict[str, Runner]) -> None:
        super().__init__()
        if not runners:
            raise ValueError("RunnerModel needs at least one tower runner")
        self.runners = dict(runners)
        self.modalities = tuple(runners)
        self._device_anchor = nn.Parameter(torch.zeros(0), requires_grad=False)

    def forward_features(self, modality: str, x: Tensor, attention: Tensor | None = None) -> Tensor:
        return self.embed(modality, x, attention)

    def forward_head(self, modality: str, pooled: Tensor) -> Tensor:
        return pooled

    def embed(self, modality: str, x: Tensor, attention: Tensor | None = None) -> Tensor:
        if modality not in self.runners:
            raise ValueError(f"no exported {modality!r} tower (have {', '.join(self.modalities)})")
        out = self.runners[modality](torch_to_feeds(modality, x, attention))   # (B, E)
        return torch.from_numpy(out)
