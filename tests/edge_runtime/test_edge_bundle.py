"""Bundle reading: the manifest contract of docs/bundle.md and sha256 tamper detection."""

from __future__ import annotations

import hashlib
import json

import pytest

from edge_runtime.bundle import BundleError, read_bundle, sha256_file


def _edit(bundle, fn):
    path = bundle / "manifest.json"
    m = json.loads(path.read_text())
    fn(m)
    path.write_text(json.dumps(m))


def test_reads_and_verifies_the_reference_bundle(edge_bundle):
    b = read_bundle(edge_bundle)
    assert b.modalities == ("image", "text", "audio")
    assert b.embed_dim == 16
    assert b.precisions("image") == ["fp32", "int8"] and b.precisions("text") == ["fp32"]
    assert b.tower("image", "int8").model.name == "image.int8.onnx"
    assert b.tower("image").model.name == "image.onnx"
    assert b.fingerprint == hashlib.sha256((edge_bundle / "manifest.json").read_bytes()).hexdigest()
    with pytest.raises(BundleError, match="no fp16 model of the text tower"):
        b.tower("text", "fp16")


def test_sha256_is_streamed_in_chunks(tmp_path):
    p = tmp_path / "f.bin"
    data = bytes(range(256)) * 1000
    p.write_bytes(data)
    assert sha256_file(p, chunk=4096) == hashlib.sha256(data).hexdigest()


