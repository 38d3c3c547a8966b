"""A dataset described by a manifest file: one row per item, any subset of image / caption / audio.

Formats (chosen by extension):

* ``.jsonl`` / ``.json-lines`` / ``.ndjson`` — one JSON object per line, blank lines ignored;
* ``.csv`` — a header row, then one row per item (UTF-8, optional BOM; header names are stripped and
  lower-cased; empty cells mean "absent").

Fields of a row: ``image`` (path), ``caption`` (or ``text``), ``audio`` (path), ``label`` (class name or
integer index), ``id`` (optional; default: the row's 1-based physical line number in the file, the CSV
header being line 1). Any other field is kept in ``Sample.meta["extra"]``. Relative paths resolve
against ``root`` (default: the manifest's folder). A path that leads outside ``root`` once resolved
(``/etc/passwd``, ``../../secret``, a symlink out) is not opened: the row is skipped as
``outside_root`` unless ``allow_outside_paths=True`` (``data.allow_outside_paths``, the CLI's
``--allow-outside-paths``), so a manifest from elsewhere cannot make hssl read arbitrary files.
Labels follow :func:`hybridssl.data.base.resolve_labels`.

Index-time problems are counted in ``load_report`` and the row is left out — never an exception:
``malformed_row`` (invalid JSON, not an object, wrong field types, ragged CSV row, bytes that are not
UTF-8), ``unknown_label``, ``no_modality`` (no image, no audio and no non-empty caption), ``bad_caption``
(a non-string caption). An empty caption next to other modalities is dropped and counted as the repair
``empty_caption_dropped``.

Decode-time policy (``__getitem__``): **any referenced file that cannot be read makes the whole item a**
:class:`~hybridssl.data.sample.BadItem` — the row promised that modality, and silently serving a
partial item would skew the modality mix without anyone noticing. Decode-time repairs (e.g.
``"mono_mixed"``) are listed in ``Sample.meta["repairs"]``; index-time repairs are counted once in
``load_report.repaired``.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridssl.data.base import RecordDataset, check_modalities, resolve_labels
from hybridssl.data.readers import clean_caption, read_audio, read_image, require_usable
from hybridssl.data.sample import BadItem, Sample, SkipReport

JSONL_SUFFIXES = (".jsonl", ".json-lines", ".ndjson")
CSV_SUFFIXES = (".csv",)
RESERVED = ("id", "image", "caption", "text", "audio", "label")


class _Malformed(Exception):
    """A row that cannot be parsed (recorded as ``malformed_row``)."""


@dataclass
class _Row:
    uid: str
    line: int
    image: Path | None = None
    caption: str | None = None
    audio: Path | None = None
    raw_label: str | int | None = None
    label: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- file readers


def _decoded_lines(path: Path, bad_lines: set[int]) -> Iterator[str]:
    """The file's lines as text; undecodable lines are replaced and their numbers put in ``bad_lines``."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if n == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                bad_lines.add(n)
                yield raw.decode("utf-8", errors="replace")


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """``(line, object or None, error detail)`` for every non-blank line."""
    bad: set[int] = set()
    for n, line in enumerate(_decoded_lines(path, bad), 1):
        if not line.strip():
            continue
        if n in bad:
            yield n, None, "line is not valid UTF-8"
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield n, None, f"invalid JSON: {e.msg} at column {e.colno}"
            continue
        if not isinstance(obj, dict):
            yield n, None, f"expected a JSON object, got {type(obj).__name__}"
            continue
        yield n, obj, ""


def read_csv_table(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, str | None] | None, str]]]:
    """``(header, rows)`` of a UTF-8 CSV file; header names stripped and lower-cased.

    ``rows`` yields ``(first line of the row, {column: value or None if empty} or None, error detail)``
    for every non-blank row; a ragged row, a row with bytes that are not UTF-8 or a CSV syntax error
    gives ``None`` and the detail. A file without a header, or with duplicate column names, is a
    ValueError.
    """
    bad: set[int] = set()
    reader = csv.reader(_decoded_lines(path, bad))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise ValueError(f"{path}: empty CSV file (a header row is required)") from None
    if 1 in bad:
        raise ValueError(f"{path}: the header row is not valid UTF-8")
    if len(set(header)) != len(header):
        raise ValueError(f"{path}: duplicate column names in header {header}")

    def rows() -> Iterator[tuple[int, dict[str, str | None] | None, str]]:
        prev = reader.line_num
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                start, prev = prev + 1, reader.line_num
                yield start, None, f"CSV error: {e}"
                continue
            start, prev = prev + 1, reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            if any(start <= b <= prev for b in bad):
                yield start, None, "row is not valid UTF-8"
            elif len(fields) != len(header):
                yield start, None, f"{len(fields)} fields but the header has {len(header)}"
            else:
                yield start, {h: (v.strip() or None) for h, v in zip(header, fields)}, ""

    return header, rows()


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    header, rows = read_csv_table(path)
    if not {"image", "caption", "text", "audio"} & set(header):
        raise ValueError(f"{path}: header {header} has none of the columns image, caption, text, audio")
    return rows


# ----------------------------------------------------------------------------- row parsing


def _opt_str(obj: dict[str, Any], key: str) -> str | None:
    v = obj.get(key)
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise _Malformed(f"field {key!r} must be a string, got {type(v).__name__}")
    return v


