"""Precomputed per-modality feature sequences, CMU-MOSEI-style (Zadeh et al., 2018, "Multimodal Language
Analysis in the Wild: CMU-MOSEI Dataset and Interpretable Dynamic Fusion Graph", ACL).

File layout — a plain ``.npz`` read with ``allow_pickle=False`` (no object arrays, so no pickle and no
code execution on load). For each feature modality ``m`` (e.g. ``"vision"``, ``"acoustic"``, ``"text"``):

* ``m``          ``(sum_i T_i, D_m)`` float — the frames of all N items, concatenated;
* ``m_offsets``  ``(N + 1,)`` int — item ``i`` is ``m[m_offsets[i] : m_offsets[i + 1]]`` ``(T_i, D_m)``;
  ``m_offsets[0] = 0``, non-decreasing, ``m_offsets[N] = sum_i T_i``.

Optional: ``labels`` ``(N,)`` int (class indices, ``-1`` = unlabeled) or float ``(N,)`` / ``(N, K)``
(regression / multi-label targets → ``Sample.meta["target"]``, ``Sample.label = None``); ``ids`` ``(N,)``
unicode (``'<U…'``; default uid: the item's index); ``label_names`` ``(C,)`` unicode (int labels only;
default ``["0", …, str(max)]``). Any other array is an error.

A malformed file (pickled arrays, inconsistent offsets, mismatched N, labels out of range, unknown
arrays) is a ValueError at construction. Item-level problems are skipped and counted in ``load_report``:
``non_finite_features`` (NaN/inf in any frame), ``non_finite_label`` (NaN/inf regression target),
``no_modality`` (every sequence of the item is empty). An empty sequence next to non-empty ones is
left out of ``Sample.features`` and counted as the repair ``empty_sequence_dropped``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.modalities import is_sequence, sequence_modality
from hybridssl.data.base import MultimodalDataset
from hybridssl.data.sample import Sample

RESERVED_ARRAYS = ("labels", "ids", "label_names")
OFFSETS_SUFFIX = "_offsets"


# ----------------------------------------------------------------------------- reading


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of the file, loaded eagerly with ``allow_pickle=False``."""
    try:
        z = np.load(path, allow_pickle=False)
    except ValueError as e:  # a pickled (non-npy) file
        raise ValueError(f"{path}: cannot be loaded without pickle ({e}); write it with write_feature_npz") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: expected an .npz archive of named arrays, got a single .npy array")
    arrays: dict[str, np.ndarray] = {}
    with z:
        for key in z.files:
            try:
                arrays[key] = z[key]
            except ValueError as e:  # "Object arrays cannot be loaded when allow_pickle=False"
                raise ValueError(
                    f"{path}: array {key!r} is an object array that needs pickle to load ({e}); hssl refuses "
                    "pickles — store each modality as concatenated frames + offsets (see write_feature_npz)"
                ) from None
            except (OSError, zipfile.BadZipFile, EOFError) as e:
                raise ValueError(f"{path}: array {key!r} is unreadable ({e})") from None
    return arrays


def _check_offsets(path: Path, m: str, frames: np.ndarray, offsets: np.ndarray) -> None:
    """ValueError unless ``offsets`` is a valid split of ``frames`` (see the module docstring)."""
    if offsets.ndim != 1 or offsets.dtype.kind not in "iu" or offsets.shape[0] < 2:
        raise ValueError(
            f"{path}: {m}{OFFSETS_SUFFIX} must be a 1-D integer array of length N + 1 >= 2, "
            f"got shape {offsets.shape} dtype {offsets.dtype}"
        )
    if offsets[0] != 0:
        raise ValueError(f"{path}: {m}{OFFSETS_SUFFIX}[0] must be 0, got {offsets[0]}")
    if np.any(np.diff(offsets.astype(np.int64)) < 0):
        k = int(np.argmax(np.diff(offsets.astype(np.int64)) < 0))
        raise ValueError(f"{path}: {m}{OFFSETS_SUFFIX} decreases at position {k} ({offsets[k]} > {offsets[k + 1]})")
    if offsets[-1] != frames.shape[0]:
        raise ValueError(
            f"{path}: {m}{OFFSETS_SUFFIX}[-1] = {offsets[-1]} but {m!r} has {frames.shape[0]} frames"
        )


