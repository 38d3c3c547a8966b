"""Decoding of media files with *repair or refuse* semantics.

Every reader either returns a clean array in the canonical layout of :class:`~hybridssl.data.sample.Sample`
or raises :class:`~hybridssl.data.sample.BadItem` with a short stable ``reason``; it never returns
something half-broken and never raises anything else for bad data.

Image  : any Pillow-readable file → ``(H, W, 3)`` ``uint8`` RGB.
         L / 1 / CMYK / YCbCr / LAB / HSV → ``convert("RGB")``; RGBA / LA / PA / P-with-transparency →
         alpha-composited on white, ``out = a·rgb + (1 − a)·255`` with ``a = alpha / 255``;
         16-bit and 32-bit integer greyscale (``I;16*``, ``I``) → ``round(v / 257)`` when the maximum
         exceeds 255 (16-bit range), else kept; float greyscale (``F``) → ``v·255`` when the range is within
         ``[0, 1]``, else clipped to ``[0, 255]``. EXIF orientation is applied. Multi-frame files give
         their first frame.
         Reasons: ``missing_file``, ``empty_file``, ``unreadable_image`` (Pillow cannot identify or
         fully decode it — truncation is detected by forcing ``load()``), ``image_too_large``
         (``H·W > max_pixels``, checked from the header before decoding), ``image_too_small``
         (a side < 2 px).
Audio  : any libsndfile-readable file → mono ``(T,)`` ``float32`` waveform, its sample rate and the
         list of repairs. Multi-channel audio is averaged over channels (repair ``"mono_mixed"``).
         Values are kept as read (PCM decodes into ``[-1, 1]``); only non-finite samples are refused.
         Reasons: ``missing_file``, ``empty_file``, ``unreadable_audio``, ``empty_audio`` (0 frames),
         ``audio_too_long`` (``frames / rate > max_seconds``, checked from the header before decoding),
         ``non_finite_audio``, ``bad_sample_rate`` (outside ``[1000, 384000]`` Hz).
Text   : :func:`clean_caption` normalises Unicode (NFC), turns control characters into spaces, strips
         and collapses whitespace; an empty result is returned as ``None`` (the dataset decides what
         that means and records it, e.g. the repair ``"empty_caption_dropped"``).
"""

from __future__ import annotations

import io
import os
import unicodedata
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from PIL import Image, ImageOps

from edge_runtime.png import file_problem, png_problem
from hybridssl.data.sample import BadItem, Sample

MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384_000
MIN_IMAGE_SIDE = 2

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_INT_GREY_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


# ----------------------------------------------------------------------------- files


def _check_file(path: str | Path, uid: str) -> Path:
    """The path as a :class:`Path`, or BadItem ``missing_file`` / ``empty_file``."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:  # FileNotFoundError, PermissionError, broken link...
        raise BadItem(uid, "missing_file", f"{p} ({e.__class__.__name__})") from None
    if not p.is_file():
        raise BadItem(uid, "missing_file", f"{p} is not a regular file")
    if st.st_size == 0:
        raise BadItem(uid, "empty_file", str(p))
    if not os.access(p, os.R_OK):
        raise BadItem(uid, "missing_file", f"{p} is not readable")
    return p


# ----------------------------------------------------------------------------- images


def _composite_on_white(img: Image.Image) -> np.ndarray:
    """RGBA → RGB over a white background: ``a·rgb + (1 − a)·255``."""
    rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)  # (H, W, 4)
    alpha = rgba[..., 3:4] / 255.0  # (H, W, 1)
    rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)  # (H, W, 3)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _grey_to_uint8(arr: np.ndarray, is_float: bool) -> np.ndarray:
    """High-bit-depth greyscale ``(H, W)`` → ``uint8`` ``(H, W)`` (see module docstring)."""
    a = arr.astype(np.float64)
    finite = a[np.isfinite(a)]
    if is_float:
        lo = float(finite.min()) if finite.size else 0.0
        hi = float(finite.max()) if finite.size else 0.0
        if lo >= 0.0 and hi <= 1.0:
            a = a * 255.0
    elif finite.size and float(finite.max()) > 255.0:
        a = a / 257.0  # 16-bit range → 8-bit (65535 / 257 = 255)
    a = np.nan_to_num(a, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow mode → ``(H, W, 3)`` ``uint8``."""
    mode = img.mode
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        return _composite_on_white(img)
    if mode in _INT_GREY_MODES or mode == "F":
        grey = _grey_to_uint8(np.asarray(img), is_float=(mode == "F"))  # (H, W)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


Source = str | Path | bytes  # a file, or its bytes (e.g. a column of a Parquet / Hugging Face dataset)


