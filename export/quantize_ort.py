"""ONNX Runtime quantization of tower graphs: static int8 QDQ, dynamic int8, fp16.

* **Static int8, QDQ format** (image and audio towers): ``QuantizeLinear``/``DequantizeLinear`` pairs
  around the quantized ops, scales from calibration on real preprocessed training items
  (:class:`FeedReader`, a ``CalibrationDataReader``). Calibration ``minmax`` | ``entropy`` |
  ``percentile`` (99.999th) | ``distribution``; activations uint8 (asymmetric), weights int8
  (symmetric), per-tensor or ``per_channel``. ``reduce_range=True`` quantizes weights to 7 bits: on
  AVX2 CPUs without VNNI, ORT's u8×s8 kernel (``vpmaddubsw``) sums pairs of products into int16 and
  saturates with 8-bit weights (PERF.md: MobileNetV3 cosine 0.988–0.991 → 0.998–0.999 with it).
  QOperator format is not offered: it produced invalid graphs for MobileViT (PERF.md).
  ``symmetric=True`` gives int8 activations with zero point 0 — what TensorRT's explicit
  quantization requires.
* **Dynamic int8** (text tower): int8 weights of ``MatMul``/``Gemm`` and the embedding table, activation
  scales computed per batch at run time — no calibration; PERF.md measured ViT-S cosine 0.998 (vs 0.93
  static).
* **fp16**: weights and compute in float16 with float32 graph inputs/outputs (``keep_io_types``), so
  the bundle signature is unchanged; ORT's CPU provider inserts casts around ops without fp16 kernels.

Sensitive ops kept in float — measured with ``benchmarks/export.py --sensitivity`` on the ``small``
teacher (ViT towers: patch-embedding Conv, 4 blocks of width 128, 400 steps), each row a full
``export_run`` int8 step: static int8 image/audio towers (MinMax, per-channel, ``reduce_range``, 256
training items) + the dynamic int8 text tower; cosine to PyTorch over 1000 held-out items (min / mean),
the largest change of any R@1 / zero-shot metric (points; one item = 0.1) and the three int8 files
(fp32: 10.26 MB):

===========================================  ===============  ===============  ====  =======
int8 policy                                  image cos        audio cos        drop  size
===========================================  ===============  ===============  ====  =======
every op ORT can quantize (LN, Softmax, Add)  0.9971 / 0.9997  0.9992 / 0.9999  0.2   2.73 MB
Conv/MatMul/Gemm, attention products too     0.9835 / 0.9998  0.9993 / 0.9999  0.3   2.77 MB
**Conv/MatMul/Gemm, Q·Kᵀ and softmax·V float** 0.9952 / 0.9999  0.9995 / 0.9999  0.2   2.77 MB
  … and the projection head float            0.9954 / 1.0000  0.9996 / 1.0000  0.2   2.86 MB
  … and the head and the patch stem float    0.9995 / 1.0000  0.9996 / 1.0000  0.2   2.93 MB
default, full-range (8-bit) weights          0.9915 / 0.9999  0.9992 / 0.9999  0.1   2.77 MB
default, per-tensor weight scales            0.9966 / 0.9998  0.9991 / 0.9999  0.4   2.69 MB
default, entropy calibration                 0.9952 / 0.9999  0.9995 / 0.9999  0.2   2.77 MB
default, percentile (99.999) calibration     0.9975 / 0.9999  0.9987 / 0.9999  0.2   2.77 MB
===========================================  ===============  ===============  ====  =======

Decisions (:class:`QuantSettings` defaults, :data:`DEFAULT_KEEP_FLOAT`):

* The two attention products (activation × activation MatMuls; quantizing them puts the softmax output
  on an 8-bit grid) stay float: image min cosine 0.9835 → 0.9952, free in size (no weights).
* LayerNormalization, Softmax, the residual adds and the final L2 normalisation (ReduceL2 → Clip → Div)
  are not in the quantized op list: they are not matmul work (no speed or size to gain).
* Per-channel weight scales: neutral on the ViT teacher (table), but on the distilled MobileViT-XXS
  student (depthwise convolutions) they raise the image tower's min cosine from 0.960 to 0.984 (mean
  0.9945 → 0.9963, 256 held-out items).
* ``reduce_range`` (7-bit weights) stays on: full range lowers the image min cosine to 0.9915 (the AVX2
  u8×s8 saturation of PERF.md).
* The patch-embedding stem is the most sensitive single layer (image min cosine 0.9952 → 0.9995 when it
  and the head stay float) but no task metric moved, so it is opt-in:
  ``keep_float=("attention", "head", "stem")`` (+6 % int8 size, 27.0 % → 28.6 % of fp32).

Every export's report lists the nodes kept float (in the fp32 graph's names: derived graphs get compact
names, :func:`export.onnx_graph.compact_names`). The text tower's dynamic int8 covers MatMul/Gemm and the
token-embedding Gather (size 30.8 % → 27.6 % of fp32 with Gather, min cosine 0.9992 → 0.9995).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from export.backends import require
from export.onnx_graph import compact_names, save_checked, topological_sort

CALIBRATION_METHODS = ("minmax", "entropy", "percentile", "distribution")
QUANT_OP_TYPES = ("Conv", "MatMul", "Gemm")
DYNAMIC_OP_TYPES = ("MatMul", "Gemm", "Gather")
#: node groups that may stay float; see the module docstring for the measurements behind the default.
KEEP_FLOAT_GROUPS = ("attention", "head", "stem")
DEFAULT_KEEP_FLOAT = ("attention",)


@dataclass
class QuantSettings:
    """Static int8 settings (recorded in report.json)."""

    calibration: str = "minmax"
    per_channel: bool = True
    reduce_range: bool = True
    symmetric: bool = False
    keep_float: tuple[str, ...] = DEFAULT_KEEP_FLOAT
    op_types: tuple[str, ...] | None = QUANT_OP_TYPES       # None: every op ORT can quantize

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATION_METHODS:
            raise ValueError(f"calibration must be one of {CALIBRATION_METHODS}, got {self.calibration!r}")
        unknown = set(self.keep_float) - set(KEEP_FLOAT_GROUPS)
        if unknown:
            raise ValueError(f"unknown keep-float groups {sorted(unknown)}; valid: {KEEP_FLOAT_GROUPS}")

    def to_dict(self) -> dict[str, Any]:
        return {"calibration": self.calibration, "per_channel": self.per_channel, "reduce_range": self.reduce_range,
                "symmetric": self.symmetric, "keep_float": list(self.keep_float),
                "op_types": list(self.op_types) if self.op_types else "all"}


@dataclass
class QuantResult:
    path: Path
    kind: str                                       # "static" | "dynamic" | "fp16"
    settings: dict[str, Any]
    excluded: dict[str, list[str]] = field(default_factory=dict)   # group → node names kept float
    calibration_items: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.path.name, "kind": self.kind, "settings": self.settings,
                "kept_float": self.excluded, "calibration_items": self.calibration_items}


class FeedReader:
    """A ``CalibrationDataReader`` over a list of feed dicts (bundle names → arrays)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = list(feeds)
        self._it = iter(self.feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self.feeds)


