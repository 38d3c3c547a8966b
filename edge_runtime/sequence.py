"""Feature sequences (precomputed per-frame features, sensor channels) for a sequence tower, in numpy —
the one implementation both sides use (the training collator calls it too, so there is nothing to
hold in parity).

    item (T, D) real, finite, 1 ≤ T ≤ max_frames, D = dim
      → (x − mean) / std per channel                                       (T, D) float32
    batch of items → zero-padded at the end to T' = ⌈max_i T_i / patch⌉ · patch
      → frames (B, T', D) float32, frame_mask (B, T') int64 (1 = real frame)

:func:`check_sequence` refuses what a tower cannot take (:class:`InputError`, one line): not an array,
not 2-D, the wrong channel count, no frame, more than ``max_frames`` frames, NaN / inf, non-real dtypes.
The training side crops over-long items to ``max_frames`` instead (a counted repair,
:func:`crop_sequence`); a device app is told.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_runtime.spec import SequenceSpec
from edge_runtime.validate import InputError


def check_sequence(x: Any, spec: SequenceSpec, what: str = "sequence") -> np.ndarray:
    """``x`` as a (T, D) float32 array, or InputError (see the module docstring)."""
    if not isinstance(x, np.ndarray):
        raise InputError(f"{what} must be a (T, {spec.dim}) numpy array, got {type(x).__name__}")
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise InputError(f"{what} must hold real numbers, got dtype {x.dtype}")
    if x.ndim == 1 and spec.dim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise InputError(f"{what} must be (T, {spec.dim}) frames × channels, got shape {x.shape}")
    if x.shape[1] != spec.dim:
        raise InputError(f"{what} has {x.shape[1]} channels, the model takes {spec.dim}")
    if x.shape[0] == 0:
        raise InputError(f"{what} has no frame")
    if x.shape[0] > spec.max_frames:
        raise InputError(f"{what} has {x.shape[0]} frames, the model takes at most {spec.max_frames} "
                         f"(split it into windows)")
    with np.errstate(over="ignore"):
        out = x.astype(np.float32, copy=False)
    if not np.isfinite(out).all():
        bad = int((~np.isfinite(out)).any(axis=1).sum())
        raise InputError(f"{what} holds NaN or inf in {bad} of its {x.shape[0]} frames")
    return np.asarray(out)


def crop_sequence(x: np.ndarray, spec: SequenceSpec) -> tuple[np.ndarray, bool]:
    """The first ``max_frames`` frames of ``x`` and whether anything was cut (training side)."""
    return (x[: spec.max_frames], True) if x.shape[0] > spec.max_frames else (x, False)


def normalize_sequence(x: np.ndarray, spec: SequenceSpec) -> np.ndarray:
    """(T, D) → (x − mean) / std per channel, float32."""
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    return ((np.asarray(x, dtype=np.float32) - mean) / std).astype(np.float32, copy=False)


def pad_sequences(items: Sequence[np.ndarray], spec: SequenceSpec) -> tuple[np.ndarray, np.ndarray]:
    """Normalised (T_i, D) items → ``frames`` (B, T', D) float32, ``frame_mask`` (B, T') int64."""
    if not items:
        raise InputError("no sequence to embed")
    longest = max(x.shape[0] for x in items)
    t = -(-longest // spec.patch) * spec.patch
    frames = np.zeros((len(items), t, spec.dim), dtype=np.float32)
    mask = np.zeros((len(items), t), dtype=np.int64)
    for i, x in enumerate(items):
        frames[i, : x.shape[0]] = x
        mask[i, : x.shape[0]] = 1
    return frames, mask


def preprocess_sequences(items: Sequence[Any], spec: SequenceSpec) -> dict[str, np.ndarray]:
    """Raw (T_i, D) items → the tower's feed ``{"frames", "frame_mask"}`` (every item checked)."""
    checked = [normalize_sequence(check_sequence(x, spec, f"sequence {i}"), spec) for i, x in enumerate(items)]
    frames, mask = pad_sequences(checked, spec)
    return {"frames": frames, "frame_mask": mask}
