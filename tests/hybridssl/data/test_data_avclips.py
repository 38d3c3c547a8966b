"""Tests for hybridssl.data.avclips.AudioVisualClipsDataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from hybridssl.data.avclips import AudioVisualClipsDataset, middle_frame
from hybridssl.data.sample import BadItem


def _setup(tmp: Path) -> Path:
    (tmp / "audio").mkdir()
    sf.write(tmp / "audio" / "c1.wav", np.zeros((1600, 2), np.float32), 16000)
    sf.write(tmp / "audio" / "c2.flac", np.zeros(800, np.float32), 8000)
    frames = tmp / "frames" / "c1"
    frames.mkdir(parents=True)
    for k, value in ((1, 10), (2, 20), (10, 100)):  # natural order 1, 2, 10 → middle is frame_2
        Image.new("RGB", (6, 4), (value, value, value)).save(frames / f"frame_{k}.png")
    (frames / "notes.txt").write_text("ignored")
    (tmp / "frames" / "empty").mkdir()
    Image.new("RGB", (3, 3), (1, 2, 3)).save(tmp / "still.png")
    csv = tmp / "clips.csv"
    csv.write_text(
        "clip_id,label,audio,frames,image,video,caption\n"
        "c1,dog barking,audio/c1.wav,frames/c1,,,\n"  # 2
        "c2,cat meowing,audio/c2.flac,,still.png,,a  cat \n"  # 3
        "c3,dog barking,audio/c2.flac,,,videos/c3.mp4,\n"  # 4 video only
        "c1,dog barking,audio/c1.wav,,,,\n"  # 5 duplicate id
        "c4,,audio/c2.flac,frames/empty,,,\n"  # 6 unlabeled, empty frames dir
        "c5,bird,audio/c2.flac,frames/none,,,\n"  # 7 missing frames dir
        ",bird,audio/c2.flac,,,,\n"  # 8 no clip id
        "c6,bird,,,,,\n"  # 9 nothing
        "c7,bird,audio/c2.flac\n"  # 10 ragged
        "c8,horse,,,still.png,,\x07\n"  # 11 image only, caption empty after cleaning
    )
    return csv


def test_clips(tmp_path: Path) -> None:
    d = AudioVisualClipsDataset(_setup(tmp_path))
    assert dict(d.load_report.skipped) == {
        "video_decoding_unavailable": 1,
        "duplicate_id": 1,
        "malformed_row": 2,
        "no_modality": 1,
    }
    assert d.load_report.repaired["empty_caption_dropped"] == 1
    assert d.label_names == ["bird", "cat meowing", "dog barking", "horse"]
    assert d.modalities == ("image", "text", "audio")
    assert len(d) == 5 and d.labels() == [2, 1, None, 0, 3]
    assert list(d.captions()) == ["a cat"]

    s = d[0]
    assert s.uid == "c1" and s.label == 2 and s.meta["label_name"] == "dog barking"
    assert s.image.shape == (4, 6, 3) and s.image.dtype == np.uint8
    np.testing.assert_array_equal(s.image[0, 0], [20, 20, 20])  # the natural-order middle frame
    assert s.meta["frame"].endswith("frame_2.png")
    assert s.audio.shape == (1600,) and s.sample_rate == 16000 and s.meta["repairs"] == ["mono_mixed"]

    s = d[1]
    assert s.caption == "a cat" and s.image.shape == (3, 3, 3) and s.sample_rate == 8000
    assert s.meta["repairs"] == []
    for i, reason in ((2, "empty_frames_dir"), (3, "missing_file")):
        with pytest.raises(BadItem) as ei:
            d[i]
        assert ei.value.reason == reason
    s = d[4]
    assert s.audio is None and s.caption is None and s.image.shape == (3, 3, 3)


def test_label_names_given(tmp_path: Path) -> None:
    d = AudioVisualClipsDataset(_setup(tmp_path), label_names=["dog barking", "cat meowing"])
    assert d.load_report.skipped["unknown_label"] == 2  # bird, horse
    assert d.labels() == [0, 1, None]


def test_middle_frame_one_and_even(tmp_path: Path) -> None:
    for k in (3, 1):
        Image.new("RGB", (2, 2)).save(tmp_path / f"f{k}.jpg")
    assert middle_frame(tmp_path, "u").name == "f3.jpg"  # sorted f1, f3 → index 1


def test_construction_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="none.csv"):
        AudioVisualClipsDataset(tmp_path / "none.csv")
    (tmp_path / "c.csv").write_text("clip_id,audio,image\nx,a.wav,b.png\n")
    with pytest.raises(ValueError, match="label"):
        AudioVisualClipsDataset(tmp_path / "c.csv")
