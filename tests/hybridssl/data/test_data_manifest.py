"""Tests for hybridssl.data.manifest.ManifestDataset (JSONL and CSV)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from hybridssl.data.manifest import ManifestDataset
from hybridssl.data.sample import BadItem


def _media(folder: Path) -> None:
    (folder / "img").mkdir()
    Image.fromarray(np.full((6, 4, 4), 128, np.uint8), "RGBA").save(folder / "img" / "a.png")
    Image.fromarray(np.zeros((5, 7), np.uint8), "L").save(folder / "img" / "b.png")
    sf.write(folder / "s.flac", np.zeros((441, 2), np.float32), 44100)
    sf.write(folder / "m.wav", np.zeros(800, np.float32), 8000)
    (folder / "fake.wav").write_text("not audio")


def _jsonl(path: Path, lines: list[object]) -> Path:
    with open(path, "wb") as f:
        for line in lines:
            if isinstance(line, bytes):
                f.write(line + b"\n")
            elif isinstance(line, str):
                f.write(line.encode() + b"\n")
            else:
                f.write(json.dumps(line).encode() + b"\n")
    return path


@pytest.fixture
def jsonl_ds(tmp_path: Path) -> ManifestDataset:
    _media(tmp_path)
    path = _jsonl(
        tmp_path / "m.jsonl",
        [
            {"id": "a", "image": "img/a.png", "caption": "  a  grey\tsquare ", "label": "dog"},  # line 1
            {"audio": "s.flac", "label": "cat"},  # 2, id defaults to "2"
            {"text": "caption only"},  # 3
            "{not json",  # 4 malformed
            "[1, 2]",  # 5 not an object
            "",  # 6 blank: ignored
            {"id": "z", "image": "img/b.png", "label": "zebra"},  # 7 unknown label
            {"id": "n", "label": "dog"},  # 8 no modality
            {"id": "e", "image": "img/b.png", "caption": "   "},  # 9 empty caption dropped
            {"id": "w", "caption": " \n "},  # 10 caption empty, nothing else
            {"id": "t", "image": 5},  # 11 wrong type
            {"id": "c", "caption": 12},  # 12 bad caption
            b'{"id": "u", "caption": "\xff\xfe"}',  # 13 not UTF-8
            {"id": "f", "caption": "has fake audio", "audio": "fake.wav"},  # 14
            {"id": "abs", "audio": str(tmp_path / "m.wav"), "extra_field": [1, 2]},  # 15
            {"id": "x", "caption": "ok", "label": True},  # 16 bool label
        ],
    )
    return ManifestDataset(path, label_names=["cat", "dog"])


def test_jsonl_index(jsonl_ds: ManifestDataset) -> None:
    d = jsonl_ds
    rep = d.load_report
    assert dict(rep.skipped) == {
        "malformed_row": 5,  # lines 4, 5, 11, 13, 16
        "unknown_label": 1,
        "no_modality": 2,
        "bad_caption": 1,
    }
    assert rep.repaired["empty_caption_dropped"] == 1
    assert len(d) == 6
    assert [d[i].uid for i in (0, 1, 2, 3, 5)] == ["a", "2", "3", "e", "abs"]
    assert d.modalities == ("image", "text", "audio")
    assert d.label_names == ["cat", "dog"] and d.num_classes == 2
    assert d.labels() == [1, 0, None, None, None, None]
    assert list(d.captions()) == ["a grey square", "caption only", "has fake audio"]


def test_jsonl_decoding(jsonl_ds: ManifestDataset) -> None:
    d = jsonl_ds
    s = d[0]
    assert s.image.shape == (6, 4, 3) and s.image.dtype == np.uint8
    assert s.caption == "a grey square" and s.label == 1 and s.meta["label_name"] == "dog"
    assert s.audio is None and s.meta["repairs"] == [] and s.meta["line"] == 1
    s = d[1]
    assert s.uid == "2" and s.audio.shape == (441,) and s.audio.dtype == np.float32
    assert s.sample_rate == 44100 and s.meta["repairs"] == ["mono_mixed"] and s.image is None
    assert d[2].modalities == ("text",)
    assert d[3].caption is None and d[3].image.shape == (5, 7, 3)
    with pytest.raises(BadItem) as ei:  # the row promised audio: the whole item is bad
        d[4]
    assert ei.value.reason == "unreadable_audio" and ei.value.uid == "f"
    s = d[5]
    assert s.sample_rate == 8000 and s.meta["extra"] == {"extra_field": [1, 2]}
    with pytest.raises(IndexError):
        d[6]


def test_index_only_access_does_not_decode(tmp_path: Path) -> None:
    _media(tmp_path)
    path = _jsonl(tmp_path / "m.jsonl", [{"image": "img/a.png", "caption": "hello", "label": "b"}])
    d = ManifestDataset(path)
    (tmp_path / "img" / "a.png").unlink()
    assert list(d.captions()) == ["hello"] and d.labels() == [0] and d.label_names == ["b"]
    with pytest.raises(BadItem) as ei:
        d[0]
    assert ei.value.reason == "missing_file"


def test_root_override(tmp_path: Path) -> None:
    _media(tmp_path)
    (tmp_path / "lists").mkdir()
    path = _jsonl(tmp_path / "lists" / "m.jsonl", [{"image": "img/b.png"}])
    with pytest.raises(BadItem):
        ManifestDataset(path)[0]  # resolves against lists/
    assert ManifestDataset(path, root=tmp_path)[0].image.shape == (5, 7, 3)


def test_csv_manifest(tmp_path: Path) -> None:
    _media(tmp_path)
    text = (
        "\ufeffId, Image ,caption,audio,label\n"  # BOM, spaces and capitals in the header
        'r1,img/a.png,"a caption, with a comma",,3\n'  # line 2
        'r2,,"two\nlines",m.wav,0\n'  # lines 3-4
        "r3,img/b.png,,,\n"  # line 5: unlabeled, image only
        "r4,img/b.png\n"  # line 6: ragged
        ",,,,\n"  # line 7: blank row, ignored
        ",,,,1\n"  # line 8: label but no modality
        "r5,img/b.png,,,-2\n"  # line 9: negative index
    )
    (tmp_path / "m.csv").write_text(text, encoding="utf-8")
    d = ManifestDataset(tmp_path / "m.csv")
    assert len(d) == 3
    assert dict(d.load_report.skipped) == {"malformed_row": 1, "no_modality": 1, "unknown_label": 1}
    assert any("line 6" in e for e in d.load_report.examples["malformed_row"])
    assert d.label_names == ["0", "1", "2", "3"]  # all-integer labels keep their indices
    assert d.labels() == [3, 0, None]
    assert list(d.captions()) == ["a caption, with a comma", "two lines"]
    s = d[1]
    assert s.uid == "r2" and s.meta["line"] == 3 and s.audio.shape == (800,) and s.label == 0
    assert d[2].image.shape == (5, 7, 3) and d[2].label is None


def test_csv_undecodable_row(tmp_path: Path) -> None:
    _media(tmp_path)
    data = b"image,caption\nimg/a.png,fine\nimg/b.png,bad \xff byte\nimg/b.png,also fine\n"
    (tmp_path / "m.csv").write_bytes(data)
    d = ManifestDataset(tmp_path / "m.csv")
    assert len(d) == 2 and d.load_report.skipped["malformed_row"] == 1
    assert list(d.captions()) == ["fine", "also fine"]


def test_construction_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        ManifestDataset(tmp_path / "nope.jsonl")
    (tmp_path / "m.txt").write_text("{}")
    with pytest.raises(ValueError, match="extension"):
        ManifestDataset(tmp_path / "m.txt")
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(ValueError, match="header"):
        ManifestDataset(tmp_path / "e.csv")
    (tmp_path / "n.csv").write_text("id,label\n1,a\n")
    with pytest.raises(ValueError, match="none of the columns"):
        ManifestDataset(tmp_path / "n.csv")
    (tmp_path / "d.csv").write_text("image,Image\na,b\n")
    with pytest.raises(ValueError, match="duplicate"):
        ManifestDataset(tmp_path / "d.csv")


def test_all_rows_bad_is_an_empty_dataset_with_a_report(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "m.jsonl", ["nope", "{]"])
    d = ManifestDataset(path)
    assert len(d) == 0 and d.load_report.skipped["malformed_row"] == 2
    assert d.modalities == () and d.label_names is None and list(d.captions()) == []
