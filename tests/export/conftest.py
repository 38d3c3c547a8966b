"""Shared fixtures: a tiny tri-modal run that learns in seconds, and one exported bundle.

The data: 192 items of 4 colour classes — a noisy solid-colour 32×32 image, a sine tone whose pitch
encodes the colour, and the caption "a <colour> thing" — written as a JSONL manifest. A `tiny` preset
run reaches 100 % zero-shot accuracy on its held-out quarter after 30 steps (~4 s), so a broken
quantization measurably loses accuracy (tests of the accuracy guard need a model above chance).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from hybridssl.app.train import train_run
from hybridssl.config import load_config
from hybridssl.data.base import MultimodalDataset
from hybridssl.data.sample import Sample

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 230), "yellow": (240, 220, 40)}
TONES = {"red": 300.0, "green": 600.0, "blue": 1200.0, "yellow": 2400.0}
RATE = 16000


def write_colour_manifest(root, n: int = 192, seed: int = 0):
    rng = np.random.default_rng(seed)
    rows = []
    t = np.arange(RATE // 2) / RATE
    for i in range(n):
        name = list(COLOURS)[i % len(COLOURS)]
        img = np.clip(np.array(COLOURS[name])[None, None, :] + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"{i:03d}.png")
        pitch = TONES[name] * (1 + rng.uniform(-0.03, 0.03))
        wave = 0.5 * np.sin(2 * np.pi * pitch * t) + rng.normal(0, 0.05, t.shape)
        sf.write(root / f"{i:03d}.wav", wave.astype(np.float32), RATE)
        rows.append({"image": f"{i:03d}.png", "audio": f"{i:03d}.wav", "caption": f"a {name} thing", "label": name})
    (root / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root / "data.jsonl"


TINY = ["data.val_fraction=0.25", "train.eval_size=64", "train.batch_size=32", "train.ckpt_every=0", "train.steps=30",
        "train.threads=1", "train.lr=0.003", "train.warmup_steps=3"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("colours")
    manifest = write_colour_manifest(root)
    run = root / "run"
    train_run(load_config("tiny", [f"data.train=manifest:{manifest}", *TINY]), run)
    return run


class ConstantItems(MultimodalDataset):
    """Deliberately broken calibration data: one flat grey image and a silent clip, repeated."""

    name = "constant"
    modalities = ("image", "text", "audio")

    def __init__(self, n: int = 32) -> None:
        super().__init__()
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Sample:
        return Sample(uid=f"const/{i}", image=np.full((32, 32, 3), 128, np.uint8), caption="a thing",
                      audio=np.zeros(RATE // 2, np.float32), sample_rate=RATE)


#: R@1 on this data hinges on the order of items *within* a colour class (their captions are identical), so a
#: harmless int8 reordering of one item moves it by 1/48 = 2.1 points; the guard is therefore set to 10 points
#: here, and its tests use a broken calibration that loses ~70 points of zero-shot accuracy.
FAST = {"eval_size": 48, "calibration_size": 64, "threads": 1, "max_drop": 10.0}


@pytest.fixture(scope="session")
def fast() -> dict:
    """export_run options that keep a tiny export to a second or two (read-only)."""
    return dict(FAST)


@pytest.fixture
def constant_items() -> ConstantItems:
    return ConstantItems()


@pytest.fixture(scope="session")
def ort_bundle(tiny_run, tmp_path_factory):
    """The onnxruntime bundle (fp32 + int8 + fp16) of the tiny run, with its report."""
    from export.api import export_run

    out = tmp_path_factory.mktemp("bundles") / "ort"
    report = export_run(tiny_run, out, "onnxruntime", **FAST)
    return out, report
