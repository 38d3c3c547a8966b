"""Corrupt, mismatched or badly specified exports fail early with one clear message."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from export.api import ExportOptions, export_run
from hybridssl.checkpoint import write_checksums


def _copy(run, tmp_path):
    return shutil.copytree(run, tmp_path / "run")


def _weights(run):
    return sorted((run / "checkpoints").glob("step_*"))[-1] / "model.safetensors"


def test_missing_run_or_checkpoint(tiny_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_run(tmp_path / "nowhere", tmp_path / "b")
    run = _copy(tiny_run, tmp_path)
    shutil.rmtree(run / "checkpoints")
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        export_run(run, tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        export_run(tiny_run, tmp_path / "b", checkpoint="step_999999")
    assert not (tmp_path / "b").exists()


def test_truncated_weights(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path)
    path = _weights(run)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="is corrupt"):
        export_run(run, tmp_path / "b")


def test_tampered_weights_with_non_finite_values(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path)
    path = _weights(run)
    sd = load_file(str(path))
    key = next(k for k in sd if k.endswith("heads.image.weight"))
    sd[key] = torch.full_like(sd[key], float("nan"))
    save_file(sd, str(path))
    write_checksums(path.parent)  # a checkpoint that holds NaN weights, not a corrupt file
    with pytest.raises(ValueError, match="weights hold non-finite values .*heads.image.weight"):
        export_run(run, tmp_path / "b")


def test_weights_that_do_not_match_the_config(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path)
    path = _weights(run)
    sd = load_file(str(path))
    sd.pop(next(k for k in sd if k.endswith("heads.audio.weight")))
    save_file(sd, str(path))
    write_checksums(path.parent)
    with pytest.raises(ValueError, match="does not match its config"):
        export_run(run, tmp_path / "b")


def test_modalities_the_run_does_not_have(tiny_run, tmp_path):
    with pytest.raises(ValueError, match="unknown modalities"):
        export_run(tiny_run, tmp_path / "b", modalities=["video"])
    run = _copy(tiny_run, tmp_path)
    from hybridssl.checkpoint import read_state

    folder = _weights(run).parent
    state = read_state(folder)
    state["modalities"] = ["image", "text"]
    sd = {k: v for k, v in load_file(str(folder / "model.safetensors")).items() if ".audio" not in k}
    save_file(sd, str(folder / "model.safetensors"))
    import json

    (folder / "state.json").write_text(json.dumps(state))
    write_checksums(folder)
    with pytest.raises(ValueError, match=r"has no audio tower \(its towers: image, text\)"):
        export_run(run, tmp_path / "b", modalities=["image", "audio"])


@pytest.mark.parametrize("kwargs,message", [
    ({"target": "coreml"}, "target must be one of"),
    ({"target": "onnx", "precision": "int8"}, "use --target onnxruntime"),
    ({"target": "tensorrt", "precision": "fp32"}, "offers precision fp16 / int8"),
    ({"max_drop": -1}, "max_drop must be"),
    ({"max_drop": float("nan")}, "max_drop must be"),
    ({"calibration": "median"}, "calibration must be one of"),
    ({"calibration_size": 0}, "calibration_size must be positive"),
    ({"eval_size": 1}, "eval_size must be at least 2"),
    ({"exporter": "jit"}, "exporter must be one of"),
    ({"keep_float": ["softmax"]}, "unknown keep-float groups"),
    ({"trt_profile": (8, 1, 4)}, "1 ≤ min ≤ opt ≤ max"),
])
def test_bad_options(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        export_run(tmp_path / "never-read", tmp_path / "b", **kwargs)


def test_options_record_themselves():
    d = ExportOptions(calibration="entropy", keep_float=["attention", "stem"]).to_dict()
    assert d["calibration"] == "entropy" and d["keep_float"] == ("attention", "stem") and d["opset"] == 17
    assert d["trt_profile"] == {"min": 1, "opt": 8, "max": 64} and d["calibration_data"] == "the run's training split"
