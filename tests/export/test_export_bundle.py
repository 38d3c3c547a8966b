"""The bundle writer: atomic write, sha256 of every file, and verify_bundle refusing every tampering."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from edge_runtime.schema import Manifest, TowerEntry, model_file_name, tower_io
from export.bundle import BundleWriter, labels_entry, sha256_file, verify_bundle
from hybridssl.data.synthetic_text import class_prompts
from hybridssl.evaluation.heldout import PROMPT_TEMPLATES
from hybridssl.preprocessing import ImageSpec, PreprocessSpec

SPEC = PreprocessSpec(image=ImageSpec(size=2, resize=2))
IO = tower_io("image", SPEC, 4)
MANIFEST = Manifest(target="onnx", precision="fp32", embed_dim=4, preprocessing=SPEC.to_dict(),
                    modalities={"image": TowerEntry({"model": "image.onnx"}, "onnxruntime", "fp32",
                                                    inputs=IO.inputs, outputs=IO.outputs)})


def graph_bytes(tag: str = "graph") -> bytes:
    """A real (tiny) ONNX graph: the device reader parses every listed .onnx file."""
    from onnx import TensorProto, helper

    node = helper.make_node("ReduceMean", ["pixels"], ["embedding"], axes=[2, 3], keepdims=0, name=tag)
    graph = helper.make_graph([node], tag, [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 3, 2, 2])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()


def _write(out, files=None):
    with BundleWriter(out) as w:
        for name, data in (files or {"image.onnx": graph_bytes()}).items():
            w.path(name).write_bytes(data)
        w.commit(MANIFEST, {"steps": []})
    return out


def test_sha256_matches_hashlib(tmp_path):
    data = bytes(range(256)) * 5000
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f", chunk=1000) == hashlib.sha256(data).hexdigest()


def test_commit_lists_every_file_with_its_sha(tmp_path):
    out = _write(tmp_path / "b")
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == {"image.onnx", "report.json"}
    assert manifest["files"]["image.onnx"] == hashlib.sha256(graph_bytes()).hexdigest()
    assert manifest["created"].endswith("Z") and verify_bundle(out)["target"] == "onnx"
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_a_failure_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with BundleWriter(tmp_path / "b") as w:
            w.path("image.onnx").write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="which the manifest's files does not list"):   # manifest points at nothing
        _write(tmp_path / "c", {"other.onnx": graph_bytes()})
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_without_overwrite(tmp_path):
    _write(tmp_path / "b")
    with pytest.raises(FileExistsError, match="already exists"):
        _write(tmp_path / "b")
    with BundleWriter(tmp_path / "b", overwrite=True) as w:
        w.path("image.onnx").write_bytes(graph_bytes("new"))
        w.commit(MANIFEST, {})
    assert (tmp_path / "b" / "image.onnx").read_bytes() == graph_bytes("new") and [p.name for p in tmp_path.iterdir()] == ["b"]
    with BundleWriter(tmp_path / "d") as w, pytest.raises(ValueError, match="invalid bundle file name"):
        w.path("../escape")


@pytest.mark.parametrize("tamper,message", [
    (lambda b: (b / "image.onnx").write_bytes(b"evil"), "image.onnx was modified"),
    (lambda b: (b / "image.onnx").unlink(), "image.onnx is listed in the manifest but missing"),
    (lambda b: (b / "extra.bin").write_bytes(b"x"), "not listed in the manifest: extra.bin"),
    (lambda b: _edit(b, format_version=2), "unsupported format_version 2"),
    (lambda b: (b / "manifest.json").write_text("{"), "not valid JSON"),
    (lambda b: (b / "manifest.json").unlink(), "not a bundle"),
])
def test_verify_refuses_tampering(tmp_path, tamper, message):
    out = _write(tmp_path / "b")
    tamper(out)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        verify_bundle(out)


def _edit(bundle, **changes):
    m = json.loads((bundle / "manifest.json").read_text())
    m.update(changes)
    (bundle / "manifest.json").write_text(json.dumps(m))


def test_real_bundle_copy_is_verified_and_tampering_caught(ort_bundle, tmp_path):
    out, _ = ort_bundle
    copy = shutil.copytree(out, tmp_path / "copy")
    assert verify_bundle(copy)["precision"] == "int8"
    with open(copy / "text.int8.onnx", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01")
    with pytest.raises(ValueError, match="text.int8.onnx was modified"):
        verify_bundle(copy)


def test_file_names():
    assert model_file_name("image", "onnx", "fp32") == {"model": "image.onnx"}
    assert model_file_name("text", "onnxruntime", "int8") == {"model": "text.int8.onnx"}
    assert model_file_name("audio", "openvino", "fp16") == {"model": "audio.fp16.xml", "weights": "audio.fp16.bin"}
    assert model_file_name("image", "tensorrt", "fp16") == {"model": "image.fp16.plan"}
    with pytest.raises(ValueError):
        model_file_name("image", "coreml", "fp32")


def test_labels_from_builtin_and_generic_prompts():
    shape = labels_entry(class_prompts("shape"))
    assert shape.names[:2] == ["circle", "square"] and len(shape.names) == 8
    assert shape.templates == ["a {}", "a picture of a {}", "a drawing of a {}"]
    assert shape.prompts["circle"][3] == "a disc"
    generic = labels_entry({n: [t.format(n) for t in PROMPT_TEMPLATES] for n in ("cat", "dog")})
    assert generic.templates == list(PROMPT_TEMPLATES)
    assert labels_entry(None) is None and labels_entry({}) is None


def test_the_manifest_carries_the_learned_logit_scale(ort_bundle, tiny_run):
    """On-device zero-shot probabilities use the run's own 1/temperature, not a default of 100."""
    import math

    from safetensors.numpy import load_file

    from edge_runtime.model import EdgeModel

    out, _ = ort_bundle
    last = sorted((tiny_run / "checkpoints").glob("step_*"))[-1]
    expected = min(max(math.exp(float(load_file(str(last / "model.safetensors"))["temperature.log_scale"])), 1.0), 100.0)
    manifest = verify_bundle(out)
    assert manifest["logit_scale"] == pytest.approx(expected, abs=1e-4) and manifest["logit_scale"] != 100.0
    assert EdgeModel.load(out, modalities=["text"], warmup=False).logit_scale == manifest["logit_scale"]