def _raw_label(obj: dict[str, Any]) -> str | int | None:
    v = obj.get("label")
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise _Malformed("field 'label' must be a class name or an integer, got a bool")
    if isinstance(v, float):
        if not v.is_integer():
            raise _Malformed(f"field 'label' must be a class name or an integer, got {v}")
        return int(v)
    if not isinstance(v, (str, int)):
        raise _Malformed(f"field 'label' must be a class name or an integer, got {type(v).__name__}")
    return v.strip() if isinstance(v, str) else v


def _uid(obj: dict[str, Any], line: int) -> str:
    v = obj.get("id")
    if v is None or v == "":
        return str(line)
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise _Malformed(f"field 'id' must be a string or an integer, got {type(v).__name__}")
    return str(v)


def _resolve(p: str, root: Path) -> Path:
    path = Path(p).expanduser()
    return path if path.is_absolute() else root / path


def is_inside(path: Path, root: Path) -> bool:
    """Whether ``path``, symlinks and ``..`` resolved, lies inside ``root`` (resolved too)."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))


def _parse_row(line: int, obj: dict[str, Any], root: Path, report: SkipReport,
               allow_outside_paths: bool = False) -> _Row | None:
    """A :class:`_Row`, or ``None`` after recording why the row is skipped."""
    uid = str(line)
    try:
        uid = _uid(obj, line)
        image, audio = _opt_str(obj, "image"), _opt_str(obj, "audio")
        raw_caption = obj.get("caption") if obj.get("caption") not in (None, "") else obj.get("text")
        caption = clean_caption(raw_caption, uid)
        label = _raw_label(obj)
    except _Malformed as e:
        report.skip(uid, "malformed_row", f"line {line}: {e}")
        return None
    except BadItem as e:
        report.skip(uid, e.reason, f"line {line}: {e.detail}")
        return None
    if image is None and audio is None and caption is None:
        report.skip(uid, "no_modality", f"line {line}: no image, audio or non-empty caption")
        return None
    if not allow_outside_paths:
        for p in (image, audio):
            if p is not None and not is_inside(_resolve(p, root), root):
                report.skip(uid, "outside_root", f"line {line}: {p} is outside {root} (pass --allow-outside-paths "
                            "to read it)")
                return None
    if caption is None and raw_caption is not None:
        report.repair("empty_caption_dropped")
    extra = {k: v for k, v in obj.items() if k not in RESERVED}
    return _Row(
        uid=uid,
        line=line,
        image=None if image is None else _resolve(image, root),
        caption=caption,
        audio=None if audio is None else _resolve(audio, root),
        raw_label=label,
        extra=extra,
    )


# ----------------------------------------------------------------------------- dataset


class ManifestDataset(RecordDataset):
    """Items listed in a JSONL or CSV manifest (see the module docstring)."""

    def __init__(
        self,
        path: str | Path,
        root: Path | str | None = None,
        label_names: list[str] | None = None,
        max_pixels: int = 64_000_000,
        max_seconds: float = 600.0,
        allow_outside_paths: bool = False,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"manifest not found: {self.path}")
        suffix = self.path.suffix.lower()
        if suffix in JSONL_SUFFIXES:
            rows_iter = _jsonl_rows(self.path)
        elif suffix in CSV_SUFFIXES:
            rows_iter = _csv_rows(self.path)
        else:
            raise ValueError(
                f"{self.path}: unknown manifest extension {suffix!r}; "
                f"expected one of {JSONL_SUFFIXES + CSV_SUFFIXES}"
            )
        self.root = Path(root) if root is not None else self.path.parent
        self.name = self.path.stem
        self.max_pixels = max_pixels
        self.max_seconds = max_seconds

        rows: list[_Row] = []
        for line, obj, detail in rows_iter:
            if obj is None:
                self.load_report.skip(str(line), "malformed_row", f"line {line}: {detail}")
                continue
            row = _parse_row(line, obj, self.root, self.load_report, allow_outside_paths)
            if row is not None:
                rows.append(row)

        labels, keep, self.label_names = resolve_labels(
            [r.raw_label for r in rows], label_names, [r.uid for r in rows], self.load_report
        )
        for r, lab in zip(rows, labels):
            r.label = lab
        self._records = [r for r, k in zip(rows, keep) if k]
        present: set[str] = set()
        for r in self._records:
            present.update(m for m, v in (("image", r.image), ("text", r.caption), ("audio", r.audio)) if v)
        self.modalities = check_modalities(sorted(present))

    def __getitem__(self, i: int) -> Sample:
        row = self.record(i)
        repairs: list[str] = []
        image = audio = rate = None
        if row.image is not None:
            image = read_image(row.image, row.uid, max_pixels=self.max_pixels)  # (H, W, 3) uint8
        if row.audio is not None:
            audio, rate, fixes = read_audio(row.audio, row.uid, max_seconds=self.max_seconds)  # (T,)
            repairs.extend(fixes)
        meta: dict[str, Any] = {"repairs": repairs, "line": row.line, "source": str(self.path)}
        if row.label is not None and self.label_names is not None:
            meta["label_name"] = self.label_names[row.label]
        if row.extra:
            meta["extra"] = row.extra
        sample = Sample(
            uid=row.uid, image=image, caption=row.caption, audio=audio, sample_rate=rate,
            label=row.label, meta=meta,
        )
        return require_usable(sample)
