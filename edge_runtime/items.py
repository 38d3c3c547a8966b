"""Raw inputs as batches: what one call of :meth:`edge_runtime.model.EdgeModel.embed` may be given
per modality (a single item or a list / stacked array of them), and the modality of an item when the
caller does not say (files by suffix, bytes by magic number, arrays by rank)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge_runtime.modalities import is_sequence
from edge_runtime.validate import InputError

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".snd", ".caf", ".w64"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".ico"})
_AUDIO_MAGIC = (b"RIFF", b"fLaC", b"OggS", b"FORM", b"ID3", b".snd", b"caff", b"\xff\xfb", b"\xff\xf3")


def first_item(item: Any) -> Any:
    return item[0] if isinstance(item, list) and item else item


#: A 2-D audio array whose second axis is this short is taken for (frames, channels), not (N, T).
MAX_CHANNELS = 8


def as_items(item: Any, modality: str) -> tuple[list[Any], bool]:
    """(items, was a single item) for a raw input of ``modality``."""
    if modality == "image":
        return as_batch(item, lambda x: isinstance(x, np.ndarray) and x.ndim == 4)
    if modality == "audio":
        clip = item[0] if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], np.ndarray) else item
        if isinstance(clip, np.ndarray) and clip.ndim == 2 and clip.shape[1] <= MAX_CHANNELS:
            raise InputError(f"a 2-D audio array is a batch (N, T) of mono waveforms; {clip.shape} looks like "
                             f"(frames, channels): mix it to mono first (wave.mean(axis=1))")
        return as_batch(item, lambda x: isinstance(x, np.ndarray) and x.ndim == 2, pair=True)
    if modality == "text":
        if isinstance(item, str):
            return [item], True
        if not isinstance(item, (list, tuple)):
            raise InputError(f"text must be a string or a list of strings, got {type(item).__name__}")
        return as_batch(item, lambda x: False)
    if is_sequence(modality):               # one (T, D) array, a list of them, or an (N, T, D) array
        return as_batch(item, lambda x: isinstance(x, np.ndarray) and x.ndim == 3)
    raise InputError(f"unknown modality {modality!r} (valid: image, text, audio, seq_<stream>)")


def as_batch(x: Any, is_array_batch: Any, pair: bool = False) -> tuple[list[Any], bool]:
    """(items, was a single item)."""
    if pair and isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], np.ndarray) \
            and not isinstance(x[1], (np.ndarray, tuple, list)):
        return [x], True  # (wave, sample_rate); the rate is checked by load_waveform
    if isinstance(x, (list, tuple)):
        if not x:
            raise InputError("the batch is empty")
        return list(x), False
    if is_array_batch(x):
        if x.shape[0] == 0:
            raise InputError("the batch is empty")
        return list(x), False
    return [x], True


def infer_modality(item: Any) -> str:
    """Best guess of an item's modality: files by suffix, bytes by magic number, arrays by rank."""
    if isinstance(item, Image.Image):
        return "image"
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], np.ndarray):
        return "audio"
    if isinstance(item, np.ndarray):
        return "image" if item.ndim in (3, 4) else "audio"
    if isinstance(item, (bytes, bytearray, memoryview)):
        head = bytes(item[:12])
        return "audio" if any(head.startswith(m) for m in _AUDIO_MAGIC) else "image"
    if isinstance(item, os.PathLike) or (isinstance(item, str) and Path(item).suffix.lower() in AUDIO_SUFFIXES | IMAGE_SUFFIXES
                                         and "\n" not in item and len(item) < 4096):
        return "audio" if Path(item).suffix.lower() in AUDIO_SUFFIXES else "image"
    if isinstance(item, str):
        return "text"
    raise InputError(f"cannot tell the modality of a {type(item).__name__}; pass modality=...")
