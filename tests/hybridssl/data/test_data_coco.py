"""Tests for hybridssl.data.coco.CocoCaptionsDataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hybridssl.data.coco import CocoCaptionsDataset
from hybridssl.data.sample import BadItem


@pytest.fixture
def coco(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "val2014"
    images.mkdir()
    Image.new("RGB", (8, 6), (255, 0, 0)).save(images / "one.jpg")
    Image.new("L", (4, 4), 10).save(images / "two.png")
    Image.new("RGB", (5, 5)).save(images / "three.png")
    doc = {
        "info": {"description": "tiny"},
        "images": [
            {"id": 1, "file_name": "one.jpg", "width": 8, "height": 6},
            {"id": 2, "file_name": "two.png"},
            {"id": 3, "file_name": "three.png"},  # no captions
            {"id": 4, "file_name": "missing.png"},
            {"id": 2, "file_name": "dup.png"},  # duplicate id
            {"file_name": "noid.png"},  # malformed
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "caption": "A red  box.\n"},
            {"id": 11, "image_id": 1, "caption": "Red."},
            {"id": 12, "image_id": 2, "caption": "   "},  # empty
            {"id": 13, "image_id": 2, "caption": "grey"},
            {"id": 14, "image_id": 99, "caption": "orphan"},  # unknown image
            {"id": 15, "caption": "no image id"},  # malformed
            {"id": 16, "image_id": 4, "caption": "file is missing"},
            {"id": 17, "image_id": 1, "caption": ["not", "a", "string"]},  # malformed caption
        ],
    }
    ann = tmp_path / "captions_val2014.json"
    ann.write_text(json.dumps(doc))
    return ann, images


def test_one_sample_per_caption(coco: tuple[Path, Path]) -> None:
    d = CocoCaptionsDataset(*coco)
    assert len(d) == 4 and d.modalities == ("image", "text") and d.label_names is None
    assert dict(d.load_report.skipped) == {"malformed_row": 4, "unknown_image_id": 1, "empty_caption": 1}
    assert list(d.captions()) == ["A red box.", "Red.", "grey", "file is missing"]
    assert d.labels() == [None] * 4
    s = d[0]
    assert s.uid == "1#10" and s.image.shape == (6, 8, 3) and s.image.dtype == np.uint8
    assert s.caption == "A red box." and s.meta["image_id"] == 1 and s.meta["annotation_id"] == 10
    assert d[2].uid == "2#13" and d[2].image.shape == (4, 4, 3)
    assert s.paraphrases == ("Red.",) and d[1].paraphrases == ("A red box.",) and d[2].paraphrases == ()
    with pytest.raises(BadItem) as ei:
        d[3]
    assert ei.value.reason == "missing_file" and ei.value.uid == "4#16"


def test_one_caption_per_image(coco: tuple[Path, Path]) -> None:
    d = CocoCaptionsDataset(*coco, one_caption_per_image=True)
    assert [d[i].uid for i in range(3)] == ["1", "2", "3"] and len(d) == 4
    assert [d.caption_at(i) for i in range(4)] == ["A red box.", "grey", None, "file is missing"]
    assert d.load_report.repaired["empty_caption_dropped"] == 1
    assert d[2].caption is None and d[2].image.shape == (5, 5, 3)  # image-only sample kept
    assert d[0].paraphrases == ("Red.",) and d[1].paraphrases == () and d[2].paraphrases == ()
    assert list(d.captions()) == ["A red box.", "grey", "file is missing"]


def test_construction_errors(tmp_path: Path, coco: tuple[Path, Path]) -> None:
    ann, images = coco
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CocoCaptionsDataset(tmp_path / "nope.json", images)
    with pytest.raises(FileNotFoundError, match="nodir"):
        CocoCaptionsDataset(ann, tmp_path / "nodir")
    (tmp_path / "bad.json").write_text("{ nope")
    with pytest.raises(ValueError, match="not a valid JSON"):
        CocoCaptionsDataset(tmp_path / "bad.json", images)
    (tmp_path / "inst.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="annotations"):
        CocoCaptionsDataset(tmp_path / "inst.json", images)
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError, match="top level"):
        CocoCaptionsDataset(tmp_path / "list.json", images)
