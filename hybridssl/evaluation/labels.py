"""Label-fraction splits for low-label evaluation (1 %, 5 %, 10 %, 100 % of the labels).

Given a label vector ``labels`` of shape (n,) with −1 marking unlabelled items, the labelled pool
is ``P = {i : labels[i] >= 0}`` and ``P_c = {i ∈ P : labels[i] = c}``. A split is built in two
stratified stages, each with its own generator so the stages never influence each other:

1. Validation, ``np.random.default_rng([seed, 0])``: per class (ascending class id) a random
   permutation of ``P_c``; the first ``v_c`` items go to validation, where
   ``v_c = clip(round(val_fraction · |P_c|), 1, |P_c| − 1)`` for ``|P_c| >= 2`` and ``v_c = 0``
   for ``|P_c| = 1`` (so every class keeps at least one item for training).
   ``val_fraction = 0`` gives an empty validation set. The validation set does not depend on
   ``fraction``: all label fractions of one seed share the same validation set.
2. Training, ``np.random.default_rng([seed, 1])``: with ``R_c = P_c \\ val`` and
   ``n_rest = Σ_c |R_c|``, the total ``T = round(fraction · n_rest)`` is split over classes by
   largest remainder (Hamilton) on the quotas ``q_c = fraction · |R_c|``: ``floor(q_c)`` each,
   then one more to the classes with the largest fractional parts (ties → smaller class id).
   If ``fraction · n_rest >= K`` (K = number of classes in the pool) every class gets at least
   one item, taken from the classes holding the most. Otherwise some classes may get none; they
   are reported in ``missing_classes``. The first ``a_c`` items of a per-class random
   permutation of ``R_c`` are taken; the permutation does not depend on ``fraction``, so the
   training sets of one seed are nested whenever the per-class counts grow with ``fraction``.

``round`` is round-half-up (``floor(x + 0.5)``). Returned indices index ``labels`` and are sorted
int64 arrays; train and validation are disjoint and never contain an unlabelled item.
"""

from __future__ import annotations

import json
import math
import os
from typing import Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must have an integer dtype, got {labels.dtype}")
    if labels.size and labels.min() < -1:
        raise ValueError("labels must be >= 0 (labelled) or -1 (unlabelled)")
    if not np.any(labels >= 0):
        raise ValueError("labels contain no labelled item (all are -1 or the array is empty)")
    return labels.astype(np.int64)


def _check_fraction(name: str, value: float, low_open: bool) -> float:
    value = float(value)
    ok = (0.0 < value <= 1.0) if low_open else (0.0 <= value < 1.0)
    if not math.isfinite(value) or not ok:
        interval = "(0, 1]" if low_open else "[0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {value}")
    return value


def _val_count(n_c: int, val_fraction: float) -> int:
    """Validation items for a class of size n_c: round(val_fraction·n_c) clipped to [1, n_c − 1]."""
    if n_c < 2 or val_fraction == 0.0:
        return 0
    return min(max(_round_half_up(val_fraction * n_c), 1), n_c - 1)


def _largest_remainder(rest: np.ndarray, fraction: float) -> np.ndarray:
    """Per-class training counts a (K,) from per-class remaining sizes rest (K,), see module doc."""
    quotas = fraction * rest.astype(np.float64)                     # (K,)
    total = _round_half_up(fraction * float(rest.sum()))
    counts = np.floor(quotas).astype(np.int64)                      # (K,)
    left = total - int(counts.sum())
    remainders = quotas - counts                                    # (K,)
    order = np.argsort(-remainders, kind="stable")                  # largest first, ties → small id
    counts[order[:left]] += 1
    if fraction * float(rest.sum()) >= len(rest):
        for c in np.flatnonzero((counts == 0) & (rest > 0)):
            # take one item from the class holding the most (ties → most over its quota, then small id)
            over = counts - quotas
            donor = max(range(len(rest)), key=lambda j: (counts[j], over[j], -j))
            counts[donor] -= 1
            counts[c] += 1
    return counts


def label_fraction_split(
    labels: np.ndarray, fraction: float, seed: int, val_fraction: float = 0.1
) -> dict[str, np.ndarray]:
    """Stratified validation set and ``fraction`` labelled training subset (see module doc).

    Returns {"train": (n_train,) int64, "val": (n_val,) int64, "missing_classes": (m,) int64},
    all sorted; ``missing_classes`` are classes of the labelled pool with no training item.
    """
    labels = _check_labels(labels)                                  # (n,)
    fraction = _check_fraction("fraction", fraction, low_open=True)
    val_fraction = _check_fraction("val_fraction", val_fraction, low_open=False)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")

    classes = np.unique(labels[labels >= 0])                        # (K,)
    rng_val = np.random.default_rng([int(seed), 0])
    val_parts, rest_parts = [], []
    for c in classes:
        members = rng_val.permutation(np.flatnonzero(labels == c))  # (|P_c|,)
        v = _val_count(len(members), val_fraction)
        val_parts.append(members[:v])
        rest_parts.append(members[v:])

    rest_sizes = np.array([len(r) for r in rest_parts], dtype=np.int64)  # (K,)
    counts = _largest_remainder(rest_sizes, fraction)               # (K,)
    rng_train = np.random.default_rng([int(seed), 1])
    train_parts = [rng_train.permutation(np.sort(r))[:a] for r, a in zip(rest_parts, counts)]

    return {
        "train": np.sort(np.concatenate(train_parts)).astype(np.int64),
        "val": np.sort(np.concatenate(val_parts)).astype(np.int64),
        "missing_classes": classes[counts == 0].astype(np.int64),
    }


def _as_index_list(name: str, arr: np.ndarray) -> list[int]:
    arr = np.asarray(arr)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise ValueError(f"split entry {name!r} must be a 1-D integer array, got {arr.dtype} {arr.shape}")
    return [int(v) for v in arr]


def save_splits(path: PathLike, splits: dict[str, dict[str, np.ndarray]]) -> None:
    """Write {split name: {"train": idx, "val": idx, ...}} as JSON (lists of ints)."""
    payload: dict[str, dict[str, list[int]]] = {}
    for name, split in splits.items():
        if not isinstance(split, dict):
            raise ValueError(f"split {name!r} must be a dict of index arrays, got {type(split).__name__}")
        payload[str(name)] = {str(k): _as_index_list(f"{name}/{k}", v) for k, v in split.items()}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f)


def load_splits(path: PathLike) -> dict[str, dict[str, np.ndarray]]:
    """Read splits written by :func:`save_splits`; every entry comes back as an int64 array."""
    with open(path, encoding="utf-8") as f:
        payload = json.load(f)
    if not isinstance(payload, dict) or not all(isinstance(v, dict) for v in payload.values()):
        raise ValueError(f"{path}: expected a JSON object of objects of index lists")
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, split in payload.items():
        for k, v in split.items():
            if not isinstance(v, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in v):
                raise ValueError(f"{path}: entry {name}/{k} is not a list of ints")
        out[name] = {k: np.asarray(v, dtype=np.int64) for k, v in split.items()}
    return out
