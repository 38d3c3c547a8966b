"""OpenVINO IR of a tower graph: fp32, fp16 (compressed weights) and int8 through NNCF.

* IR = ``ov.convert_model(<tower>.onnx)`` → ``ov.save_model(path.xml, compress_to_fp16=…)``: an
  ``.xml`` topology and a ``.bin`` of weights. fp16 stores fp16 weights (half the size); the CPU
  plugin decompresses them and computes in f32, so its accuracy equals fp32 to ~1e-7.
* int8 = ``nncf.quantize`` (post-training: fake-quantize nodes whose ranges come from real
  preprocessed training items, then fast bias correction) with ``model_type=TRANSFORMER`` — NNCF's
  transformer scheme, which leaves LayerNorm, Softmax, the residual adds and the final L2
  normalisation in float — and SmoothQuant switched off. Measured on the ``small`` teacher (cosine
  to the fp32 graph, min / mean over 256 held-out items):

  ====================================  ===============  ===============  ===============
  NNCF settings                         image            text             audio
  ====================================  ===============  ===============  ===============
  default (performance preset)          0.9961 / 0.9998  −0.035 / 0.604  0.9991 / 0.9999
  mixed preset                          0.9982 / 0.9999  0.794 / 0.949    0.9984 / 0.9999
  TRANSFORMER (SmoothQuant on)          0.947 / 0.990    0.9998 / 1.0000  0.985 / 0.995
  **TRANSFORMER, SmoothQuant off**      0.9987 / 1.0000  0.9998 / 1.0000  0.9999 / 1.0000
  ====================================  ===============  ===============  ===============

  The generic presets break the text tower (they quantize the attention-mask path), SmoothQuant's
  activation→weight scale migration hurts the patch towers; the chosen setting is best on all three.
* Size (benchmarks/export.py): the int8 ``.bin`` holds 26–27 % of the fp32 weight bytes, but the XML
  topology, which spells out every FakeQuantize, adds 0.2 MB per tower of the small teacher and 0.73 MB
  for MobileViT-XXS, so the int8 IR files are 32 % (teacher) and 39 % (student) of the fp32 IR files;
  ONNX Runtime's QDQ files are 27 %.
* ``accuracy_control=True`` runs ``nncf.quantize_with_accuracy_control`` instead: quantize, then
  revert the most harmful quantized ops to float until the tower's validation metric is within
  ``max_drop`` points. The per-tower metric (:func:`retrieval_metric`) is the R@1 (%) of this tower's
  embeddings of held-out items against the *PyTorch* embeddings of a partner modality of the same
  items (text for image/audio, image for text), so it is in the same units as the accuracy guard.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.openvino_core import core, preserve_signal_stack
from export.backends import require
from hybridssl.evaluation.retrieval import first_correct_ranks

SUBSET_SIZE = 300


def convert_ir(onnx_path: Path, xml_path: Path, fp16: bool = False) -> dict[str, str]:
    """Tower ONNX graph → OpenVINO IR; returns ``{"model": xml name, "weights": bin name}``."""
    ov = require("openvino")
    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(xml_path), compress_to_fp16=fp16)
    return {"model": Path(xml_path).name, "weights": Path(xml_path).with_suffix(".bin").name}


def _nncf_settings() -> dict[str, Any]:
    nncf = require("nncf")
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    no_smooth_quant = AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1))
    return {"model_type": nncf.ModelType.TRANSFORMER, "advanced": no_smooth_quant}


def quantize_ir(xml_path: Path, out_xml: Path, feeds: list[dict[str, np.ndarray]],
                validation: tuple[list[dict[str, np.ndarray]], Callable[[np.ndarray], tuple[float, list[float]]]] | None = None,
                max_drop: float = 1.0) -> dict[str, Any]:
    """NNCF int8 of the IR at ``xml_path`` calibrated on ``feeds`` (batches); with ``validation`` =
    (single-item feeds, metric of their stacked embeddings → (points, per-item values)), accuracy
    control. Returns the settings for the report."""
    ov = require("openvino")
    nncf = require("nncf")
    if not feeds:
        raise ValueError("NNCF quantization needs calibration data; got none")
    model = core().read_model(str(xml_path))
    n = sum(len(next(iter(f.values()))) for f in feeds)
    s = _nncf_settings()
    info: dict[str, Any] = {"tool": f"nncf {nncf.__version__}", "model_type": "transformer", "smooth_quant": False,
                            "calibration_items": n, "accuracy_control": validation is not None}
    calibration = nncf.Dataset(feeds)
    with preserve_signal_stack():  # NNCF makes and drops Cores of its own
        q = _quantize(nncf, model, calibration, feeds, s, validation, max_drop)
    if validation is not None:
        info.update({"max_drop": float(max_drop), "validation_items": len(validation[0])})
    ov.save_model(q, str(out_xml), compress_to_fp16=False)
    return info


def _quantize(nncf: Any, model: Any, calibration: Any, feeds: list[dict[str, np.ndarray]], s: dict[str, Any],
              validation: tuple[list[dict[str, np.ndarray]], Callable[[np.ndarray], tuple[float, list[float]]]] | None,
              max_drop: float) -> Any:
    if validation is None:
        return nncf.quantize(model, calibration, subset_size=min(SUBSET_SIZE, len(feeds)), model_type=s["model_type"],
                             advanced_parameters=s["advanced"])
    items, metric = validation

    def validation_fn(compiled, data) -> tuple[float, list[float]]:
        out = compiled.output(0)
        emb = np.concatenate([np.asarray(compiled(item)[out], dtype=np.float32) for item in data])   # (n, E)
        return metric(emb)

    return nncf.quantize_with_accuracy_control(
        model, calibration, nncf.Dataset(items), validation_fn, max_drop=float(max_drop),
        drop_type=nncf.DropType.ABSOLUTE, subset_size=min(SUBSET_SIZE, len(feeds)), model_type=s["model_type"],
        advanced_quantization_parameters=s["advanced"])


def retrieval_metric(partner: np.ndarray, keys: list[str]) -> Callable[[np.ndarray], tuple[float, list[float]]]:
    """metric(emb (n, E)) = R@1 (%) of ``emb`` rows as queries against the fixed ``partner`` (n, E)
    gallery, matched by ``keys``; per-item values are 100·[rank = 1]."""
    def metric(emb: np.ndarray) -> tuple[float, list[float]]:
        ranks, _ = first_correct_ranks(emb, partner, keys, keys)                     # (n,)
        hits = [100.0 * float(r <= 1) for r in ranks]
        return float(np.mean(hits)), hits

    return metric
