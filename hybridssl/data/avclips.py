"""Labelled audio–visual clips listed in a CSV, VGGSound-style (Chen et al., 2020, "VGGSound: A
Large-scale Audio-Visual Dataset", ICASSP, arXiv:2004.14368).

CSV columns (header required, names case-insensitive):

* ``clip_id`` (required, unique), ``label`` (required column; an empty cell = unlabeled), ``audio``
  (required column: path of the clip's audio file; an empty cell = no audio);
* the visual side, first non-empty of: ``image`` (one frame image), ``frames`` (a folder of extracted
  frames ``*.jpg|*.jpeg|*.png|*.bmp|*.webp``; the middle one in natural name order — ``frame_2`` before
  ``frame_10`` — is used), ``video`` (a video file: hssl does not decode video, see below);
* optional ``caption``.

Relative paths resolve against ``root`` (default: the CSV's folder). Labels: the names sorted, unless
``label_names`` is given (pass the training split's names to the evaluation split!), following
:func:`hybridssl.data.base.resolve_labels`.

Index-time skips (``load_report``): ``malformed_row``, ``duplicate_id``, ``unknown_label``,
``no_modality``, and ``video_decoding_unavailable`` — a row whose only visual source is a ``video`` file
(decoding video would need ffmpeg; extract frames first, e.g. ``ffmpeg -i clip.mp4 -vf fps=1
frames/clip/%04d.jpg``, and add a ``frames`` column). Decode-time BadItem reasons: those of the readers,
plus ``empty_frames_dir`` (a frames folder without frame images; a missing folder is ``missing_file``).
As for manifests, any referenced file that fails makes the whole clip a BadItem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridssl.data.base import RecordDataset, check_modalities, resolve_labels
from hybridssl.data.manifest import read_csv_table
from hybridssl.data.readers import clean_caption, read_audio, read_image, require_usable
from hybridssl.data.sample import BadItem, Sample

REQUIRED_COLUMNS = ("clip_id", "label", "audio")
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class _Clip:
    uid: str
    line: int
    audio: Path | None
    image: Path | None
    frames: Path | None
    caption: str | None
    raw_label: str | None
    label: int | None = None


def _natural_key(name: str) -> list[Any]:
    """``"frame_10.jpg"`` sorts after ``"frame_2.jpg"``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def middle_frame(folder: Path, uid: str) -> Path:
    """The middle frame image of ``folder`` in natural order (BadItem if missing or empty)."""
    if not folder.is_dir():
        raise BadItem(uid, "missing_file", f"frames folder {folder} not found")
    frames = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and p.is_file()),
        key=lambda p: _natural_key(p.name),
    )
    if not frames:
        raise BadItem(uid, "empty_frames_dir", f"no {FRAME_SUFFIXES} files in {folder}")
    return frames[len(frames) // 2]


class AudioVisualClipsDataset(RecordDataset):
    """Audio + one video frame (+ optional caption) per labelled clip (see the module docstring)."""

    def __init__(
        self,
        csv_path: str | Path,
        root: str | Path | None = None,
        label_names: list[str] | None = None,
        max_pixels: int = 64_000_000,
        max_seconds: float = 600.0,
    ) -> None:
        super().__init__()
        self.csv_path = Path(csv_path)
        if not self.csv_path.is_file():
            raise FileNotFoundError(f"clip list not found: {self.csv_path}")
        self.root = Path(root) if root is not None else self.csv_path.parent
        self.name = self.csv_path.stem
        self.max_pixels = max_pixels
        self.max_seconds = max_seconds

        header, rows = read_csv_table(self.csv_path)
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{self.csv_path}: missing required columns {missing} (header: {header})")
        clips: list[_Clip] = []
        seen: set[str] = set()
        for line, row, detail in rows:
            if row is None:
                self.load_report.skip(str(line), "malformed_row", f"line {line}: {detail}")
                continue
            clip = self._parse(line, row, seen)
            if clip is not None:
                clips.append(clip)

        labels, keep, self.label_names = resolve_labels(
            [c.raw_label for c in clips], label_names, [c.uid for c in clips], self.load_report
        )
        for c, lab in zip(clips, labels):
            c.label = lab
        self._records = [c for c, k in zip(clips, keep) if k]
        present: set[str] = set()
        for c in self._records:
            present.update(
                m for m, v in (("image", c.image or c.frames), ("text", c.caption), ("audio", c.audio)) if v
            )
        self.modalities = check_modalities(sorted(present))

    def _path(self, value: str | None) -> Path | None:
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.root / p

    def _parse(self, line: int, row: dict[str, str | None], seen: set[str]) -> _Clip | None:
        """A :class:`_Clip`, or ``None`` after recording why the row is skipped."""
        uid = row.get("clip_id")
        if uid is None:
            self.load_report.skip(str(line), "malformed_row", f"line {line}: empty clip_id")
            return None
        if uid in seen:
            self.load_report.skip(uid, "duplicate_id", f"line {line}")
            return None
        seen.add(uid)
        image, frames, video = row.get("image"), row.get("frames"), row.get("video")
        if image is None and frames is None and video is not None:
            self.load_report.skip(uid, "video_decoding_unavailable", f"line {line}: {video} (extract frames)")
            return None
        caption = clean_caption(row.get("caption"), uid)
        if caption is None and row.get("caption") is not None:
            self.load_report.repair("empty_caption_dropped")
        clip = _Clip(
            uid=uid, line=line, audio=self._path(row.get("audio")), image=self._path(image),
            frames=None if image is not None else self._path(frames), caption=caption,
            raw_label=row.get("label"),
        )
        if clip.audio is None and clip.image is None and clip.frames is None and clip.caption is None:
            self.load_report.skip(uid, "no_modality", f"line {line}: no audio, image, frames or caption")
            return None
        return clip

    def __getitem__(self, i: int) -> Sample:
        c = self.record(i)
        repairs: list[str] = []
        meta: dict[str, Any] = {"repairs": repairs, "line": c.line, "source": str(self.csv_path)}
        image = audio = rate = None
        image_path = c.image if c.image is not None else (middle_frame(c.frames, c.uid) if c.frames else None)
        if image_path is not None:
            image = read_image(image_path, c.uid, max_pixels=self.max_pixels)  # (H, W, 3) uint8
            meta["frame"] = str(image_path)
        if c.audio is not None:
            audio, rate, fixes = read_audio(c.audio, c.uid, max_seconds=self.max_seconds)  # (T,) float32
            repairs.extend(fixes)
        if c.label is not None and self.label_names is not None:
            meta["label_name"] = self.label_names[c.label]
        sample = Sample(
            uid=c.uid, image=image, caption=c.caption, audio=audio, sample_rate=rate, label=c.label, meta=meta
        )
        return require_usable(sample)
