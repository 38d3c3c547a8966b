"""The Tux Paint stamps (Debian package ``tuxpaint-stamps-default``): real image + caption + speech triples.

Layout (checked against the 2022.06.04 package), below ``root = /usr/share/tuxpaint/stamps``::

    <category>/[<sub>/...]/<stem>.png           the stamp image (RGBA)      — or <stem>.svg (or both)
    <category>/[<sub>/...]/<stem>.txt           its description (see below)
    <category>/[<sub>/...]/<stem>_desc.ogg      spoken English description (~66 stamps)
    <category>/[<sub>/...]/<stem>_desc_<ll>.ogg spoken description in language <ll> (fr/ru/ro/ca/bg/es ~900 each)
    <category>/[<sub>/...]/<stem>.ogg           a sound effect (kept in ``meta["sound"]``)
    <category>/[<sub>/...]/<stem>_mirror.png    an alternative image Tux Paint shows when mirroring
    <category>/[<sub>/...]/<stem>.dat           drawing options (scale, colorable...) — ignored

Description file format (what :func:`parse_stamp_text` assumes): UTF-8 text; the first non-blank line
that is not a translation line is the English description; a translation line is
``<locale>.utf8=<text>`` with ``<locale>`` like ``fr``, ``pt_BR``, ``ca@valencia``. Other lines are ignored.
A file without an untagged line falls back to the ``en``, ``en_US``, ``en_GB``, then ``en_AU`` translation.

One item per stamp, in sorted path order: ``image`` = the PNG (RGBA composited on white by
:func:`~hybridssl.data.readers.read_image`), ``caption`` = the English description (or ``None``),
``audio`` = the spoken description in the first of ``languages`` that has one (``"en"`` = ``_desc.ogg``
or ``_desc_en.ogg``; ``.wav`` is accepted too) when ``use_speech``, else ``None``; ``label`` = the
top-level category folder; ``meta["subcategory"]`` = the folders between category and file
(``"birds/cartoon"``, or ``None``).

``load_report`` — skips: ``svg_only`` (no PNG; SVGs are not rasterised), ``mirror_variant`` (a
``<stem>_mirror``/``_flip`` image of another stamp), ``no_image`` (a description without any image);
repairs (the stamp is kept): ``no_caption`` (no ``.txt`` or no English line), ``empty_caption_dropped``,
``no_speech`` (``use_speech`` and no spoken description in any of ``languages``).
Unreadable image / audio files are decode-time :class:`~hybridssl.data.sample.BadItem`.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridssl.data.base import RecordDataset, caption_or_drop, check_modalities, resolve_labels
from hybridssl.data.readers import read_audio, read_image, require_usable
from hybridssl.data.sample import Sample

DEFAULT_ROOT = "/usr/share/tuxpaint/stamps"
INSTALL_HINT = "install it with: bash scripts/install_datasets.sh"
IMAGE_EXTS = (".png", ".svg")
AUDIO_EXTS = (".ogg", ".wav")
VARIANT_SUFFIXES = ("_mirror", "_flip")
ENGLISH_FALLBACKS = ("en", "en_US", "en_GB", "en_AU")
_TRANSLATION_RE = re.compile(r"^([A-Za-z]{2,3}(?:_[A-Za-z]{2})?(?:@[A-Za-z]+)?)\.(?:utf8|utf-8|UTF-8|UTF8)=(.*)$")


@dataclass
class _Stamp:
    uid: str
    image: Path
    caption: str | None
    audio: Path | None
    speech_language: str | None
    category: str | None
    subcategory: str | None
    sound: Path | None
    translations: dict[str, str] = field(default_factory=dict)
    label: int | None = None


def parse_stamp_text(text: str) -> tuple[str | None, dict[str, str]]:
    """``(English description or None, {locale: translation})`` of a stamp ``.txt`` (format above)."""
    english: str | None = None
    translations: dict[str, str] = {}
    for line in text.lstrip("\ufeff").splitlines():
        m = _TRANSLATION_RE.match(line.strip())
        if m:
            translations.setdefault(m.group(1), m.group(2).strip())
        elif english is None and line.strip():
            english = line.strip()
    if english is None:
        english = next((translations[k] for k in ENGLISH_FALLBACKS if translations.get(k)), None)
    return english, translations


def _speech_names(stem: str, lang: str) -> list[str]:
    tags = ["_desc", "_desc_en"] if lang == "en" else [f"_desc_{lang}"]
    return [f"{stem}{t}{ext}" for t in tags for ext in AUDIO_EXTS]


class TuxPaintStamps(RecordDataset):
    """Tux Paint stamps as image + English caption (+ spoken description) items (module docstring)."""

    def __init__(
        self,
        root: str | Path = DEFAULT_ROOT,
        languages: tuple[str, ...] | list[str] = ("en",),
        use_speech: bool = True,
        max_pixels: int = 64_000_000,
        max_seconds: float = 120.0,
    ) -> None:
        super().__init__()
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"Tux Paint stamps not found at {self.root}; {INSTALL_HINT}")
        if isinstance(languages, str):
            languages = (languages,)
        self.languages = tuple(languages)
        if use_speech and not self.languages:
            raise ValueError("use_speech=True needs at least one language in `languages`")
        self.use_speech = bool(use_speech)
        self.max_pixels, self.max_seconds = max_pixels, max_seconds
        self.name = "tuxpaint-stamps"

        stamps = [s for folder in self._folders() for s in self._scan_folder(folder)]
        categories = sorted({s.category for s in stamps if s.category is not None})
        labels, keep, names = resolve_labels(
            [s.category for s in stamps], categories, [s.uid for s in stamps], self.load_report
        )
        self.label_names = names or None
        for s, lab in zip(stamps, labels):
            s.label = lab
        self._records = [s for s, k in zip(stamps, keep) if k]
        present = {"image"} if self._records else set()
        present |= {"text"} if any(s.caption for s in self._records) else set()
        present |= {"audio"} if any(s.audio for s in self._records) else set()
        self.modalities = check_modalities(sorted(present))

    # -- index building ---------------------------------------------------------------------------------
    def _folders(self) -> list[Path]:
        """Every folder under ``root`` (itself included), in sorted order, not following links."""
        out: list[Path] = []
        for dirpath, dirnames, _ in os.walk(self.root):
            dirnames.sort()
            out.append(Path(dirpath))
        return sorted(out, key=lambda p: p.relative_to(self.root).parts)

    def _scan_folder(self, folder: Path) -> list[_Stamp]:
        by_stem: dict[str, dict[str, Path]] = defaultdict(dict)
        names = set()
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.is_file():
                stem, ext = os.path.splitext(entry.name)
                by_stem[stem][ext.lower()] = Path(entry.path)
                names.add(entry.name)
        rel = folder.relative_to(self.root).parts
        category = rel[0] if rel else None
        subcategory = "/".join(rel[1:]) or None
        stamps: list[_Stamp] = []
        for stem in sorted(by_stem):
            files = by_stem[stem]
            uid = "/".join((*rel, stem))
            has_image = any(e in files for e in IMAGE_EXTS)
            if not has_image:
                if ".txt" in files:
                    self.load_report.skip(uid, "no_image", "a description without a PNG or SVG image")
                continue
            base = next((stem[: -len(s)] for s in VARIANT_SUFFIXES if stem.endswith(s)), None)
            if base and any(e in by_stem.get(base, {}) for e in IMAGE_EXTS):
                self.load_report.skip(uid, "mirror_variant", f"alternative image of {base}")
                continue
            if ".png" not in files:
                self.load_report.skip(uid, "svg_only", "SVG stamps are not rasterised")
                continue
            caption, translations = self._caption(files.get(".txt"), uid)
            audio, lang = self._speech(folder, stem, names)
            sound = next((folder / f"{stem}{e}" for e in AUDIO_EXTS if f"{stem}{e}" in names), None)
            stamps.append(_Stamp(uid, files[".png"], caption, audio, lang, category, subcategory, sound, translations))
        return stamps

    def _caption(self, txt: Path | None, uid: str) -> tuple[str | None, dict[str, str]]:
        if txt is None:
            self.load_report.repair("no_caption")
            return None, {}
        try:
            text = txt.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            self.load_report.repair("no_caption")
            return None, {}
        english, translations = parse_stamp_text(text)
        if english is None:
            self.load_report.repair("no_caption")
            return None, translations
        return caption_or_drop(english, uid, self.load_report), translations

    def _speech(self, folder: Path, stem: str, names: set[str]) -> tuple[Path | None, str | None]:
        if not self.use_speech:
            return None, None
        for lang in self.languages:
            for name in _speech_names(stem, lang):
                if name in names:
                    return folder / name, lang
        self.load_report.repair("no_speech")
        return None, None

    # -- the Dataset protocol -------------------------------------------------------------------------
    def __getitem__(self, i: int) -> Sample:
        s = self.record(i)
        image = read_image(s.image, s.uid, max_pixels=self.max_pixels)  # (H, W, 3) uint8
        audio = rate = None
        repairs: list[str] = []
        if s.audio is not None:
            audio, rate, repairs = read_audio(s.audio, s.uid, max_seconds=self.max_seconds)  # (T,)
        meta: dict[str, Any] = {
            "repairs": repairs, "source": str(s.image), "subcategory": s.subcategory,
            "speech_language": s.speech_language, "sound": None if s.sound is None else str(s.sound),
            "translations": s.translations,
        }
        if s.label is not None and self.label_names is not None:
            meta["label_name"] = self.label_names[s.label]
        sample = Sample(uid=s.uid, image=image, caption=s.caption, audio=audio, sample_rate=rate,
                        label=s.label, meta=meta)
        return require_usable(sample)