def _open_source(source: Source, uid: str) -> tuple[Path | io.BytesIO, str]:
    """A path checked by :func:`_check_file`, or the bytes as a stream (BadItem ``empty_file`` when
    there are none); and how to name it in messages."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise BadItem(uid, "empty_file", "0 bytes")
        return io.BytesIO(bytes(source)), f"<{len(source)} bytes>"
    p = _check_file(source, uid)
    return p, str(p)


def read_image(source: Source, uid: str, max_pixels: int = 64_000_000) -> np.ndarray:
    """Decode an image file (or its bytes) into ``(H, W, 3)`` ``uint8`` RGB, or raise :class:`BadItem`."""
    p, name = _open_source(source, uid)
    try:
        with warnings.catch_warnings():  # the size is checked below, against max_pixels: no Pillow warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(p)
        with img:
            w, h = img.size
            if w * h > max_pixels:
                raise BadItem(uid, "image_too_large", f"{w}x{h} > {max_pixels} pixels")
            img.load()  # forces a full decode: truncated / corrupt data fails here
            if img.format == "PNG":  # ...except a PNG whose image data end early, which Pillow zero-fills
                problem = file_problem(p) if isinstance(p, Path) else png_problem(io.BytesIO(p.getvalue()))
                if problem is not None:
                    raise BadItem(uid, "unreadable_image", f"{name}: truncated PNG: {problem}")
            try:
                img = ImageOps.exif_transpose(img)  # type: ignore[assignment]  # an Image either way
            except Exception:  # malformed EXIF: keep the stored orientation
                pass
            rgb = _to_rgb(img)  # (H, W, 3)
    except BadItem:
        raise
    except Image.DecompressionBombError as e:
        raise BadItem(uid, "image_too_large", str(e)) from None
    except Exception as e:  # UnidentifiedImageError, OSError (truncated), SyntaxError, ValueError...
        raise BadItem(uid, "unreadable_image", f"{name}: {e.__class__.__name__}: {e}") from None
    if min(rgb.shape[0], rgb.shape[1]) < MIN_IMAGE_SIDE:
        raise BadItem(uid, "image_too_small", f"{rgb.shape[1]}x{rgb.shape[0]}")
    return np.ascontiguousarray(rgb)


# ----------------------------------------------------------------------------- audio


def read_audio(
    source: Source, uid: str, max_seconds: float = 600.0
) -> tuple[np.ndarray, int, list[str]]:
    """Decode an audio file (or its bytes) into ``(mono (T,) float32, sample_rate, repairs)``, or
    raise :class:`BadItem`."""
    p, name = _open_source(source, uid)

    def stream() -> Any:
        return str(p) if isinstance(p, Path) else io.BytesIO(p.getvalue())
    try:
        info = sf.info(stream())
    except Exception as e:  # LibsndfileError (a RuntimeError), TypeError, ValueError...
        raise BadItem(uid, "unreadable_audio", f"{name}: {e}") from None
    rate = int(info.samplerate)
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise BadItem(uid, "bad_sample_rate", f"{rate} Hz not in [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}]")
    if info.frames == 0:
        raise BadItem(uid, "empty_audio", name)
    if 0 < info.frames and info.frames / rate > max_seconds:
        raise BadItem(uid, "audio_too_long", f"{info.frames / rate:.1f} s > {max_seconds} s")
    try:
        data, rate_read = sf.read(stream(), dtype="float32", always_2d=True)  # (T, C)
    except Exception as e:
        raise BadItem(uid, "unreadable_audio", f"{name}: {e}") from None
    if data.shape[0] == 0:
        raise BadItem(uid, "empty_audio", name)
    if data.shape[0] / rate_read > max_seconds:  # headers that under-report their length
        raise BadItem(uid, "audio_too_long", f"{data.shape[0] / rate_read:.1f} s > {max_seconds} s")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise BadItem(uid, "non_finite_audio", f"{bad} non-finite samples")
    repairs: list[str] = []
    if data.shape[1] > 1:
        wave = data.mean(axis=1, dtype=np.float32)  # (T,)
        repairs.append("mono_mixed")
    else:
        wave = data[:, 0]  # (T,)
    return np.ascontiguousarray(wave, dtype=np.float32), int(rate_read), repairs


# ----------------------------------------------------------------------------- text


def clean_caption(text: str | None, uid: str) -> str | None:
    """Normalised caption, or ``None`` when nothing is left.

    NFC-normalises, replaces control characters by spaces, strips and collapses runs of whitespace.
    ``None`` / empty / whitespace-only input gives ``None``: the *dataset* decides what a missing
    caption means and records the repair (``"empty_caption_dropped"``). A non-string caption
    (e.g. a number in a JSON manifest) is refused with BadItem ``bad_caption``.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise BadItem(uid, "bad_caption", f"caption is a {type(text).__name__}, not a string")
    text = unicodedata.normalize("NFC", text)
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)
    text = " ".join(text.split())
    return text or None


# ----------------------------------------------------------------------------- samples


def require_usable(sample: Sample) -> Sample:
    """Return ``sample`` unchanged, or raise BadItem ``no_usable_modality`` when it carries nothing.

    "Nothing" means no image, no caption, no audio and no (non-empty) precomputed features.
    """
    if not sample.modalities:
        raise BadItem(sample.uid, "no_usable_modality", "no image, caption, audio or features left")
    return sample
