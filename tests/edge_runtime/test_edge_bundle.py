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
