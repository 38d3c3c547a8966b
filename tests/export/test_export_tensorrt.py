"""TensorRT: the graph check and its one-line error everywhere; a real engine where TensorRT and a GPU exist."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.schema import tower_io
from export.api import export_run
from export.backends import available
from export.tensorrt_backend import TensorRTUnavailable, gpu_name
from export.tensorrt_graph import (
    SUPPORTED_OPS,
    BatchProfile,
    axis_ranges,
    check_graph,
    int32_inputs,
    profile_shapes,
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
def test_fp32_graphs_pass_the_tensorrt_check_once_their_inputs_are_int32(ort_bundle, tmp_path, m):
    out, _ = ort_bundle
    raw = check_graph(out / f"{m}.onnx", _io(m), BatchProfile(1, 4, 16))
    assert raw["ok"] == (m != "text")                                   # the bundle's token ids are int64
    if m == "text":
        assert raw["problems"] == ["int64 input(s) input_ids, attention_mask: TensorRT ≤ 8.6 has no int64 bindings "
                                   "(int32_inputs gives the engine int32 ones)"]
    check = check_graph(int32_inputs(out / f"{m}.onnx", tmp_path / "trt.onnx"), _io(m), BatchProfile(1, 4, 16))
    assert check["ok"], check["problems"]
    assert check["unsupported_ops"] == [] and set(check["ops"]) <= SUPPORTED_OPS
    first = _io(m).inputs[0]
    assert check["profile"]["batch"] == {"min": 1, "opt": 4, "max": 16}
    assert check["profile"]["shapes"][first.name]["max"] == [16, *first.shape[1:]]


def test_int32_inputs_embed_exactly_as_the_int64_graph(ort_bundle, tiny_run, tmp_path):
    import onnxruntime as ort

    from export.towers import example_feeds
    from hybridssl.runs import load_run

    out, _ = ort_bundle
    src, dst = out / "text.onnx", int32_inputs(out / "text.onnx", tmp_path / "text.trt.onnx")
    run = load_run(tiny_run)
    feeds = example_feeds("text", run.spec, run.tokenizer, batch=5)              # real captions, int64
    wide = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    narrow = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    assert [i.type for i in narrow.get_inputs()] == ["tensor(int32)", "tensor(int32)"]
    a = wide.run(None, feeds)[0]
    b = narrow.run(None, {k: v.astype(np.int32) for k, v in feeds.items()})[0]
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def _resize_graph(tmp_path, computed: bool):
    """x (batch, 3, 4, 4) → Resize ×2; the scales an initializer, or computed (scales + 0) in the graph."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    zero = numpy_helper.from_array(np.zeros(4, np.float32), "zero")
    nodes = [helper.make_node("Add", ["scales", "zero"], ["computed"])] if computed else []
    nodes.append(helper.make_node("Resize", ["pixels", "", "computed" if computed else "scales"], ["up"], mode="linear",
                                  name="upsample"))
    nodes.append(helper.make_node("ReduceMean", ["up"], ["embedding"], axes=[2, 3], keepdims=0))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 3, 4, 4])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 3])],
                              [scales, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    path = tmp_path / f"resize_{computed}.onnx"
    onnx.save(model, str(path))
    return path


def test_resize_with_computed_scales_is_refused(tmp_path):
    from edge_runtime.schema import TensorSpec, TowerIO

    io = TowerIO("image", (TensorSpec("pixels", ("batch", 3, 4, 4), "float32"),),
                 (TensorSpec("embedding", ("batch", 3), "float32"),))
    assert check_graph(_resize_graph(tmp_path, computed=False), io)["ok"]
    bad = check_graph(_resize_graph(tmp_path, computed=True), io)
    assert not bad["ok"] and bad["problems"] == ["1 Resize/Upsample node(s) with computed scales (upsample): TensorRT "
                                                 "needs constant scales (resize to sizes instead)"]


def test_sequence_towers_get_a_time_range_in_the_profile():
    spec = PreprocessSpec.from_dict({"sequences": {"imu": {"dim": 6, "max_frames": 90, "patch": 8}}})
    io = tower_io("seq_imu", spec, 16)
    axes = axis_ranges("seq_imu", spec)
    assert axes == {"time": (8, 96, 96)} and axis_ranges("image", spec) == {}
    shapes = profile_shapes(io, BatchProfile(1, 4, 16), axes)
    assert shapes == {"frames": {"min": [1, 8, 6], "opt": [4, 96, 6], "max": [16, 96, 6]},
                      "frame_mask": {"min": [1, 8], "opt": [4, 96], "max": [16, 96]}}
    with pytest.raises(ValueError, match="no range for dynamic axis time of the seq_imu tower"):
        profile_shapes(io, BatchProfile())


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
    assert not check["ok"] and "dynamic axes [2] that the bundle signature fixes" in check["problems"][0]


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
