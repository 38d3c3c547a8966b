"""Tests for hybridssl.data.open.open_dataset."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hybridssl.data.avclips import AudioVisualClipsDataset
from hybridssl.data.base import MultimodalDataset
from hybridssl.data.coco import CocoCaptionsDataset
from hybridssl.data.features import FeatureSequenceDataset, write_feature_npz
from hybridssl.data.manifest import ManifestDataset
from hybridssl.data.open import open_dataset, parse_builtin_args, parse_value


def test_file_prefixes(tmp_path: Path) -> None:
    (tmp_path / "m.jsonl").write_text('{"caption": "hi", "label": "a"}\n')
    d = open_dataset(f"manifest:{tmp_path / 'm.jsonl'}", label_names=["b", "a"])
    assert isinstance(d, ManifestDataset) and d.labels() == [1]

    imgs = tmp_path / "im:gs"  # a colon in the images folder
    imgs.mkdir()
    Image.new("RGB", (4, 4)).save(imgs / "x.png")
    ann = tmp_path / "caps.json"
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "x.png"}],
                               "annotations": [{"id": 5, "image_id": 1, "caption": "c"}]}))
    d = open_dataset(f"coco:{ann}:{imgs}", one_caption_per_image=True)
    assert isinstance(d, CocoCaptionsDataset) and d[0].uid == "1" and d[0].image.shape == (4, 4, 3)

    (tmp_path / "clips.csv").write_text("clip_id,label,audio,image\nc,x,,im:gs/x.png\n")
    d = open_dataset(f"avclips:{tmp_path / 'clips.csv'}")
    assert isinstance(d, AudioVisualClipsDataset) and d[0].image.shape == (4, 4, 3)

    write_feature_npz(tmp_path / "f.npz", {"v": [np.zeros((2, 3))]}, labels=[0])
    d = open_dataset(f"features:{tmp_path / 'f.npz'}")
    assert isinstance(d, FeatureSequenceDataset) and d.feature_dims == {"v": 3}


def test_errors(tmp_path: Path) -> None:
    for bad in ("imagenet:/x", "/some/path.jsonl", "", "  "):
        with pytest.raises(ValueError, match="manifest:PATH") as ei:
            open_dataset(bad)
        assert "coco:ANNOTATIONS_JSON:IMAGES_DIR" in str(ei.value) or not bad.strip()
    for spec, missing in (
        (f"manifest:{tmp_path / 'no.jsonl'}", "no.jsonl"),
        (f"avclips:{tmp_path / 'no.csv'}", "no.csv"),
        (f"features:{tmp_path / 'no.npz'}", "no.npz"),
        (f"coco:{tmp_path / 'no.json'}:{tmp_path}", "no.json"),
        (f"coco:{tmp_path / 'no.json'}", "no.json"),
    ):
        with pytest.raises(FileNotFoundError, match=missing):
            open_dataset(spec)
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="imgs"):
        open_dataset(f"coco:{tmp_path / 'a.json'}:{tmp_path / 'imgs'}")
    with pytest.raises(ValueError, match="empty"):
        open_dataset("manifest:")


def test_parse_values_and_builtin_args() -> None:
    assert parse_value("3") == 3 and isinstance(parse_value("3"), int)
    assert parse_value("0.5") == 0.5 and parse_value("1e-3") == 1e-3
    assert parse_value("true") is True and parse_value("False") is False
    assert parse_value("val") == "val"
    assert parse_builtin_args("size=100, seed=1,split=val,") == {"size": 100, "seed": 1, "split": "val"}
    with pytest.raises(ValueError, match="KEY=VAL"):
        parse_builtin_args("size")
    with pytest.raises(ValueError, match="twice"):
        parse_builtin_args("size=1,size=2")


class _FakeScenes(MultimodalDataset):
    def __init__(self, size: int, seed: int, split: str = "train", **knobs: object) -> None:
        super().__init__()
        self.args = {"size": size, "seed": seed, "split": split, **knobs}


def test_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("hybridssl.data.synthetic")
    fake.SyntheticScenes = _FakeScenes  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "hybridssl.data.synthetic", fake)
    d = open_dataset("builtin")
    assert isinstance(d, _FakeScenes) and d.args == {"size": 1000, "seed": 0, "split": "train"}
    d = open_dataset("builtin:size=64,seed=3,split=val,noise=0.25", shapes=4)
    assert d.args == {"size": 64, "seed": 3, "split": "val", "noise": 0.25, "shapes": 4}
    with pytest.raises(ValueError, match="both"):
        open_dataset("builtin:size=64", size=3)
