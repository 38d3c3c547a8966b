"""export_run end to end on a tiny run: the onnxruntime and onnx targets, reloaded by ONNX Runtime and
compared with PyTorch; the accuracy guard; nothing half-written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from export.api import export_run
from export.backends import OrtRunner
from export.bundle import sha256_file, verify_bundle
from export.parity import AccuracyGuardError
from export.towers import example_feeds, torch_embed
from hybridssl.runs import load_run


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _no_leftovers(parent) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def test_ort_bundle_layout_and_manifest(ort_bundle, tiny_run):
    out, report = ort_bundle
    manifest = verify_bundle(out)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["README.md", "manifest.json", "report.json", "tokenizer.json"]
                           + [f"{m}{s}.onnx" for m in ("image", "text", "audio") for s in ("", ".int8", ".fp16")])
    assert manifest["format"] == "hssl-bundle" and manifest["format_version"] == 1
    assert manifest["target"] == "onnxruntime" and manifest["precision"] == report["precision"] == "int8"
    assert manifest["embed_dim"] == 16
    assert set(manifest["files"]) == set(names) - {"manifest.json"}
    for name, digest in manifest["files"].items():
        assert digest == sha256_file(out / name)
    img = manifest["modalities"]["image"]
    assert img["files"] == {"model": "image.int8.onnx"} and img["backend"] == "onnxruntime"
    assert img["inputs"] == [{"name": "pixels", "shape": ["batch", 3, 32, 32], "dtype": "float32"}]
    assert img["outputs"] == [{"name": "embedding", "shape": ["batch", 16], "dtype": "float32"}]
    assert manifest["modalities"]["text"]["inputs"] == [
        {"name": "input_ids", "shape": ["batch", 24], "dtype": "int64"},
        {"name": "attention_mask", "shape": ["batch", 24], "dtype": "int64"}]
    assert manifest["modalities"]["audio"]["inputs"][0]["shape"] == ["batch", 1, 32, 51]
    assert manifest["variants"]["image"] == {"fp32": {"files": {"model": "image.onnx"}, "backend": "onnxruntime"},
                                             "fp16": {"files": {"model": "image.fp16.onnx"}, "backend": "onnxruntime"}}
    assert manifest["tokenizer"] == {"file": "tokenizer.json", "max_length": 24}
    assert (out / "tokenizer.json").read_text() == (tiny_run / "tokenizer.json").read_text()
    assert manifest["labels"]["names"] == ["blue", "green", "red", "yellow"]
    assert manifest["labels"]["templates"] and all(t.count("{}") == 1 for t in manifest["labels"]["templates"])
    assert manifest["preprocessing"]["image"]["size"] == 32 and manifest["preprocessing"]["audio"]["n_mels"] == 32
    src = manifest["source"]
    assert src["kind"] == "teacher" and src["step"] == 30 and src["run_dir"] == str(tiny_run.absolute())
    assert src["metrics"]["zero_shot_accuracy"]["image"] == pytest.approx(100.0)
    assert json.loads((out / "report.json").read_text())["steps"] == json.loads(json.dumps(report["steps"]))


def test_every_step_is_parity_checked(ort_bundle):
    _, report = ort_bundle
    steps = {s["step"]: s for s in report["steps"]}
    assert list(steps) == ["export", "optimize", "ort-int8", "ort-fp16"]
    for name in ("export", "optimize", "ort-fp16"):
        for m, c in steps[name]["cosine"].items():
            assert c["min"] >= 0.9999 and c["n"] > 0 and c["nonfinite"] == 0, (name, m, c)
    assert all(c["min"] > 0.99 for c in steps["ort-int8"]["cosine"].values())
    assert all(s["passed"] and s["drop"] <= 10.0 for s in steps.values())
    ref = report["reference"]["metrics"]
    assert ref["zero-shot image"] == pytest.approx(100.0) and ref["zero-shot audio"] == pytest.approx(100.0)
    assert set(steps["ort-int8"]["delta"]) == set(ref)
    q = steps["ort-int8"]["quantization"]
    assert q["text"]["kind"] == "dynamic" and q["image"]["kind"] == "static"
    assert q["image"]["settings"]["calibration"] == "minmax" and q["image"]["calibration_items"] == 64
    assert len(q["image"]["kept_float"]["attention"]) == 2 * 2        # Q·Kᵀ and softmax·V in each of 2 blocks
    sizes = {s: sum(f["bytes"] for f in steps[s]["files"].values()) for s in steps}
    assert sizes["ort-int8"] < sizes["ort-fp16"] < sizes["optimize"]


@pytest.mark.parametrize("name", ["image{}.onnx", "text{}.onnx", "audio{}.onnx"])
def test_bundle_graphs_match_pytorch_in_onnxruntime(ort_bundle, tiny_run, name):
    out, _ = ort_bundle
    run = load_run(tiny_run)
    m = name.split("{")[0]
    for batch in (1, 5):
        feeds = example_feeds(m, run.spec, run.tokenizer, batch=batch, seed=batch)
        ref = torch_embed(run.model, m, feeds)
        for suffix, tol in (("", 1e-5), (".fp16", 1e-3), (".int8", 2e-2)):
            got = OrtRunner(out / name.format(suffix))(feeds)
            assert got.shape == (batch, 16) and got.dtype == np.float32
            np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-3)
            assert _cos(ref, got).min() >= 1 - tol, (suffix, batch)


def test_onnx_target_is_the_fp32_graph(tiny_run, tmp_path, fast):
    report = export_run(tiny_run, tmp_path / "b", "onnx", modalities=["text", "image"], **fast)
    manifest = verify_bundle(tmp_path / "b")
    assert manifest["precision"] == "fp32" and manifest["variants"] is None
    assert sorted(manifest["modalities"]) == ["image", "text"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "README.md", "image.onnx", "manifest.json", "report.json", "text.onnx", "tokenizer.json"]
    assert [s["step"] for s in report["steps"]] == ["export", "optimize"]
    assert set(report["reference"]["metrics"]) == {"R@1 image->text", "R@1 text->image", "zero-shot image"}


def test_accuracy_guard_trips_on_broken_calibration(tiny_run, tmp_path, fast, constant_items):
    out = tmp_path / "bundle"
    with pytest.raises(AccuracyGuardError, match=r"ort-int8: accuracy guard tripped .* dropped .* points "
                                                 r"\(max allowed 10\); nothing was written"):
        export_run(tiny_run, out, "onnxruntime", "int8", calibration_data=constant_items, modalities=["image", "text"],
                   **fast)
    assert not out.exists()
    assert _no_leftovers(tmp_path) == []


def test_auto_precision_leaves_out_a_variant_over_the_limit(tiny_run, tmp_path, fast, constant_items):
    report = export_run(tiny_run, tmp_path / "b", "onnxruntime", calibration_data=constant_items,
                        modalities=["image", "text"], **fast)
    assert report["precision"] == "fp16" and report["shipped"] == ["fp32", "fp16"]
    assert "accuracy guard tripped" in report["rejected"]["int8"]
    int8 = next(s for s in report["steps"] if s["step"] == "ort-int8")
    assert not int8["passed"] and int8["drop"] > 10.0
    manifest = verify_bundle(tmp_path / "b")
    assert not any(".int8." in f for f in manifest["files"])
    assert manifest["modalities"]["image"]["files"] == {"model": "image.fp16.onnx"}


def test_existing_output_is_refused_then_replaced_with_overwrite(tiny_run, tmp_path, fast):
    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="already exists"):
        export_run(tiny_run, out, "onnx", modalities=["image"], **fast)
    assert (out / "keep.txt").read_text() == "x"
    export_run(tiny_run, out, "onnx", modalities=["image"], overwrite=True, **fast)
    assert not (out / "keep.txt").exists() and verify_bundle(out)["modalities"].keys() == {"image"}
    assert _no_leftovers(tmp_path) == []
