"""Openclipart 0.18 clip art as image–caption pairs (Debian package ``openclipart-png``).

Layout (checked against ``openclipart-png 1:0.18+dfsg-19``): there is no separate metadata file; the
package is a folder tree of PNGs below ``root = /usr/share/openclipart/png``::

    <category>/[<sub>/...]/<name>.png        22 categories (animals, computer, shapes, ...)

and each PNG carries its metadata in text chunks written by Inkscape, before the first ``IDAT``:
``Title`` (8,059 of 8,121 files), ``Description`` (1,708), ``Author``, ``Creation Time``, ``Software``.
There are no keyword tags in the PNGs. 1,221 of the 8,121 paths are symbolic links to a file filed
under another (sub)category: the same image listed twice.

Metadata is read from the ``tEXt`` / ``zTXt`` / ``iTXt`` chunks by :func:`png_text_chunks`, which seeks
over the image data without decoding it. ``tEXt`` / ``zTXt`` values are decoded as UTF-8 (what Inkscape
writes), falling back to Latin-1 (what the PNG specification says).

One item per image, in sorted path order: ``caption`` = ``Title``, followed by ``". " + Description``
when there is a description that differs from the title (``" "`` when the title already ends in
``. ! ?``), or the description alone when there is no title; ``label`` = the top-level category folder;
``meta``: ``subcategory`` (folders between category and file, or ``None``), ``title``, ``description``,
``author``. With ``dedupe=True`` (default) a linked duplicate is left out and only the real file is kept
(the first path in sorted order when every path is a link); ``meta["also_in"]`` lists the other paths.

``load_report`` skips: ``no_metadata`` (neither title nor description), ``unreadable_image`` (not a PNG
or a broken chunk structure), ``duplicate`` (``dedupe=True``). A file that cannot be decoded later is a
decode-time :class:`~hybridssl.data.sample.BadItem`.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridssl.data.base import RecordDataset, check_modalities, resolve_labels
from hybridssl.data.readers import clean_caption, read_image, require_usable
from hybridssl.data.sample import Sample

DEFAULT_ROOT = "/usr/share/openclipart/png"
INSTALL_HINT = "install it with: bash scripts/install_datasets.sh"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
MAX_TEXT_CHUNK = 1 << 20  # bytes; a larger text chunk is treated as corrupt


@dataclass
class _Clip:
    uid: str
    path: Path
    caption: str
    title: str | None
    description: str | None
    author: str | None
    category: str | None
    subcategory: str | None
    also_in: list[str] = field(default_factory=list)
    label: int | None = None


def _decode_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _parse_text_chunk(kind: bytes, data: bytes) -> tuple[str, str]:
    """``(keyword, text)`` of one ``tEXt`` / ``zTXt`` / ``iTXt`` chunk payload."""
    keyword, sep, rest = data.partition(b"\0")
    if not sep:
        raise ValueError("text chunk without a keyword separator")
    key = keyword.decode("latin-1")
    if kind == b"tEXt":
        return key, _decode_text(rest)
    if kind == b"zTXt":  # compression method byte, then zlib data
        return key, _decode_text(zlib.decompress(rest[1:]))
    # iTXt: compression flag, method, language tag \0, translated keyword \0, UTF-8 text
    flag = rest[:1]
    _, _, after_lang = rest[2:].partition(b"\0")
    _, _, text = after_lang.partition(b"\0")
    if flag == b"\x01":
        text = zlib.decompress(text)
    return key, text.decode("utf-8", errors="replace")


def png_text_chunks(path: str | Path) -> dict[str, str]:
    """The text metadata ``{keyword: text}`` of a PNG, read chunk by chunk without decoding pixels.

    Raises ValueError for a file that is not a PNG or whose chunk structure is broken; the first
    occurrence of a keyword wins.
    """
    out: dict[str, str] = {}
    with open(path, "rb") as f:
        if f.read(8) != PNG_SIGNATURE:
            raise ValueError(f"{path}: not a PNG file")
        while True:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError(f"{path}: truncated PNG (no IEND chunk)")
            length, kind = struct.unpack(">I4s", head)
            if kind in TEXT_CHUNKS:
                if length > MAX_TEXT_CHUNK:
                    raise ValueError(f"{path}: {kind.decode('latin-1')} chunk of {length} bytes")
                data = f.read(length)
                if len(data) < length:
                    raise ValueError(f"{path}: truncated {kind.decode('latin-1')} chunk")
                try:
                    key, text = _parse_text_chunk(kind, data)
                except (ValueError, zlib.error) as e:
                    raise ValueError(f"{path}: bad {kind.decode('latin-1')} chunk: {e}") from None
                out.setdefault(key, text)
                f.seek(4, os.SEEK_CUR)  # CRC
            elif kind == b"IEND":
                return out
            else:
                f.seek(length + 4, os.SEEK_CUR)  # data + CRC, not read


def make_caption(title: str | None, description: str | None) -> str | None:
    """Title, then the description when it adds something (rule in the module docstring)."""
    if not title:
        return description or None
    if not description or description.casefold() == title.casefold():
        return title
    return f"{title}{' ' if title[-1] in '.!?' else '. '}{description}"


class Openclipart(RecordDataset):
    """Openclipart PNGs with their embedded title / description as caption (module docstring)."""

    def __init__(self, root: str | Path = DEFAULT_ROOT, dedupe: bool = True, max_pixels: int = 64_000_000) -> None:
        super().__init__()
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"Openclipart PNGs not found at {self.root}; {INSTALL_HINT}")
        self.name = "openclipart"
        self.dedupe = bool(dedupe)
        self.max_pixels = max_pixels

        paths = self._png_paths()
        pairs = self._dedupe(paths) if self.dedupe else [(p, []) for p in paths]
        clips = [c for c in (self._clip(p, also) for p, also in pairs) if c is not None]
        categories = sorted({c.category for c in clips if c.category is not None})
        labels, keep, names = resolve_labels(
            [c.category for c in clips], categories, [c.uid for c in clips], self.load_report
        )
        for c, lab in zip(clips, labels):
            c.label = lab
        self.label_names = names or None
        self._records = [c for c, k in zip(clips, keep) if k]
        self.modalities = check_modalities(["image", "text"] if self._records else [])

    # -- index building ---------------------------------------------------------------------------------
    def _png_paths(self) -> list[Path]:
        """Every ``*.png`` (any case) under ``root``, sorted by path components."""
        found: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            found.extend(Path(dirpath) / n for n in filenames if n.lower().endswith(".png"))
        return sorted(found, key=lambda p: p.relative_to(self.root).parts)

    def _uid(self, path: Path) -> str:
        return path.relative_to(self.root).with_suffix("").as_posix()

    def _dedupe(self, paths: list[Path]) -> list[tuple[Path, list[str]]]:
        """``(kept path, other paths of the same file)``; the real file is preferred over links to it."""
        groups: dict[str, list[Path]] = {}
        for p in paths:
            groups.setdefault(os.path.realpath(p), []).append(p)
        kept: dict[Path, list[str]] = {}
        for members in groups.values():
            keep = next((p for p in members if not p.is_symlink()), members[0])
            kept[keep] = [self._uid(p) for p in members if p != keep]
            for p in members:
                if p != keep:
                    self.load_report.skip(self._uid(p), "duplicate", f"same file as {self._uid(keep)}")
        return [(p, kept[p]) for p in paths if p in kept]

    def _clip(self, path: Path, also_in: list[str]) -> _Clip | None:
        uid = self._uid(path)
        try:
            text = png_text_chunks(path)
        except (OSError, ValueError) as e:
            self.load_report.skip(uid, "unreadable_image", str(e))
            return None
        title, description = clean_caption(text.get("Title"), uid), clean_caption(text.get("Description"), uid)
        caption = make_caption(title, description)
        if caption is None:
            self.load_report.skip(uid, "no_metadata", "no Title or Description text chunk")
            return None
        rel = path.relative_to(self.root).parts[:-1]
        return _Clip(
            uid=uid, path=path, caption=caption, title=title, description=description,
            author=clean_caption(text.get("Author"), uid),
            category=rel[0] if rel else None, subcategory="/".join(rel[1:]) or None, also_in=also_in,
        )

    # -- the Dataset protocol -------------------------------------------------------------------------
    def __getitem__(self, i: int) -> Sample:
        c = self.record(i)
        image = read_image(c.path, c.uid, max_pixels=self.max_pixels)  # (H, W, 3) uint8
        meta: dict[str, Any] = {
            "source": str(c.path), "subcategory": c.subcategory, "title": c.title,
            "description": c.description, "author": c.author, "also_in": c.also_in,
        }
        if c.label is not None and self.label_names is not None:
            meta["label_name"] = self.label_names[c.label]
        return require_usable(Sample(uid=c.uid, image=image, caption=c.caption, label=c.label, meta=meta))
