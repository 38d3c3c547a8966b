"""Input validation of the edge runtime: every user input is checked here before it reaches
preprocessing or a back end, so bad input gives a clear :class:`InputError` (a ``ValueError``),
never a back-end crash.

Documented limits and clamps:

- Images: at most :data:`MAX_IMAGE_PIXELS` (40 M) pixels, checked from the file header *before*
  decoding (protects against decompression bombs); each side at least :data:`MIN_IMAGE_SIDE` px.
  Arrays must be ``(H, W, 3)`` ``uint8`` RGB.
- Audio: waveforms are real floating point (any float dtype, converted to float32), mono ``(T,)``,
  finite, non-empty, at a sample rate in ``[1000, 384000]`` Hz. Audio longer than the bundle's
  ``clip_seconds`` is **trimmed** to its first ``clip_seconds`` (exactly what training does); shorter
  audio is zero-padded.
- Text: a non-empty, non-blank string. Text longer than ``max_length`` tokens is **truncated** to
  ``max_length`` tokens including ``[CLS]``/``[SEP]`` (as in training); strings longer than
  :data:`MAX_TEXT_CHARS` characters are first cut to that many characters (bounded memory; the
  first ``max_length`` tokens of any realistic text lie far inside that prefix).
- Model inputs (:func:`check_feed`): exactly the manifest's input names, dtypes and fixed
  dimensions, a batch of at least one, finite floating values.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MAX_IMAGE_PIXELS = 40_000_000
MIN_IMAGE_SIDE = 2
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384_000
MAX_TEXT_CHARS = 20_000


class InputError(ValueError):
    """A user input the runtime cannot use (wrong type, shape, dtype, value or a corrupt file)."""


def check_image_array(image: Any) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array within the pixel limit, else InputError."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"expected an image array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InputError(f"image arrays must be uint8 RGB (H, W, 3), got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"image arrays must be (H, W, 3) RGB, got shape {image.shape}")
    check_image_size(image.shape[1], image.shape[0])
    return np.ascontiguousarray(image)


def check_image_size(width: int, height: int, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """Refuse images above ``max_pixels`` or with a side below MIN_IMAGE_SIDE."""
    if width * height > max_pixels:
        raise InputError(f"image of {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} pixels")
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InputError(f"image of {width}x{height} is too small (each side needs at least {MIN_IMAGE_SIDE} px)")


def check_sample_rate(sample_rate: Any) -> int:
    """An integer sample rate in [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE] Hz."""
    if sample_rate is None:
        raise InputError("a waveform needs its sample rate: pass sample_rate=... or a (wave, sample_rate) pair")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real):
        raise InputError(f"sample rate must be a number, got {type(sample_rate).__name__}")
    if not math.isfinite(float(sample_rate)) or float(sample_rate) != round(float(sample_rate)):
        raise InputError(f"sample rate must be a whole number of Hz, got {sample_rate}")
    rate = int(round(float(sample_rate)))
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise InputError(f"sample rate {rate} Hz is outside [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}]")
    return rate


def check_waveform(wave: Any) -> np.ndarray:
    """A non-empty finite mono (T,) float32 waveform, else InputError."""
    if not isinstance(wave, np.ndarray):
        raise InputError(f"expected a waveform array, got {type(wave).__name__}")
    if not np.issubdtype(wave.dtype, np.floating):
        raise InputError(f"waveforms must be floating point (e.g. float32 in [-1, 1]), got dtype {wave.dtype}")
    if wave.ndim != 1:
        raise InputError(f"a waveform must be mono (T,), got shape {wave.shape}; mix channels to mono first")
    if wave.size == 0:
        raise InputError("the waveform is empty")
    if not np.isfinite(wave).all():
        raise InputError(f"the waveform holds {int((~np.isfinite(wave)).sum())} non-finite samples")
    with np.errstate(over="ignore"):
        wave = wave.astype(np.float32, copy=False)
    if not np.isfinite(wave).all():
        raise InputError("the waveform holds values beyond the float32 range")
    return np.asarray(wave)


def check_text(text: Any) -> str:
    """A non-blank string, cut to MAX_TEXT_CHARS characters."""
    if not isinstance(text, str):
        raise InputError(f"expected a text string, got {type(text).__name__}")
    if not text.strip():
        raise InputError("cannot embed an empty text")
    text = text[:MAX_TEXT_CHARS]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(f"the text is not valid Unicode ({e.reason} at position {e.start})") from None
    return str(text)


def check_feed(feed: Any, inputs: Sequence[Mapping[str, Any]], what: str = "model") -> dict[str, np.ndarray]:
    """Model inputs against the manifest's input specs ``[{"name", "shape", "dtype"}]``.

    Named dimensions (``"batch"``, ``"time"``: any non-integer) are dynamic, and the same name must
    have the same size across inputs; the others are fixed. Returns the feed as contiguous arrays.
    """
    if not isinstance(feed, Mapping):
        raise InputError(f"{what} inputs must be a dict of arrays, got {type(feed).__name__}")
    expected = [spec["name"] for spec in inputs]
    if sorted(map(str, feed)) != sorted(expected):
        raise InputError(f"{what} expects inputs {expected}, got {sorted(map(str, feed))}")
    out: dict[str, np.ndarray] = {}
    dynamic: dict[str, set[int]] = {}
    for spec in inputs:
        name, value = spec["name"], feed[spec["name"]]
        if not isinstance(value, np.ndarray):
            raise InputError(f"{what} input {name!r} must be a numpy array, got {type(value).__name__}")
        if value.dtype != np.dtype(spec["dtype"]):
            raise InputError(f"{what} input {name!r} must be {spec['dtype']}, got {value.dtype}")
        shape = list(spec["shape"])
        if value.ndim != len(shape):
            raise InputError(f"{what} input {name!r} must have shape {shape}, got {value.shape}")
        for i, (want, got) in enumerate(zip(shape, value.shape)):
            if isinstance(want, int):
                if got != want:
                    raise InputError(f"{what} input {name!r} must have shape {shape}, got {value.shape} (axis {i})")
            else:
                dynamic.setdefault(str(want), set()).add(got)
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise InputError(f"{what} input {name!r} holds non-finite values")
        out[name] = np.ascontiguousarray(value)
    for axis, sizes in dynamic.items():
        if len(sizes) > 1:
            raise InputError(f"{what} inputs disagree on the {axis} size: {sorted(sizes)}")
        if min(sizes) < 1:
            raise InputError(f"{what} inputs hold an empty {axis} axis")
    return out


def check_token_feed(ids: np.ndarray, mask: np.ndarray | None, vocab_size: int) -> None:
    """Token ids in [0, vocab_size), a 0/1 attention mask with at least one real token per row."""
    lo, hi = (int(ids.min()), int(ids.max())) if ids.size else (0, 0)
    if lo < 0 or hi >= vocab_size:
        raise InputError(f"token ids must lie in [0, {vocab_size}), got [{lo}, {hi}]")
    if mask is not None:
        if mask.size and (int(mask.min()) < 0 or int(mask.max()) > 1):
            raise InputError("the attention mask must hold only 0 and 1")
        if mask.ndim == 2 and (mask.sum(axis=1) == 0).any():
            raise InputError("every attention-mask row needs at least one real token")


def check_frame_feed(frames: np.ndarray, mask: np.ndarray, spec: Any) -> None:
    """A sequence feed: a 0/1 frame mask with a real frame in every row, a time axis that is a multiple
    of the stream's ``patch`` and at most its ``max_tokens · patch`` (``spec``: a SequenceSpec)."""
    t = frames.shape[1]
    if t % spec.patch or t > spec.padded_frames:
        raise InputError(f"the sequence feed has {t} frames; the tower takes a multiple of {spec.patch} up to "
                         f"{spec.padded_frames} (pad with zeros and frame_mask 0)")
    if mask.size and (int(mask.min()) < 0 or int(mask.max()) > 1):
        raise InputError("the frame mask must hold only 0 and 1")
    if (mask.sum(axis=1) == 0).any():
        raise InputError("every frame-mask row needs at least one real frame")


def check_embeddings(x: Any, dim: int | None = None, what: str = "embeddings") -> np.ndarray:
    """(N, D) or (D,) finite real array → (N, D) float32 (a (D,) vector becomes (1, D))."""
    if not isinstance(x, np.ndarray):
        raise InputError(f"{what} must be a numpy array, got {type(x).__name__}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)) or x.dtype == np.bool_:
        raise InputError(f"{what} must be real numbers, got dtype {x.dtype}")
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] == 0:
        raise InputError(f"{what} must be (N, D) or (D,), got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise InputError(f"{what} have dimension {x.shape[1]}, expected {dim}")
    with np.errstate(over="ignore"):
        x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise InputError(f"{what} hold non-finite values")
    return np.asarray(x)