def _bad_items(frames: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: item has at least one non-finite value in ``frames``."""
    bad_frame = ~np.isfinite(frames).all(axis=1)  # (sum_T,)
    cum = np.concatenate([[0], np.cumsum(bad_frame, dtype=np.int64)])  # (sum_T + 1,)
    return (cum[offsets[1:]] - cum[offsets[:-1]]) > 0  # (N,)


class FeatureSequenceDataset(MultimodalDataset):
    """Items with precomputed feature sequences ``{name: (T_i, D)}`` (see the module docstring)."""

    def __init__(self, npz_path: str | Path) -> None:
        super().__init__()
        self.path = Path(npz_path)
        if not self.path.is_file():
            raise FileNotFoundError(f"feature file not found: {self.path}")
        self.name = self.path.stem
        arrays = _load_npz(self.path)
        self._frames, self._offsets = self._split_modalities(arrays)
        self.modalities = tuple(sequence_modality(m) for m in sorted(self._frames))
        n = self._num_items()
        self.feature_dims = {m: int(f.shape[1]) for m, f in self._frames.items()}
        self._ids = self._read_ids(arrays.get("ids"), n)
        self._labels, self._targets, self.label_names = self._read_labels(
            arrays.get("labels"), arrays.get("label_names"), n
        )
        self._index = self._valid_items(n)

    # -- validation ----------------------------------------------------------------------------------------
    def _split_modalities(
        self, arrays: dict[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        names = sorted(k[: -len(OFFSETS_SUFFIX)] for k in arrays if k.endswith(OFFSETS_SUFFIX))
        unknown = sorted(set(arrays) - set(RESERVED_ARRAYS) - set(names) - {m + OFFSETS_SUFFIX for m in names})
        if unknown:
            raise ValueError(
                f"{self.path}: unexpected arrays {unknown}; a modality 'm' needs 'm' and 'm{OFFSETS_SUFFIX}', "
                f"other allowed arrays are {RESERVED_ARRAYS}"
            )
        if not names:
            raise ValueError(f"{self.path}: no feature modality (no '<name>{OFFSETS_SUFFIX}' array)")
        bad = [m for m in names if not is_sequence(sequence_modality(m))]
        if bad:
            raise ValueError(f"{self.path}: feature stream names {bad} must be identifiers of at most 60 characters")
        frames, offsets = {}, {}
        for m in names:
            if m not in arrays:
                raise ValueError(f"{self.path}: '{m}{OFFSETS_SUFFIX}' present but array {m!r} is missing")
            f = arrays[m]
            if f.ndim != 2 or f.dtype.kind not in "fiu":
                raise ValueError(f"{self.path}: {m!r} must be a 2-D numeric (sum_T, D) array, got {f.shape} {f.dtype}")
            _check_offsets(self.path, m, f, arrays[m + OFFSETS_SUFFIX])
            frames[m] = f.astype(np.float32, copy=False)  # (sum_T, D)
            offsets[m] = arrays[m + OFFSETS_SUFFIX].astype(np.int64)  # (N + 1,)
        return frames, offsets

    def _num_items(self) -> int:
        counts = {m: o.shape[0] - 1 for m, o in self._offsets.items()}
        if len(set(counts.values())) != 1:
            raise ValueError(f"{self.path}: modalities disagree on the number of items: {counts}")
        return next(iter(counts.values()))

    def _read_ids(self, ids: np.ndarray | None, n: int) -> list[str]:
        if ids is None:
            return [str(i) for i in range(n)]
        if ids.dtype.kind != "U" or ids.shape != (n,):
            raise ValueError(f"{self.path}: 'ids' must be ({n},) unicode strings, got {ids.shape} {ids.dtype}")
        return [str(s) for s in ids]

    def _read_labels(
        self, labels: np.ndarray | None, names: np.ndarray | None, n: int
    ) -> tuple[np.ndarray | None, np.ndarray | None, list[str] | None]:
        """``(class indices (N,) or None, float targets (N, ...) or None, label names or None)``."""
        if names is not None and (names.dtype.kind != "U" or names.ndim != 1):
            raise ValueError(f"{self.path}: 'label_names' must be 1-D unicode strings, got {names.shape} {names.dtype}")
        if labels is None:
            if names is not None:
                raise ValueError(f"{self.path}: 'label_names' given without 'labels'")
            return None, None, None
        if labels.shape[:1] != (n,):
            raise ValueError(f"{self.path}: 'labels' must have {n} rows, got shape {labels.shape}")
        if labels.dtype.kind == "f":
            if names is not None:
                raise ValueError(f"{self.path}: 'label_names' given but 'labels' are float regression targets")
            return None, labels.astype(np.float32), None
        if labels.dtype.kind not in "iu" or labels.ndim != 1:
            raise ValueError(f"{self.path}: 'labels' must be (N,) int or float, got {labels.shape} {labels.dtype}")
        labels = labels.astype(np.int64)
        c = len(names) if names is not None else int(labels.max(initial=-1)) + 1
        if np.any(labels < -1) or np.any(labels >= c):
            raise ValueError(f"{self.path}: class indices must lie in [-1, {c}) (-1 = unlabeled), got "
                             f"[{labels.min()}, {labels.max()}]")
        label_names = [str(s) for s in names] if names is not None else [str(k) for k in range(c)]
        return labels, None, (label_names if c > 0 else None)

    def _valid_items(self, n: int) -> list[int]:
        """Indices of usable items; the others are counted in ``load_report``."""
        bad = np.zeros(n, dtype=bool)
        for m, f in self._frames.items():
            bad_m = _bad_items(f, self._offsets[m])  # (N,)
            for i in np.flatnonzero(bad_m & ~bad):
                self.load_report.skip(self._ids[i], "non_finite_features", f"modality {m!r}")
            bad |= bad_m
        if self._targets is not None:
            flat = self._targets.reshape(n, -1)  # (N, K)
            bad_t = ~np.isfinite(flat).all(axis=1) & ~bad
            for i in np.flatnonzero(bad_t):
                self.load_report.skip(self._ids[i], "non_finite_label", "")
            bad |= bad_t
        lengths = np.stack([np.diff(o) for o in self._offsets.values()])  # (M, N)
        empty_all = (lengths == 0).all(axis=0) & ~bad
        for i in np.flatnonzero(empty_all):
            self.load_report.skip(self._ids[i], "no_modality", "every feature sequence is empty")
        bad |= empty_all
        n_dropped = int(((lengths == 0) & ~bad[None, :]).sum())
        if n_dropped:
            self.load_report.repair("empty_sequence_dropped", n_dropped)
        return [int(i) for i in np.flatnonzero(~bad)]

    # -- dataset ---------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._index)

    def caption_at(self, i: int) -> str | None:
        self._check_index(i)
        return None

    def label_at(self, i: int) -> int | None:
        j = self._index[self._check_index(i)]
        if self._labels is None or self._labels[j] < 0:
            return None
        return int(self._labels[j])

    def __getitem__(self, i: int) -> Sample:
        j = self._index[self._check_index(i)]
        feats: dict[str, np.ndarray] = {}
        for m, f in self._frames.items():
            a, b = self._offsets[m][j], self._offsets[m][j + 1]
            if b > a:
                feats[m] = np.array(f[a:b], dtype=np.float32)  # (T_i, D_m), a copy
        meta: dict[str, Any] = {"repairs": [], "index": j, "source": str(self.path)}
        if self._targets is not None:
            t = self._targets[j]
            meta["target"] = float(t) if t.ndim == 0 else t.copy()
        return Sample(uid=self._ids[j], features=feats, label=self.label_at(i), meta=meta)


# ----------------------------------------------------------------------------- writing


def write_feature_npz(
    path: str | Path,
    features: Mapping[str, Sequence[np.ndarray]],
    labels: Sequence[int] | Sequence[float] | np.ndarray | None,
    ids: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    compress: bool = False,
) -> Path:
    """Write ``features[m][i]`` ``(T_i, D_m)`` (+ labels, ids, label names) in the layout read above.

    Values are written as given (no finiteness check, so broken files can be produced for tests);
    shapes and names are validated (ValueError).
    """
    if not features:
        raise ValueError("features is empty: at least one modality is required")
    n_items = {m: len(seqs) for m, seqs in features.items()}
    if len(set(n_items.values())) != 1:
        raise ValueError(f"modalities disagree on the number of items: {n_items}")
    n = next(iter(n_items.values()))
    if n == 0:
        raise ValueError("no items to write")
    arrays: dict[str, np.ndarray] = {}
    for m, seqs in features.items():
        if not m.isidentifier() or m in RESERVED_ARRAYS or m.endswith(OFFSETS_SUFFIX):
            raise ValueError(
                f"invalid modality name {m!r} (must be an identifier, not in {RESERVED_ARRAYS}, "
                f"not ending in '{OFFSETS_SUFFIX}')"
            )
        seqs = [np.asarray(s) for s in seqs]
        dims = {s.shape[1] if s.ndim == 2 else None for s in seqs}
        if None in dims or len(dims) != 1:
            raise ValueError(f"{m!r}: every item must be a 2-D (T_i, D) array with the same D, got dims {dims}")
        lengths = np.array([s.shape[0] for s in seqs], dtype=np.int64)  # (N,)
        arrays[m] = np.concatenate(seqs, axis=0).astype(np.float32)  # (sum_T, D)
        arrays[m + OFFSETS_SUFFIX] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)  # (N + 1,)
    if labels is not None:
        lab = np.asarray(labels)
        if lab.shape[:1] != (n,) or lab.dtype.kind not in "iuf":
            raise ValueError(f"labels must be numeric with {n} rows, got {lab.shape} {lab.dtype}")
        arrays["labels"] = lab.astype(np.int64) if lab.dtype.kind in "iu" else lab.astype(np.float32)
    if ids is not None:
        if len(ids) != n or not all(isinstance(s, str) for s in ids):
            raise ValueError(f"ids must be {n} strings")
        arrays["ids"] = np.array(list(ids), dtype=str)
    if label_names is not None:
        if labels is None:
            raise ValueError("label_names given without labels")
        arrays["label_names"] = np.array([str(s) for s in label_names], dtype=str)
    out = Path(path)
    with open(out, "wb") as f:  # a file object: numpy must not append ".npz" to the name
        save: Any = np.savez_compressed if compress else np.savez
        save(f, **arrays)
    return out