# ----------------------------------------------------------------------------- graph inspection
def _producers(graph) -> dict[str, Any]:
    return {out: node for node in graph.node for out in node.output}


def name_nodes(model) -> None:
    """Give every unnamed node a unique name (quantization tools address nodes by name)."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def node_groups(model) -> dict[str, list[str]]:
    """Node names of each keep-float group of a tower graph.

    * ``attention`` — MatMul nodes whose two inputs are both activations (Q·Kᵀ, softmax·V);
    * ``head`` — the MatMul/Gemm whose output is L2-normalised (the projection into the joint space);
    * ``stem`` — the Conv nodes that read a graph input (patch embedding / first convolution)."""
    graph = model.graph
    consts = {t.name for t in graph.initializer} | {
        out for n in graph.node if n.op_type == "Constant" for out in n.output}
    inputs = {v.name for v in graph.input}
    producers = _producers(graph)
    groups: dict[str, list[str]] = {g: [] for g in KEEP_FLOAT_GROUPS}
    for node in graph.node:
        if node.op_type == "MatMul" and not any(_is_const(v, consts, producers) for v in node.input):
            groups["attention"].append(node.name)
        if node.op_type == "Conv" and node.input[0] in inputs:
            groups["stem"].append(node.name)
        if node.op_type in ("ReduceL2", "LpNormalization"):
            src = _skip_to_matmul(producers.get(node.input[0]), producers)
            if src is not None:
                groups["head"].append(src.name)
    return groups


def _is_const(value: str, consts: set[str], producers: dict[str, Any]) -> bool:
    """A constant, or a constant passed through Transpose/Reshape/Cast (weights the exporter transposed)."""
    seen = 0
    while value not in consts:
        node = producers.get(value)
        if node is None or node.op_type not in ("Transpose", "Reshape", "Cast", "Identity") or seen > 4:
            return False
        value, seen = node.input[0], seen + 1
    return True


def _skip_to_matmul(node, producers: dict[str, Any]):
    """Walk up through shape-preserving ops to the MatMul/Gemm that produced a value."""
    for _ in range(4):
        if node is None:
            return None
        if node.op_type in ("MatMul", "Gemm"):
            return node
        if node.op_type not in ("Identity", "Cast", "Reshape", "Squeeze", "Flatten"):
            return None
        node = producers.get(node.input[0])
    return None


# ----------------------------------------------------------------------------- quantizers
def preprocess_for_quantization(src: Path, dst: Path) -> Path:
    """ORT's recommended pre-pass: symbolic shape inference + graph optimisation (``quant_pre_process``)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
    return Path(dst)


