"""``EmbeddingIndex``: an on-device gallery of unit-norm embeddings with ids and JSON metadata,
searched by cosine similarity. Any modality can query any other (the embeddings share one joint
space): "find the images that match this sound" is ``index.search(model.embed_audio(clip), k)``.

Two stores (:mod:`edge_runtime.index.stores`): ``exact`` (brute force, deterministic, the
reference) and ``hnsw`` (usearch; sub-millisecond queries at a million items). ``kind="auto"``
(the default) is exact until the gallery reaches ``HNSW_FROM`` items, then moves its rows into
an HNSW graph once. ``search(..., exact=True)`` is always brute force.

On disk (``save(path)`` → a folder): ``index.json`` (format, version 2, dim, count, next_key,
bundle fingerprint, kind, store, dtype, HNSW parameters), the catalog (``ids.txt``,
``metadata.jsonl`` + offsets) and the store's files. The folder is written to a temporary sibling
and renamed into place, so a failed save leaves the previous gallery intact. Loading maps the
vectors from disk instead of reading them. Version-1 galleries (``embeddings.npz``) still load.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.index.catalog import Catalog, check_ids, encode_metadata
from edge_runtime.index.stores import ExactStore, HnswParams, HnswStore, VectorStore
from edge_runtime.validate import InputError, check_embeddings

FORMAT = "hssl-gallery"
VERSION = 2
KINDS = ("auto", "exact", "hnsw")
DTYPES = ("f32", "f16", "i8")
HNSW_FROM = 20_000  # kind="auto": the gallery size from which a query is faster on the graph (benchmarks/index.py)


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)


class EmbeddingIndex:
    def __init__(self, dim: int, bundle: str | None = None, kind: str = "auto", dtype: str = "f16",
                 hnsw: HnswParams | None = None) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise InputError(f"dim must be a positive integer, got {dim!r}")
        if kind not in KINDS or dtype not in DTYPES:
            raise InputError(f"kind must be one of {KINDS} and dtype one of {DTYPES}, got {kind!r}, {dtype!r}")
        self.dim, self.kind, self.dtype, self.hnsw = dim, kind, dtype, hnsw or HnswParams()
        self.bundle = bundle            # fingerprint of the bundle that made the embeddings
        self.threads = 0
        self._catalog = Catalog()
        self._store: VectorStore = HnswStore(dim, dtype, self.hnsw, self.threads) if kind == "hnsw" else ExactStore(dim)

    def tune(self, expansion_search: int | None = None, threads: int | None = None) -> None:
        """Search-time settings: the HNSW beam width ef (recall vs speed; saved with the gallery) and the
        threads used by batch adds and batch searches (0 = every core; a single query uses one)."""
        if expansion_search is not None:
            if isinstance(expansion_search, bool) or not isinstance(expansion_search, int) or expansion_search < 1:
                raise InputError(f"expansion_search must be a positive integer, got {expansion_search!r}")
            self.hnsw = replace(self.hnsw, expansion_search=expansion_search)
        if threads is not None:
            self.threads = threads
        self._store.configure(self.hnsw.expansion_search, self.threads)

    @property
    def store(self) -> str:
        """"exact" or "hnsw": the store that answers searches now."""
        return self._store.kind

    def __len__(self) -> int:
        return len(self._catalog)

    def __contains__(self, item: object) -> bool:
        return isinstance(item, str) and self._catalog.key(item) is not None

    @property
    def ids(self) -> list[str]:
        """The ids present, in insertion order."""
        return self._catalog.ids()

    @property
    def embeddings(self) -> np.ndarray:
        """(N, D) float32 unit rows in the order of :attr:`ids` (as stored: f16/i8 in an HNSW store)."""
        return self._store.vectors(self._catalog.live_keys())

    def metadata(self, id: str) -> dict[str, Any]:
        key = self._catalog.key(id) if isinstance(id, str) else None
        if key is None:
            raise InputError(f"unknown id {id!r}")
        return self._catalog.metadata(key)

    # ------------------------------------------------------------------ editing
    def add(self, ids: str | Sequence[str], embeddings: np.ndarray,
            metadata: dict[str, Any] | Sequence[dict[str, Any] | None] | None = None) -> None:
        """Add rows; ids must be new and unique; embeddings (N, D) or (D,) for one id.
        Nothing is added unless everything is valid."""
        ids = check_ids(ids)
        x = check_embeddings(embeddings, self.dim)
        if x.shape[0] != len(ids):
            raise InputError(f"{len(ids)} ids for {x.shape[0]} embeddings")
        if len(ids) == 0:
            raise InputError("nothing to add")
        self._catalog.check_new(ids)
        meta = encode_metadata(metadata, len(ids))
        rows = _unit_rows(x, "cannot index an all-zero embedding")
        if self.kind == "auto" and self.store == "exact" and len(self) + len(ids) >= HNSW_FROM:
            self._promote()
        self._store.add(self._catalog.add(ids, meta), rows)

    def _promote(self) -> None:
        """Move the exact store's rows into an HNSW graph (kind="auto" outgrowing brute force)."""
        assert isinstance(self._store, ExactStore)
        graph = HnswStore(self.dim, self.dtype, self.hnsw, self.threads)
        keys, rows = self._store.all_rows()
        if len(keys):
            graph.add(np.ascontiguousarray(keys), np.ascontiguousarray(rows))
        self._store = graph

    def remove(self, ids: str | Sequence[str]) -> None:
        self._store.remove(self._catalog.remove(check_ids(ids)))

    # ------------------------------------------------------------------ search
    def search(self, query: np.ndarray, k: int = 10, exact: bool = False) -> list[Hit]:
        """Top-k hits (best first) for one (D,) query; :meth:`search_batch` for a (Q, D) batch."""
        if not isinstance(query, np.ndarray) or query.ndim != 1:
            raise InputError(f"search takes one (D,) query, got {type(query).__name__} "
                             f"{getattr(query, 'shape', '')}; use search_batch for a (Q, D) batch")
        return self.search_batch(query[None], k, exact)[0]

    def search_batch(self, queries: np.ndarray, k: int = 10, exact: bool = False) -> list[list[Hit]]:
        """Top-k hits for each row of a (Q, D) batch; ``exact`` forces brute force on an HNSW store."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InputError(f"k must be a positive integer, got {k!r}")
        q = _unit_rows(check_embeddings(queries, self.dim, "query"), "cannot search with an all-zero query")
        cat = self._catalog
        return [[Hit(cat.id(int(key)), float(s), cat.metadata(int(key))) for key, s in zip(keys, scores)]
                for keys, scores in self._store.search(q, k, exact)]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the gallery folder atomically (temporary sibling, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            self._store.save(tmp)
            self._catalog.save(tmp)
            info = {"format": FORMAT, "version": VERSION, "dim": self.dim, "count": len(self),
                    "next_key": self._catalog.next_key, "bundle": self.bundle, "kind": self.kind, "store": self.store,
                    "dtype": self.dtype, "hnsw": asdict(self.hnsw)}
            (tmp / "index.json").write_text(json.dumps(info, indent=1))
            _replace_dir(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> "EmbeddingIndex":
        """Open a gallery folder; the vectors are memory-mapped (copied into memory on the first edit)."""
        path = Path(path)
        if not (path / "index.json").is_file():
            raise InputError(f"{path} is not a gallery (expected index.json)")
        try:
            info = json.loads((path / "index.json").read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"{path}: unreadable gallery ({e.__class__.__name__}: {e})") from None
        if not isinstance(info, dict) or info.get("format") != FORMAT or info.get("version") not in (1, VERSION):
            raise InputError(f"{path}: not a {FORMAT} v1/v{VERSION} gallery")
        if info["version"] == 1:
            return _load_v1(cls, path, info)
        try:
            dim, count, next_key = (int(info[k]) for k in ("dim", "count", "next_key"))
            index = cls(dim, info.get("bundle"), info["kind"], info["dtype"], HnswParams(**info["hnsw"]))
            store = info["store"]
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{path}: index.json is missing or has a bad field ({e})") from None
        try:
            index._catalog = Catalog.load(path, next_key, count)
        except (OSError, ValueError) as e:
            raise InputError(f"{path}: unreadable gallery catalog ({e.__class__.__name__}: {e})") from None
        if store == "hnsw":
            index._store = HnswStore.load(path, dim, count, index.dtype, index.hnsw)
        elif store == "exact":
            index._store = ExactStore.load(path, dim, count)
        else:
            raise InputError(f"{path}: unknown store {store!r}")
        return index


def _unit_rows(x: np.ndarray, zero_message: str) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms < 1e-12).any():
        raise InputError(zero_message)
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def _load_v1(cls: type[EmbeddingIndex], path: Path, info: dict[str, Any]) -> EmbeddingIndex:
    """A version-1 gallery (``embeddings.npz`` with ``embeddings`` and ``ids``; metadata in index.json)."""
    try:
        with np.load(path / "embeddings.npz", allow_pickle=False) as z:
            emb, ids = z["embeddings"], z["ids"]
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{path}: unreadable gallery ({e.__class__.__name__}: {e})") from None
    if emb.dtype != np.float32 or emb.ndim != 2 or ids.ndim != 1 or ids.dtype.kind != "U":
        raise InputError(f"{path}: embeddings must be (N, D) float32 and ids (N,) strings")
    meta = info.get("metadata")
    if emb.shape[0] != ids.shape[0] or emb.shape[0] != info.get("count") or emb.shape[1] != info.get("dim") \
            or not isinstance(meta, list) or len(meta) != emb.shape[0]:
        raise InputError(f"{path}: index.json and embeddings.npz disagree (count/dim/metadata)")
    index = cls(int(info["dim"]), info.get("bundle"), kind="exact")
    if len(ids):
        index.add([str(i) for i in ids], emb, meta)
    return index


def _replace_dir(new: Path, target: Path) -> None:
    """Move folder ``new`` to ``target``, replacing an existing gallery folder."""
    if not target.exists():
        os.replace(new, target)
        return
    if not target.is_dir() or not ((target / "index.json").is_file() or not any(target.iterdir())):
        raise InputError(f"{target} exists and is not a gallery folder; refusing to replace it")
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
