"""The openvino target: IR fp32 / fp16 and NNCF int8, reloaded by OpenVINO and compared with PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from export.bundle import verify_bundle
from export.towers import example_feeds, torch_embed
from hybridssl.runs import load_run

ov = pytest.importorskip("openvino", reason="OpenVINO is not installed: pip install 'hssl[openvino]'")
pytest.importorskip("nncf", reason="NNCF is not installed: pip install 'hssl[openvino]'")


@pytest.fixture(scope="module")
def ov_bundle(tiny_run, tmp_path_factory, fast):
    from export.api import export_run

    out = tmp_path_factory.mktemp("ov") / "bundle"
    return out, export_run(tiny_run, out, "openvino", modalities=["image", "text"], **fast)


def test_openvino_bundle(ov_bundle):
    out, report = ov_bundle
    manifest = verify_bundle(out)
    assert manifest["target"] == "openvino" and manifest["precision"] == "int8"
    assert manifest["modalities"]["image"]["files"] == {"model": "image.int8.xml", "weights": "image.int8.bin"}
    assert manifest["modalities"]["text"]["backend"] == "openvino"
    assert manifest["variants"]["text"]["fp16"]["files"] == {"model": "text.fp16.xml", "weights": "text.fp16.bin"}
    assert not any(f.endswith(".onnx") for f in manifest["files"])
    steps = {s["step"]: s for s in report["steps"]}
    assert list(steps) == ["export", "optimize", "openvino-fp32", "openvino-fp16", "openvino-int8"]
    for name in ("openvino-fp32", "openvino-fp16"):
        assert all(c["min"] >= 0.9999 for c in steps[name]["cosine"].values()), name
    assert all(c["min"] > 0.99 for c in steps["openvino-int8"]["cosine"].values())
    assert steps["openvino-int8"]["quantization"]["image"]["model_type"] == "transformer"
    sizes = {s: steps[s]["files"]["image"]["bytes"] for s in steps if s.startswith("openvino")}
    assert sizes["openvino-int8"] < sizes["openvino-fp32"] and sizes["openvino-fp16"] < sizes["openvino-fp32"]


@pytest.mark.parametrize("suffix,tol", [("", 1e-5), (".fp16", 1e-4), (".int8", 1e-2)])
def test_ir_runs_in_openvino_like_pytorch(ov_bundle, tiny_run, suffix, tol):
    from export.backends import OpenVinoRunner

    out, _ = ov_bundle
    run = load_run(tiny_run)
    for m in ("image", "text"):
        feeds = example_feeds(m, run.spec, run.tokenizer, batch=3, seed=7)
        ref = torch_embed(run.model, m, feeds)
        got = OpenVinoRunner(out / f"{m}{suffix}.xml", threads=1)(feeds)
        cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
        assert got.shape == (3, 16) and cos.min() >= 1 - tol, (m, suffix, cos)


def test_nncf_accuracy_control(tiny_run, tmp_path, fast):
    from export.api import export_run

    report = export_run(tiny_run, tmp_path / "b", "openvino", "int8", modalities=["audio", "text"],
                        accuracy_control=True, **fast)
    step = next(s for s in report["steps"] if s["step"] == "openvino-int8")
    assert step["passed"] and step["drop"] <= 10.0
    q = step["quantization"]
    assert q["audio"]["accuracy_control"] and q["audio"]["validation_items"] == 48 and q["text"]["max_drop"] == 10.0
    assert report["settings"]["accuracy_control"] is True


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_the_runtime_computes_at_the_precision_the_bundle_says(ov_bundle, precision):
    """Every OpenVINO tower entry names its inference precision (f32: what the parity gate measured);
    the runtime compiles with it on any CPU (the plugin's default is bf16 where AMX exists) and so
    gives the exporter's numbers to float rounding."""
    from edge_runtime.model import EdgeModel
    from export.backends import OpenVinoRunner

    out, _ = ov_bundle
    manifest = verify_bundle(out)
    assert {e["inference_precision"] for e in manifest["modalities"].values()} == {"f32"}
    edge = EdgeModel.load(out, backend="openvino", precision=precision, threads=1, modalities=["image"])
    compiled = edge.towers["image"].backend.compiled
    assert "float32" in str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    feeds = {"pixels": np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)}
    name = edge.towers["image"].files.model
    np.testing.assert_allclose(edge.towers["image"].backend.run(feeds), OpenVinoRunner(name, threads=1)(feeds),
                               rtol=0, atol=1e-5)
