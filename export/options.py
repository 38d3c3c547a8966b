"""What an export can be told (:class:`ExportOptions`) and the target/precision check."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from edge_runtime.schema import TARGETS
from export.onnx_graph import DEFAULT_OPSET, EXPORTERS
from export.quantize_ort import CALIBRATION_METHODS, DEFAULT_KEEP_FLOAT, QUANT_OP_TYPES, QuantSettings
from export.static_shapes import check_batches
from export.tensorrt_graph import BatchProfile


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
    from export.targets import TARGET_STEPS

    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}; got {target!r}")
    offered = TARGET_STEPS[target].precisions
    if precision is not None and precision not in offered:
        raise ValueError(f"target {target} offers precision {' / '.join(offered)}; got {precision!r}"
                         + (" (use --target onnxruntime for int8/fp16 ONNX graphs)" if target == "onnx" else ""))
