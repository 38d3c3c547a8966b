"""``Catalog``: a gallery's ids and JSON metadata, by key.

Keys are 0, 1, 2, … in insertion order and are never reused: a removed item keeps its key as a
tombstone (its id becomes ""), so the vector stores can keep their keys and insertion order stays
the tie-break order. The id → key map is built on first need (an edit, ``in``, ``metadata``), not
on load, so opening a million-item gallery to search it costs one split of ``ids.txt``.

On disk: ``ids.txt`` (one id per key, "\\n"-separated, "" for a removed key), ``metadata.jsonl``
(one JSON object per key) and ``metadata.offsets.npy`` ((n + 1,) int64 byte offsets into it, read
memory-mapped; a hit's metadata is decoded only when it is returned).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from edge_runtime.validate import InputError

IDS_FILE, META_FILE, OFFSETS_FILE = "ids.txt", "metadata.jsonl", "metadata.offsets.npy"


def check_ids(ids: Any) -> list[str]:
    """A non-empty string or a list of them; ids may not contain a newline (they are stored one per line)."""
    ids = [ids] if isinstance(ids, str) else ids
    if not isinstance(ids, Sequence) or isinstance(ids, bytes) or not all(isinstance(i, str) and i for i in ids):
        raise InputError("ids must be a non-empty string or a list of non-empty strings")
    bad = [i for i in ids if "\n" in i or "\r" in i]
    if bad:
        raise InputError(f"ids may not contain line breaks: {bad[:3]!r}")
    return list(ids)


def encode_metadata(metadata: Any, n: int) -> list[bytes]:
    """``n`` JSON-encoded metadata objects from None, one dict, or a list of n dicts (or None)."""
    if metadata is None:
        return [b"{}"] * n
    if isinstance(metadata, dict):
        metadata = [metadata]
    if not isinstance(metadata, Sequence) or isinstance(metadata, (str, bytes)) or len(metadata) != n:
        raise InputError(f"metadata must be a list of {n} dicts (or None)")
    out = []
    for m in metadata:
        m = {} if m is None else m
        if not isinstance(m, dict):
            raise InputError(f"metadata entries must be dicts, got {type(m).__name__}")
        try:
            out.append(json.dumps(m, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode())
        except (TypeError, ValueError) as e:
            raise InputError(f"metadata must be JSON-serialisable: {e}") from None
    return out


class Catalog:
    def __init__(self) -> None:
        self._ids: list[str] = []                        # by key; "" marks a removed key
        self._blob: bytes | np.ndarray = b""              # loaded metadata.jsonl (memory-mapped when read from disk)
        self._offsets = np.zeros(1, dtype=np.int64)       # byte offsets of the loaded keys' metadata
        self._new: list[bytes] = []                       # metadata of keys added since load
        self._keys: dict[str, int] | None = None          # id → key, built lazily
        self._live = 0

    def __len__(self) -> int:
        return self._live

    @property
    def next_key(self) -> int:
        return len(self._ids)

    def _key_map(self) -> dict[str, int]:
        if self._keys is None:
            self._keys = {i: k for k, i in enumerate(self._ids) if i}
        return self._keys

    def key(self, id: str) -> int | None:
        return self._key_map().get(id)

    def id(self, key: int) -> str:
        return self._ids[key]

    def live_keys(self) -> np.ndarray:
        """Keys of the items present, ascending (= insertion order)."""
        return np.array([k for k, i in enumerate(self._ids) if i], dtype=np.uint64)

    def ids(self) -> list[str]:
        return [i for i in self._ids if i]

    def metadata(self, key: int) -> dict[str, Any]:
        loaded = len(self._offsets) - 1
        raw = self._new[key - loaded] if key >= loaded else bytes(self._blob[self._offsets[key]:self._offsets[key + 1]])
        value = json.loads(raw)
        return value if isinstance(value, dict) else {}

    def check_new(self, ids: list[str]) -> None:
        keys, counts = self._key_map(), Counter(ids)
        dup = sorted({i for i in ids if i in keys or counts[i] > 1})
        if dup:
            raise InputError(f"duplicate ids: {dup[:5]}")

    def add(self, ids: list[str], metadata: list[bytes]) -> np.ndarray:
        """Append (ids already checked by :meth:`check_new`); returns their new keys."""
        keys = np.arange(self.next_key, self.next_key + len(ids), dtype=np.uint64)
        key_map = self._key_map()
        for k, i in zip(keys.tolist(), ids):
            key_map[i] = k
        self._ids.extend(ids)
        self._new.extend(metadata)
        self._live += len(ids)
        return keys

    def remove(self, ids: list[str]) -> np.ndarray:
        """Tombstone these ids (all must be present); returns their keys."""
        key_map = self._key_map()
        unknown = [i for i in ids if i not in key_map]
        if unknown:
            raise InputError(f"unknown ids: {unknown[:5]}")
        keys = np.array(sorted({key_map.pop(i) for i in ids}), dtype=np.uint64)
        for k in keys.tolist():
            self._ids[k] = ""
        self._live -= len(keys)
        return keys

    # ------------------------------------------------------------------ persistence
    def save(self, folder: Path) -> None:
        (folder / IDS_FILE).write_text("\n".join(self._ids), encoding="utf-8")
        loaded = len(self._offsets) - 1
        with open(folder / META_FILE, "wb") as f:
            if loaded:                                    # the loaded keys' metadata, copied as they are
                f.write(memoryview(cast(Any, self._blob))[: int(self._offsets[-1])])
            offsets = [self._offsets]
            pos = int(self._offsets[-1])
            new_offsets = []
            for raw in self._new:
                f.write(raw + b"\n")
                pos += len(raw) + 1
                new_offsets.append(pos)
        offsets.append(np.array(new_offsets, dtype=np.int64))
        np.save(folder / OFFSETS_FILE, np.concatenate(offsets))

    @classmethod
    def load(cls, folder: Path, next_key: int, live: int) -> "Catalog":
        """Read the catalog written by :meth:`save`; ``next_key``/``live`` come from index.json and are checked."""
        cat = cls()
        text = (folder / IDS_FILE).read_text(encoding="utf-8")
        cat._ids = text.split("\n") if next_key else []
        cat._offsets = np.load(folder / OFFSETS_FILE, mmap_mode="r", allow_pickle=False)
        size = (folder / META_FILE).stat().st_size
        cat._blob = np.memmap(folder / META_FILE, dtype=np.uint8, mode="r") if size else b""
        cat._live = sum(1 for i in cat._ids if i)
        offsets_ok = (cat._offsets.dtype == np.int64 and cat._offsets.shape == (next_key + 1,)
                      and int(cat._offsets[0]) == 0 and int(cat._offsets[-1]) == size)
        if len(cat._ids) != next_key or cat._live != live or not offsets_ok:
            raise InputError(f"{folder}: {IDS_FILE}, {OFFSETS_FILE} and index.json disagree (count/keys)")
        return cat
