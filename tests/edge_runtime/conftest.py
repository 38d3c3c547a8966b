"""Shared fixtures of the edge runtime tests: a tiny trained run (2 steps) and bundles built from it.

The bundle is written here by ``torch.onnx.export`` of the towers (wrappers taking the bundle
inputs of docs/bundle.md and returning ``model.embed(...)``) plus a manifest written exactly per
docs/bundle.md, because ``export.api.export_run`` did not exist yet when these tests were written.
The image tower also returns ``logits`` of a fixed linear head (to test the manifest's ``head``),
and an int8 variant (ONNX Runtime dynamic quantization) tests precision selection.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from hybridssl.app.train import train_run
from hybridssl.config import load_config
from hybridssl.runs import load_run

TINY = ["data.train_size=64", "data.val_size=32", "train.eval_size=32", "train.batch_size=8", "train.ckpt_every=0",
        "train.steps=2", "train.threads=1"]
TEMPLATES = ["a photo of a {}", "a {}"]


class _Image(torch.nn.Module):
    def __init__(self, model, head: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("head", head)

    def forward(self, pixels):
        emb = self.model.embed("image", pixels)
        return emb, emb @ self.head.T


class _Text(torch.nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model.embed("text", input_ids, attention_mask.bool())


class _Audio(torch.nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, log_mel):
        return self.model.embed("audio", log_mel)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _export(module, args, path: Path, inputs: list[str], outputs: list[str]) -> None:
    axes = {n: {0: "batch"} for n in inputs + outputs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=17, input_names=inputs,
                          output_names=outputs, dynamic_axes=axes)


def build_reference_bundle(run_dir: Path, out: Path, int8: bool = True) -> Path:
    """Write a bundle of ``run_dir`` into ``out`` (see the module docstring)."""
    loaded = load_run(run_dir)
    model, spec, E = loaded.model, loaded.spec, loaded.cfg.model.embed_dim
    out.mkdir(parents=True)
    names = list(loaded.state["label_names"])
    gen = torch.Generator().manual_seed(0)
    head = torch.randn(len(names), E, generator=gen)
    S, L = spec.image.size, spec.text.max_length
    M, T = spec.audio.n_mels, spec.audio.num_frames
    emb_out = {"name": "embedding", "shape": ["batch", E], "dtype": "float32"}
    towers = {
        "image": (_Image(model, head), (torch.zeros(2, 3, S, S),),
                  [{"name": "pixels", "shape": ["batch", 3, S, S], "dtype": "float32"}],
                  [emb_out, {"name": "logits", "shape": ["batch", len(names)], "dtype": "float32"}]),
        "text": (_Text(model), (torch.ones(2, L, dtype=torch.long), torch.ones(2, L, dtype=torch.long)),
                 [{"name": "input_ids", "shape": ["batch", L], "dtype": "int64"},
                  {"name": "attention_mask", "shape": ["batch", L], "dtype": "int64"}], [emb_out]),
        "audio": (_Audio(model), (torch.zeros(2, 1, M, T),),
                  [{"name": "log_mel", "shape": ["batch", 1, M, T], "dtype": "float32"}], [emb_out]),
    }
    modalities, variants = {}, {}
    for m, (module, args, ins, outs) in towers.items():
        _export(module.eval(), args, out / f"{m}.onnx", [i["name"] for i in ins], [o["name"] for o in outs])
        modalities[m] = {"precision": "fp32", "files": {"model": f"{m}.onnx"}, "backend": "onnxruntime",
                         "inputs": ins, "outputs": outs}
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(out / "image.onnx"), str(out / "image.int8.onnx"), weight_type=QuantType.QInt8)
        variants["image"] = {"int8": {"files": {"model": "image.int8.onnx"}, "backend": "onnxruntime"}}
    loaded.tokenizer.save(out / "tokenizer.json")
    (out / "report.json").write_text(json.dumps({"parity": "built by tests/edge_runtime/conftest.py"}))
    log_scale = float(loaded.state.get("logit_scale", 0.0)) or _logit_scale(run_dir)
    manifest = {
        "format": "hssl-bundle", "format_version": 1, "target": "onnx", "precision": "fp32", "embed_dim": E,
        "modalities": modalities, "variants": variants, "preprocessing": json.loads(json.dumps(spec.to_dict())),
        "tokenizer": {"file": "tokenizer.json", "max_length": L},
        "labels": {"names": names, "templates": TEMPLATES},
        "head": {"modality": "image", "output": "logits", "names": names},
        "logit_scale": log_scale,
        "files": {p.name: _sha(p) for p in sorted(out.iterdir())},
        "source": {"run_dir": str(run_dir), "kind": "teacher", "model": "hybrid", "step": int(loaded.state["step"])},
        "created": "2026-01-01T00:00:00Z", "hssl_version": "0.1.0",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


def _logit_scale(run_dir: Path) -> float:
    """exp(temperature.log_scale) of the last checkpoint, clamped like LearnableTemperature."""
    from safetensors.numpy import load_file

    ckpt = sorted((run_dir / "checkpoints").glob("step_*"))[-1]
    log_scale = float(load_file(str(ckpt / "model.safetensors"))["temperature.log_scale"])
    return float(min(max(math.exp(log_scale), 1.0), 100.0))


def convert_to_openvino(bundle: Path, out: Path) -> Path:
    """The same bundle with every tower as OpenVINO IR (target openvino), no variants."""
    import openvino as ov

    out.mkdir(parents=True)
    manifest = json.loads((bundle / "manifest.json").read_text())
    for m, entry in manifest["modalities"].items():
        ov.save_model(ov.convert_model(str(bundle / entry["files"]["model"])), str(out / f"{m}.xml"), compress_to_fp16=False)
        entry.update(files={"model": f"{m}.xml", "weights": f"{m}.bin"}, backend="openvino")
    for name in ("tokenizer.json", "report.json"):
        shutil.copy(bundle / name, out / name)
    manifest.update(target="openvino", variants={},
                    files={p.name: _sha(p) for p in sorted(out.iterdir())})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


@pytest.fixture(scope="session")
def edge_run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("edge_run") / "run"
    train_run(load_config("tiny", TINY), run)
    return run


@pytest.fixture(scope="session")
def edge_loaded(edge_run_dir):
    return load_run(edge_run_dir)


@pytest.fixture(scope="session")
def edge_bundle(edge_run_dir, tmp_path_factory) -> Path:
    return build_reference_bundle(edge_run_dir, tmp_path_factory.mktemp("edge_bundle") / "bundle")


@pytest.fixture(scope="session")
def edge_ov_bundle(edge_bundle, tmp_path_factory) -> Path:
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'hssl[openvino]')")
    return convert_to_openvino(edge_bundle, tmp_path_factory.mktemp("edge_ov") / "bundle")


@pytest.fixture(scope="session")
def edge_model(edge_bundle):
    from edge_runtime.model import EdgeModel

    return EdgeModel.load(edge_bundle, backend="onnxruntime", threads=1)


@pytest.fixture
def bundle_copy(edge_bundle, tmp_path) -> Path:
    """A private copy of the bundle that a test may tamper with."""
    return Path(shutil.copytree(edge_bundle, tmp_path / "bundle"))


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """Small media files: RGB/RGBA/grey/EXIF-rotated images, mono 16 kHz and stereo 22.05 kHz audio."""
    d = tmp_path_factory.mktemp("edge_media")
    rng = np.random.default_rng(0)
    files = {}
    rgb = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(d / "rgb.png")
    files["rgb_png"] = d / "rgb.png"
    Image.fromarray(rgb).save(d / "rgb.jpg", quality=90)
    files["rgb_jpg"] = d / "rgb.jpg"
    rgba = rng.integers(0, 256, (30, 30, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(d / "rgba.png")
    files["rgba_png"] = d / "rgba.png"
    grey16 = rng.integers(0, 65536, (33, 45), dtype=np.uint16)
    Image.fromarray(grey16).save(d / "grey16.png")
    files["grey16_png"] = d / "grey16.png"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    Image.fromarray(rgb).save(d / "exif.jpg", exif=exif, quality=95)
    files["exif_jpg"] = d / "exif.jpg"
    t = np.arange(16000) / 16000
    sf.write(d / "mono16k.wav", (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(16000)).astype(np.float32), 16000)
    files["mono_wav"] = d / "mono16k.wav"
    t2 = np.arange(22050 * 2) / 22050
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 300 * t2), 0.2 * np.sin(2 * np.pi * 1234 * t2)], axis=1)
    stereo += 0.05 * rng.standard_normal(stereo.shape)
    sf.write(d / "stereo22k.flac", stereo.astype(np.float32), 22050)
    files["stereo_flac"] = d / "stereo22k.flac"
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    files["corrupt_png"] = d / "corrupt.png"
    (d / "corrupt.wav").write_bytes(b"RIFF1234WAVEfmt " + b"\x00" * 8)
    files["corrupt_wav"] = d / "corrupt.wav"
    return files