def test_static_shape_copies_for_mobile_execution_providers(tiny_run, tmp_path, fast):
    """--static-shapes 1,4: fixed-batch copies of every shipped .onnx tower, listed and verified,
    numerically the dynamic graph, documented in the bundle's README with the benchmark_app command."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from edge_runtime.bundle import read_bundle
    from export.api import export_run

    out = tmp_path / "static"
    report = export_run(tiny_run, out, "onnx", modalities=["image", "text"], static_batches=(4, 1), **fast)
    manifest = verify_bundle(out)
    read_bundle(out)
    image = manifest["modalities"]["image"]
    assert image["static"] == {"1": {"model": "image.b1.onnx"}, "4": {"model": "image.b4.onnx"}}
    graph = onnx.load(str(out / "image.b4.onnx")).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [4, 3, 32, 32]
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == [4, 16]
    assert {r["file"] for r in report["static_shapes"]} == {"image.b1.onnx", "image.b4.onnx", "text.b1.onnx", "text.b4.onnx"}
    assert max(r["max_abs_diff"] for r in report["static_shapes"]) <= 1e-5
    session = ort.InferenceSession(str(out / "text.b1.onnx"), providers=["CPUExecutionProvider"])
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

    with pytest.raises(InvalidArgument):  # the batch is fixed: a batch of 2 is refused by the graph itself
        session.run(None, {"input_ids": np.ones((2, 24), np.int64), "attention_mask": np.ones((2, 24), np.int64)})
    readme = (out / "README.md").read_text()
    assert "benchmark_app -m image.onnx" in readme and 'pixels[1,3,32,32]' in readme and "image.b4.onnx" in readme
    with pytest.raises(ValueError, match="static shapes are written for the onnx and onnxruntime targets"):
        export_run(tiny_run, tmp_path / "ov", "openvino", static_batches=(1,), **fast)