def test_modified_file_is_refused(bundle_copy):
    with open(bundle_copy / "text.onnx", "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(BundleError, match="text.onnx was modified"):
        read_bundle(bundle_copy)
    read_bundle(bundle_copy, verify=False)  # structure alone is fine


@pytest.mark.parametrize("name", ["audio.onnx", "tokenizer.json", "report.json"])
def test_missing_file_is_refused(bundle_copy, name):
    (bundle_copy / name).unlink()
    with pytest.raises(BundleError, match=f"{name} is listed in the manifest but missing"):
        read_bundle(bundle_copy)


def test_referenced_but_unlisted_file_is_refused(bundle_copy):
    _edit(bundle_copy, lambda m: m["files"].pop("image.int8.onnx"))
    with pytest.raises(BundleError, match="image.int8.onnx.*does not list"):
        read_bundle(bundle_copy)
    _edit(bundle_copy, lambda m: m["files"].pop("tokenizer.json"))
    with pytest.raises(BundleError, match="tokenizer.json|does not list"):
        read_bundle(bundle_copy)


def test_unlisted_extra_files_are_ignored(bundle_copy):
    (bundle_copy / "notes.txt").write_text("hello")
    read_bundle(bundle_copy)


@pytest.mark.parametrize("edit,match", [
    (lambda m: m.update(format="other"), "format is 'other'"),
    (lambda m: m.update(format_version=2), "unsupported format_version 2"),
    (lambda m: m.update(format_version="1"), "unsupported format_version"),
    (lambda m: m.update(embed_dim=0), "embed_dim"),
    (lambda m: m.update(precision="fp8"), "precision"),
    (lambda m: m.update(modalities={}), "modalities"),
    (lambda m: m["modalities"].update(video=m["modalities"]["image"]), "unknown modality 'video'"),
    (lambda m: m["modalities"]["image"].update(inputs=[{"name": "pixels"}]), "modalities.image.inputs"),
    (lambda m: m["modalities"]["image"]["outputs"][0].update(shape=["batch", 7]), "embedding"),
    (lambda m: m["files"].update({"../evil.onnx": "0" * 64}), "not a plain relative path"),
    (lambda m: m["files"].update({"image.onnx": "xyz"}), "not a sha256"),
    (lambda m: m.update(tokenizer=None), "needs a tokenizer"),
    (lambda m: m["labels"].update(templates=["no placeholder"]), "labels.templates"),
    (lambda m: m["head"].update(output="nope"), "head.output 'nope'"),
    (lambda m: m.update(logit_scale=-1), "logit_scale"),
    (lambda m: m["variants"]["image"].update(fp8={}), "unknown precision"),
    (lambda m: m.pop("preprocessing"), "preprocessing"),
])
def test_malformed_manifests_are_refused(bundle_copy, edit, match):
    _edit(bundle_copy, edit)
    with pytest.raises(BundleError, match=match):
        read_bundle(bundle_copy)


def test_unreadable_or_missing_manifest(bundle_copy, tmp_path):
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_bundle(bundle_copy)
    (bundle_copy / "manifest.json").write_text('{"format": NaN}')
    with pytest.raises(BundleError, match="not valid JSON"):
        read_bundle(bundle_copy)
    (bundle_copy / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest.json is missing"):
        read_bundle(bundle_copy)
    with pytest.raises(BundleError, match="no such directory"):
        read_bundle(tmp_path / "nowhere")


def test_symlink_escaping_the_bundle_is_refused(bundle_copy, tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_bytes((bundle_copy / "report.json").read_bytes())
    (bundle_copy / "report.json").unlink()
    (bundle_copy / "report.json").symlink_to(outside)
    with pytest.raises(BundleError, match="outside the bundle"):
        read_bundle(bundle_copy)


def test_optional_fields_may_be_null_or_empty(bundle_copy):
    def edit(m):
        m.update(variants=None, head=None, labels={"names": ["a", "b"], "templates": [], "prompts": {"a": ["an a"]}})
        m.pop("logit_scale")

    _edit(bundle_copy, edit)
    b = read_bundle(bundle_copy)
    assert b.precisions("image") == ["fp32"]
    from edge_runtime.model import DEFAULT_LOGIT_SCALE, DEFAULT_TEMPLATES, EdgeModel

    model = EdgeModel.load(bundle_copy, backend="onnxruntime", threads=1, modalities=["text"])
    assert model.logit_scale == DEFAULT_LOGIT_SCALE
    assert model._prompts("a", None) == ["an a"] and model._prompts("b", None) == [t.format("b") for t in DEFAULT_TEMPLATES]


# ----------------------------------------------------------------------------- bounds (no abort, no MemoryError)
@pytest.mark.parametrize("edit,match", [
    (lambda m: m["tokenizer"].update(max_length=10 ** 9), "max_length"),
    (lambda m: m["modalities"]["image"]["inputs"][0].update(shape=["batch", 3, 100000, 100000]), "beyond the bounds"),
    (lambda m: m["modalities"]["image"]["inputs"][0].update(shape=["batch", 3, 60000, 60000]), "beyond the bounds"),
    (lambda m: m["modalities"]["image"]["inputs"][0].update(dtype="int64"), "the image tower takes float32"),
    (lambda m: m["modalities"]["text"]["inputs"][0].update(dtype="float32"), "the text tower takes int64"),
    (lambda m: m["modalities"]["image"].update(inference_precision="f64"), "inference_precision"),
])
def test_manifest_values_beyond_the_bounds_are_refused(bundle_copy, edit, match):
    _edit(bundle_copy, edit)
    with pytest.raises(BundleError, match=match):
        read_bundle(bundle_copy)


@pytest.mark.parametrize("section,values,match", [
    ("image", {"size": 50000, "resize": 50000}, "beyond the bounds"),
    ("audio", {"clip_seconds": 36000.0}, "beyond the bounds"),
    ("audio", {"n_mels": 100000}, "beyond the bounds"),
])
def test_preprocessing_beyond_the_bounds_is_a_bundle_error_before_warm_up(bundle_copy, section, values, match):
    from edge_runtime.model import EdgeModel

    _edit(bundle_copy, lambda m: m["preprocessing"][section].update(values))
    with pytest.raises(BundleError, match=match):
        EdgeModel.load(bundle_copy, backend="onnxruntime", threads=1, modalities=[section])


def test_a_deeply_nested_or_huge_manifest_is_refused(bundle_copy):
    path = bundle_copy / "manifest.json"
    m = json.loads(path.read_text())
    path.write_text(json.dumps({**m, "extra": "[" * 10}).replace('"extra": "[[[[[[[[[["', '"extra": ' + "[" * 100000 + "]" * 100000 + ', "x": "'))
    with pytest.raises(BundleError, match="nested deeper than 32"):
        read_bundle(bundle_copy)
    path.write_text(json.dumps({**m, "note": "{[" * 100}))  # brackets inside a string are text, not nesting
    read_bundle(bundle_copy)
    path.write_text(json.dumps({**m, "pad": "x" * (5 << 20)}))
    with pytest.raises(BundleError, match="too large for a manifest"):
        read_bundle(bundle_copy)


def test_onnx_external_data_must_be_listed_and_verified(bundle_copy):
    """A graph that reads its weights from another file: refused unless that file is listed (and so
    hashed); once listed, tampering with it is caught like any other file."""
    onnx = pytest.importorskip("onnx")
    from edge_runtime.model import EdgeModel
    from edge_runtime.onnx_refs import external_data_files

    model = onnx.load(str(bundle_copy / "image.onnx"))
    onnx.save_model(model, str(bundle_copy / "image.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="image.weights", size_threshold=0)
    assert external_data_files(bundle_copy / "image.onnx") == {"image.weights"}
    assert external_data_files(bundle_copy / "text.onnx") == set()

    def relist(m, with_weights):
        m["files"]["image.onnx"] = sha256_file(bundle_copy / "image.onnx")
        if with_weights:
            m["files"]["image.weights"] = sha256_file(bundle_copy / "image.weights")

    _edit(bundle_copy, lambda m: relist(m, False))
    with pytest.raises(BundleError, match="reads external data from image.weights"):
        read_bundle(bundle_copy)
    _edit(bundle_copy, lambda m: relist(m, True))
    EdgeModel.load(bundle_copy, backend="onnxruntime", threads=1, modalities=["image"])
    with open(bundle_copy / "image.weights", "r+b") as f:
        f.write(b"\x00\x00\x80\x7f")  # a weight becomes +inf
    with pytest.raises(BundleError, match="image.weights was modified"):
        read_bundle(bundle_copy)