def quantize_static_qdq(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]], settings: QuantSettings,
                        work_dir: Path) -> QuantResult:
    """Static int8 QDQ quantization of ``src`` calibrated on ``feeds`` (module docstring)."""
    onnx = require("onnx")
    require("onnxruntime")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not feeds:
        raise ValueError("static quantization needs calibration data; got none")
    prepared = preprocess_for_quantization(src, Path(work_dir) / f"{Path(src).stem}.prep.onnx")
    model = onnx.load(str(prepared))
    name_nodes(model)
    onnx.save_model(model, str(prepared))
    groups = node_groups(model)
    excluded = {g: groups[g] for g in settings.keep_float if groups[g]}
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile, "distribution": CalibrationMethod.Distribution}
    extra: dict[str, Any] = {"ActivationSymmetric": settings.symmetric, "WeightSymmetric": True}
    if settings.calibration == "percentile":
        extra["CalibPercentile"] = 99.999
    quantize_static(
        str(prepared), str(dst), FeedReader(feeds), quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(settings.op_types) if settings.op_types else None,
        per_channel=settings.per_channel, reduce_range=settings.reduce_range,
        activation_type=QuantType.QInt8 if settings.symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
        nodes_to_exclude=[n for names in excluded.values() for n in names],
        calibrate_method=method[settings.calibration], extra_options=extra,
    )
    _finish(dst)
    n = sum(len(next(iter(f.values()))) for f in feeds)
    return QuantResult(Path(dst), "static", settings.to_dict(), excluded, n)


def quantize_dynamic_int8(src: Path, dst: Path, per_channel: bool = False, reduce_range: bool = True) -> QuantResult:
    """Dynamic int8 (weights int8, activation scales per batch) of the MatMul/Gemm weights and the
    token-embedding table (Gather)."""
    require("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), op_types_to_quantize=list(DYNAMIC_OP_TYPES), per_channel=per_channel,
                     reduce_range=reduce_range, weight_type=QuantType.QInt8)
    _finish(dst)
    return QuantResult(Path(dst), "dynamic", {"op_types": list(DYNAMIC_OP_TYPES), "per_channel": per_channel,
                                              "reduce_range": reduce_range, "weights": "int8"})


def convert_fp16(src: Path, dst: Path) -> QuantResult:
    """float16 weights and compute, float32 inputs/outputs."""
    onnx = require("onnx")
    require("onnxruntime")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    topological_sort(model)
    compact_names(model)
    save_checked(model, Path(dst))
    return QuantResult(Path(dst), "fp16", {"keep_io_types": True})


def _finish(path: Path) -> None:
    """Compact names, pin the IR version, check, save (every derived graph)."""
    onnx = require("onnx")
    model = onnx.load(str(path))
    compact_names(model)
    save_checked(model, Path(path))
