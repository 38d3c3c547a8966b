"""ONNX Runtime quantization: static QDQ with every calibration method, keep-float groups, dynamic
int8, fp16 — each result loaded by ONNX Runtime and compared with the fp32 graph on real items."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from export.backends import OrtRunner
from export.data import calibration_feeds, run_splits, split_feeds
from export.quantize_ort import (
    FeedReader,
    QuantSettings,
    convert_fp16,
    node_groups,
    quantize_dynamic_int8,
    quantize_static_qdq,
)
from hybridssl.runs import load_run


@pytest.fixture(scope="module")
def real(tiny_run):
    run = load_run(tiny_run)
    train, val = run_splits(run.cfg)
    feeds = {m: calibration_feeds(train, m, run.spec, run.tokenizer, 48) for m in ("image", "text", "audio")}
    held = {m: split_feeds(calibration_feeds(val, m, run.spec, run.tokenizer, 32), 32)[0] for m in ("image", "text")}
    return run, feeds, held


def _cos(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_calibration_feeds_are_real_preprocessed_items(real):
    run, feeds, _ = real
    img = np.concatenate([f["pixels"] for f in feeds["image"]])
    assert img.shape == (48, 3, 32, 32) and img.dtype == np.float32 and img.std() > 0.1
    text = feeds["text"][0]
    assert text["input_ids"].dtype == np.int64 and text["attention_mask"].dtype == np.int64
    assert set(np.unique(text["attention_mask"])) == {0, 1}
    mel = feeds["audio"][0]["log_mel"]
    assert mel.shape[1:] == (1, 32, 51)
    reader = FeedReader(feeds["image"])
    assert sum(1 for _ in iter(reader.get_next, None)) == len(feeds["image"])
    reader.rewind()
    assert reader.get_next() is feeds["image"][0]


def test_node_groups_find_attention_head_and_stem(ort_bundle):
    out, _ = ort_bundle
    groups = node_groups(onnx.load(str(out / "image.onnx")))
    assert len(groups["attention"]) == 4                     # 2 blocks × (Q·Kᵀ, softmax·V)
    assert len(groups["head"]) == 1 and len(groups["stem"]) == 1
    text_groups = node_groups(onnx.load(str(out / "text.onnx")))
    assert len(text_groups["attention"]) == 4 and text_groups["stem"] == []


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_static_qdq_each_calibration_method(ort_bundle, real, tmp_path, method):
    out, _ = ort_bundle
    _, feeds, held = real
    r = quantize_static_qdq(out / "image.onnx", tmp_path / "q.onnx", feeds["image"], QuantSettings(method), tmp_path)
    ref, got = OrtRunner(out / "image.onnx")(held["image"]), OrtRunner(r.path)(held["image"])
    assert _cos(ref, got).min() > 0.99
    ops = {n.op_type for n in onnx.load(str(r.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert r.to_dict()["settings"]["calibration"] == method and r.calibration_items == 48


def _float_fed(path) -> tuple[int, int]:
    """(Conv/MatMul nodes with no DequantizeLinear input, those with one) of a QDQ graph."""
    model = onnx.load(str(path))
    producers = {o: n for n in model.graph.node for o in n.output}
    fed = [any(i in producers and producers[i].op_type == "DequantizeLinear" for i in n.input)
           for n in model.graph.node if n.op_type in ("MatMul", "Conv")]
    return fed.count(False), fed.count(True)


@pytest.mark.parametrize("groups,kept", [((), 0), (("attention",), 4), (("attention", "head", "stem"), 6)])
def test_keep_float_groups_stay_float(ort_bundle, real, tmp_path, groups, kept):
    out, _ = ort_bundle
    _, feeds, _ = real
    r = quantize_static_qdq(out / "image.onnx", tmp_path / "q.onnx", feeds["image"], QuantSettings(keep_float=groups),
                            tmp_path)
    assert sum(len(v) for v in r.excluded.values()) == kept
    floating, quantized = _float_fed(r.path)
    assert floating == kept and quantized == 4 * 2 + 1 + 1 + 4 - kept   # qkv, proj, fc1, fc2 per block, head, stem


def test_symmetric_settings_give_zero_points_of_zero(ort_bundle, real, tmp_path):
    from onnx import numpy_helper

    out, _ = ort_bundle
    _, feeds, _ = real
    r = quantize_static_qdq(out / "image.onnx", tmp_path / "q.onnx", feeds["image"],
                            QuantSettings(symmetric=True, reduce_range=False), tmp_path)
    model = onnx.load(str(r.path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    zps = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)


def test_dynamic_int8_text_and_fp16(ort_bundle, real, tmp_path):
    out, _ = ort_bundle
    _, _, held = real
    ref = OrtRunner(out / "text.onnx")(held["text"])
    dyn = quantize_dynamic_int8(out / "text.onnx", tmp_path / "t8.onnx")
    assert _cos(ref, OrtRunner(dyn.path)(held["text"])).min() > 0.99
    assert (tmp_path / "t8.onnx").stat().st_size < 0.7 * (out / "text.onnx").stat().st_size
    half = convert_fp16(out / "text.onnx", tmp_path / "t16.onnx")
    model = onnx.load(str(half.path))
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [onnx.TensorProto.INT64] * 2
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    assert _cos(ref, OrtRunner(half.path)(held["text"])).min() > 0.9999


def test_bad_quantization_arguments():
    with pytest.raises(ValueError, match="calibration must be one of"):
        QuantSettings("median")
    with pytest.raises(ValueError, match="unknown keep-float groups"):
        QuantSettings(keep_float=("softmax",))
    with pytest.raises(ValueError, match="needs calibration data"):
        quantize_static_qdq("x.onnx", "y.onnx", [], QuantSettings(), ".")
