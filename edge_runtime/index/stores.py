"""The two vector stores behind ``EmbeddingIndex``, both keyed by the catalog's uint64 keys.

``ExactStore``: the (N, D) float32 unit rows in key order; search is ``scores = Q G^T`` and the
top k by ``np.argpartition`` (O(N) per query), ties broken by key (= insertion order), so results
are exact and deterministic. Rows grow by doubling (a single add is amortised O(D), not a copy of
the gallery). On disk ``vectors.npy`` + ``keys.npy``, read memory-mapped; the first edit copies
them into memory.

``HnswStore``: an HNSW graph from `usearch <https://github.com/unum-cloud/usearch>`_ (cosine
metric, f32 / f16 / i8 storage), for galleries where O(N) per query is too slow. Scores are
``1 - d_cos`` as usearch computes them in the storage precision; ``exact=True`` searches it by
brute force (the reference). On disk ``vectors.usearch``, opened as a memory-mapped *view* (load
is O(1) in N); the first edit reads it into memory. usearch is imported only here, so a device
that keeps small galleries needs nothing beyond numpy.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_runtime.validate import InputError

Ranked = tuple[np.ndarray, np.ndarray]  # (keys (k,) uint64, scores (k,) float32), best first


class VectorStore(Protocol):
    kind: str

    def __len__(self) -> int: ...
    def add(self, keys: np.ndarray, rows: np.ndarray) -> None: ...
    def remove(self, keys: np.ndarray) -> None: ...
    def search(self, queries: np.ndarray, k: int, exact: bool) -> list[Ranked]: ...
    def vectors(self, keys: np.ndarray) -> np.ndarray: ...
    def save(self, folder: Path) -> None: ...
    def configure(self, expansion_search: int, threads: int) -> None: ...


def rank(keys: np.ndarray, scores: np.ndarray, k: int) -> Ranked:
    """The top ``k`` of (keys, scores): score descending, then key ascending — every tie at the
    k-th place is considered, so the result does not depend on the order the candidates came in."""
    if len(keys) == 0:
        return keys.astype(np.uint64), scores.astype(np.float32)
    k = min(k, len(keys))
    kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
    cand = np.flatnonzero(scores >= kth)
    order = cand[np.lexsort((keys[cand], -scores[cand]))][:k]
    return keys[order].astype(np.uint64), scores[order].astype(np.float32)


class ExactStore:
    kind = "exact"
    VECTORS, KEYS = "vectors.npy", "keys.npy"

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._rows: np.ndarray = np.zeros((0, dim), dtype=np.float32)  # capacity ≥ n; memory-mapped after load
        self._keys: np.ndarray = np.zeros(0, dtype=np.uint64)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def _reserve(self, extra: int) -> None:
        need = self._n + extra
        if need <= len(self._rows) and isinstance(self._rows, np.ndarray) and not isinstance(self._rows, np.memmap):
            return
        cap = max(need, 2 * len(self._rows), 64)
        rows, keys = np.zeros((cap, self.dim), np.float32), np.zeros(cap, np.uint64)
        rows[: self._n], keys[: self._n] = self._rows[: self._n], self._keys[: self._n]
        self._rows, self._keys = rows, keys

    def add(self, keys: np.ndarray, rows: np.ndarray) -> None:
        self._reserve(len(keys))
        self._rows[self._n : self._n + len(keys)] = rows
        self._keys[self._n : self._n + len(keys)] = keys
        self._n += len(keys)

    def remove(self, keys: np.ndarray) -> None:
        keep = ~np.isin(self._keys[: self._n], keys)
        rows, kept = np.ascontiguousarray(self._rows[: self._n][keep]), self._keys[: self._n][keep]
        self._rows, self._keys, self._n = rows, kept, len(kept)

    def search(self, queries: np.ndarray, k: int, exact: bool = True) -> list[Ranked]:
        keys = self._keys[: self._n]
        scores = queries @ self._rows[: self._n].T                           # (Q, N)
        return [rank(keys, row, k) for row in scores]

    def vectors(self, keys: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self._keys[: self._n], keys)                  # keys are stored ascending
        return np.array(self._rows[pos], dtype=np.float32)

    def configure(self, expansion_search: int, threads: int) -> None:
        pass  # brute force has no beam; its threads are BLAS's

    def all_rows(self) -> tuple[np.ndarray, np.ndarray]:
        return self._keys[: self._n], self._rows[: self._n]

    def save(self, folder: Path) -> None:
        np.save(folder / self.VECTORS, np.ascontiguousarray(self._rows[: self._n]))
        np.save(folder / self.KEYS, np.ascontiguousarray(self._keys[: self._n]))

    @classmethod
    def load(cls, folder: Path, dim: int, count: int) -> "ExactStore":
        store = cls(dim)
        try:
            rows = np.load(folder / cls.VECTORS, mmap_mode="r", allow_pickle=False)
            keys = np.load(folder / cls.KEYS, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputError(f"{folder}: unreadable gallery vectors ({e.__class__.__name__}: {e})") from None
        if rows.dtype != np.float32 or rows.shape != (count, dim) or keys.dtype != np.uint64 or keys.shape != (count,):
            raise InputError(f"{folder}: {cls.VECTORS}/{cls.KEYS} must be ({count}, {dim}) float32 and ({count},) uint64")
        if count and (np.any(np.diff(keys.astype(np.int64)) <= 0) or not np.isfinite(rows).all()
                      or np.abs(np.linalg.norm(rows, axis=1) - 1).max() > 1e-3):
            raise InputError(f"{folder}: the gallery's keys must ascend and its embeddings be finite unit rows")
        store._rows, store._keys, store._n = rows, keys, count
        return store


@dataclass(frozen=True)
class HnswParams:
    """HNSW hyper-parameters: graph degree M (``connectivity``), insertion and query beam widths
    (efConstruction, ef). The defaults reach recall@10 ≥ 0.98 on 1 M clustered 128-d embeddings
    (``benchmarks/index.py``); raise ``expansion_search`` for recall, lower it for speed."""

    connectivity: int = 32
    expansion_add: int = 64
    expansion_search: int = 256


class HnswStore:
    kind = "hnsw"
    FILE = "vectors.usearch"

    def __init__(self, dim: int, dtype: str = "f16", params: HnswParams | None = None, threads: int = 0) -> None:
        self.dim, self.dtype, self.params, self.threads = dim, dtype, params or HnswParams(), threads
        self._index = _usearch().Index(ndim=dim, metric="cos", dtype=dtype, **asdict(self.params))
        self._view_of: Path | None = None   # the file this read-only view maps, until the first edit

    def __len__(self) -> int:
        return len(self._index)

    def _mutable(self) -> Any:
        if self._view_of is not None:
            self._index = _usearch().Index.restore(str(self._view_of), view=False)
            self._index.expansion_search = self.params.expansion_search
            self._view_of = None
        return self._index

    def add(self, keys: np.ndarray, rows: np.ndarray) -> None:
        self._mutable().add(keys, rows, threads=self.threads)

    def remove(self, keys: np.ndarray) -> None:
        self._mutable().remove(keys)

    def search(self, queries: np.ndarray, k: int, exact: bool = False) -> list[Ranked]:
        if len(self._index) == 0:
            return [rank(np.zeros(0, np.uint64), np.zeros(0, np.float32), k) for _ in queries]
        m = self._index.search(queries, min(k, len(self._index)), exact=exact,
                               threads=1 if len(queries) == 1 else self.threads)
        if m.keys.ndim == 1:                     # usearch answers a batch of one with a single Matches
            return [rank(m.keys, 1.0 - m.distances, k)]
        return [rank(m.keys[i, :c], 1.0 - m.distances[i, :c], k) for i, c in enumerate(m.counts)]

    def vectors(self, keys: np.ndarray) -> np.ndarray:
        if len(keys) == 0:
            return np.zeros((0, self.dim), np.float32)
        return np.stack(self._index.get(keys, dtype=np.float32)).astype(np.float32)

    def configure(self, expansion_search: int, threads: int) -> None:
        self.params = replace(self.params, expansion_search=expansion_search)
        self._index.expansion_search = expansion_search
        self.threads = threads

    def save(self, folder: Path) -> None:
        if self._view_of is not None:            # unchanged since load: the file is already the index
            shutil.copyfile(self._view_of, folder / self.FILE)
        else:
            self._index.save(str(folder / self.FILE))

    @classmethod
    def load(cls, folder: Path, dim: int, count: int, dtype: str, params: HnswParams) -> "HnswStore":
        store = cls.__new__(cls)
        store.dim, store.dtype, store.params, store.threads = dim, dtype, params, 0
        try:
            store._index = _usearch().Index.restore(str(folder / cls.FILE), view=True)
        except (RuntimeError, ValueError, OSError) as e:
            raise InputError(f"{folder}: unreadable HNSW index ({e.__class__.__name__}: {e})") from None
        if store._index is None or store._index.ndim != dim or len(store._index) != count:
            raise InputError(f"{folder}: {cls.FILE} and index.json disagree (dim/count)")
        store._index.expansion_search = params.expansion_search
        store._view_of = folder / cls.FILE
        return store


def _usearch() -> Any:
    try:
        import usearch.index
    except ImportError:
        raise InputError("an HNSW gallery needs usearch: pip install 'hssl[runtime]' (or pip install usearch)") from None
    return usearch.index
