"""TensorRT: the graph check and its one-line error everywhere; a real engine where TensorRT and a GPU exist."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.schema import tower_io
from export.api import export_run
from export.backends import available
from export.tensorrt_backend import (
    SUPPORTED_OPS,
    BatchProfile,
    TensorRTUnavailable,
    check_graph,
    gpu_name,
    summarize_problems,
)
from hybridssl.preprocessing import PreprocessSpec

HAS_TRT_GPU = available("tensorrt") and gpu_name() is not None
WHY = "TensorRT is not installed" if not available("tensorrt") else "no NVIDIA GPU found"


def _io(m: str):
    spec = PreprocessSpec.from_dict({"image": {"size": 32, "resize": 32}, "audio": {"n_mels": 32, "clip_seconds": 0.5},
                                     "text": {"max_length": 24}})
    return tower_io(m, spec, 16)


@pytest.mark.parametrize("m", ["image", "text", "audio"])
def test_fp32_graphs_pass_the_tensorrt_check(ort_bundle, m):
    out, _ = ort_bundle
    check = check_graph(out / f"{m}.onnx", _io(m), BatchProfile(1, 4, 16))
    assert check["ok"], check["problems"]
    assert check["unsupported_ops"] == [] and set(check["ops"]) <= SUPPORTED_OPS
    first = _io(m).inputs[0]
    assert check["profile"]["batch"] == {"min": 1, "opt": 4, "max": 16}
    assert check["profile"]["shapes"][first.name]["max"] == [16, *first.shape[1:]]


def test_dynamic_int8_and_asymmetric_qdq_graphs_are_refused(ort_bundle):
    out, _ = ort_bundle
    text = check_graph(out / "text.int8.onnx", _io("text"))
    assert not text["ok"] and {"DynamicQuantizeLinear", "MatMulInteger"} <= set(text["unsupported_ops"])
    image = check_graph(out / "image.int8.onnx", _io("image"))       # uint8 activations, non-zero zero points
    assert not image["ok"] and "zero point" in " ".join(image["problems"])
    line = summarize_problems({"text.int8": text, "image.int8": image})
    assert "\n" not in line and line.startswith("text.int8: unsupported op(s)")


def test_static_non_batch_dims_are_required(ort_bundle, tmp_path):
    import onnx

    out, _ = ort_bundle
    model = onnx.load(str(out / "image.onnx"))
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    onnx.save(model, str(tmp_path / "dyn.onnx"))
    check = check_graph(tmp_path / "dyn.onnx", _io("image"))
    assert not check["ok"] and "dynamic axes [0, 2]" in check["problems"][0]


def test_bad_profile_is_refused():
    with pytest.raises(ValueError, match="1 ≤ min ≤ opt ≤ max"):
        BatchProfile(4, 2, 8)


@pytest.mark.skipif(HAS_TRT_GPU, reason="TensorRT and a GPU are present: the engine test runs instead")
def test_tensorrt_target_without_tensorrt_is_one_line(tiny_run, tmp_path, fast):
    with pytest.raises(TensorRTUnavailable) as err:
        export_run(tiny_run, tmp_path / "b", "tensorrt", "fp16", modalities=["image"], **fast)
    msg = str(err.value)
    assert "\n" not in msg and ("pip install 'hssl[tensorrt]'" in msg or "no NVIDIA GPU found" in msg)
    assert "passed the TensorRT check" in msg and "1/8/64" in msg
    assert not (tmp_path / "b").exists() and [p.name for p in tmp_path.iterdir()] == []


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRT_GPU, reason=f"{WHY}: TensorRT engines need TensorRT and an NVIDIA GPU")
def test_tensorrt_engines_match_pytorch(tiny_run, tmp_path, fast):
    from export.bundle import verify_bundle
    from export.tensorrt_backend import TensorRTRunner
    from export.towers import example_feeds, torch_embed
    from hybridssl.runs import load_run

    report = export_run(tiny_run, tmp_path / "b", "tensorrt", **fast)
    manifest = verify_bundle(tmp_path / "b")
    assert manifest["modalities"]["image"]["files"]["model"].endswith(".plan")
    steps = {s["step"]: s for s in report["steps"]}
    assert all(c["min"] > 0.999 for c in steps["tensorrt-fp16"]["cosine"].values())
    run = load_run(tiny_run)
    for m in ("image", "text", "audio"):
        feeds = example_feeds(m, run.spec, run.tokenizer, batch=3)
        got = TensorRTRunner(tmp_path / "b" / f"{m}.fp16.plan", 64)(feeds)
        ref = torch_embed(run.model, m, feeds)
        cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
        assert got.shape == (3, 16) and cos.min() > 0.999, m
