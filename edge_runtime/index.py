"""``EmbeddingIndex``: an on-device gallery of unit-norm embeddings with ids and JSON metadata,
searched by cosine similarity. Any modality can query any other (the embeddings share one joint
space): "find the images that match this sound" is ``index.search(model.embed_audio(clip), k)``.

search: ``scores = G q̂`` for the gallery G (N, D) (rows normalised on add) and the normalised
query q̂; the top k by ``np.argpartition`` (O(N)), then sorted by (score descending, insertion
order ascending), so exact ties are deterministic, including ties at the k-th place.

On disk (``save(path)`` → a folder): ``embeddings.npz`` (``embeddings`` (N, D) float32, ``ids``
(N,) unicode; read with ``allow_pickle=False``) and ``index.json`` (format, dim, count, metadata
list, an optional ``bundle`` fingerprint). The folder is written to a temporary sibling and
renamed into place, so a failed save leaves the previous gallery intact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.validate import InputError, check_embeddings

FORMAT = "hssl-gallery"
VERSION = 1


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)


class EmbeddingIndex:
    def __init__(self, dim: int, bundle: str | None = None) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise InputError(f"dim must be a positive integer, got {dim!r}")
        self.dim = dim
        self.bundle = bundle            # fingerprint of the bundle that made the embeddings
        self._emb = np.zeros((0, dim), dtype=np.float32)  # (N, D) unit rows
        self._ids: list[str] = []
        self._pos: dict[str, int] = {}
        self._meta: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item: object) -> bool:
        return item in self._pos

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    @property
    def embeddings(self) -> np.ndarray:
        return self._emb.copy()

    def metadata(self, id: str) -> dict[str, Any]:
        if id not in self._pos:
            raise InputError(f"unknown id {id!r}")
        return dict(self._meta[self._pos[id]])

    # ------------------------------------------------------------------ editing
    def add(self, ids: str | Sequence[str], embeddings: np.ndarray,
            metadata: dict[str, Any] | Sequence[dict[str, Any] | None] | None = None) -> None:
        """Add rows; ids must be new and unique; embeddings (N, D) or (D,) for one id."""
        ids = _check_ids(ids)
        x = check_embeddings(embeddings, self.dim)
        if x.shape[0] != len(ids):
            raise InputError(f"{len(ids)} ids for {x.shape[0]} embeddings")
        if len(ids) == 0:
            raise InputError("nothing to add")
        counts = Counter(ids)
        dup = sorted({i for i in ids if i in self._pos or counts[i] > 1})
        if dup:
            raise InputError(f"duplicate ids: {dup[:5]}")
        meta = self._check_metadata(metadata, len(ids))
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        if (norms < 1e-12).any():
            raise InputError("cannot index an all-zero embedding")
        self._extend(list(ids), (x / norms).astype(np.float32), meta)

    def _extend(self, ids: list[str], unit_rows: np.ndarray, meta: list[dict[str, Any]]) -> None:
        self._emb = np.concatenate([self._emb, unit_rows])
        for i in ids:
            self._pos[i] = len(self._ids)
            self._ids.append(i)
        self._meta.extend(meta)

    @staticmethod
    def _check_metadata(metadata: Any, n: int) -> list[dict[str, Any]]:
        if metadata is None:
            return [{} for _ in range(n)]
        if isinstance(metadata, dict):
            metadata = [metadata]
        if not isinstance(metadata, Sequence) or len(metadata) != n:
            raise InputError(f"metadata must be a list of {n} dicts (or None)")
        out = []
        for m in metadata:
            m = {} if m is None else m
            if not isinstance(m, dict):
                raise InputError(f"metadata entries must be dicts, got {type(m).__name__}")
            try:
                out.append(json.loads(json.dumps(m, allow_nan=False)))  # JSON-safe copy
            except (TypeError, ValueError) as e:
                raise InputError(f"metadata must be JSON-serialisable: {e}") from None
        return out

    def remove(self, ids: str | Sequence[str]) -> None:
        ids = _check_ids(ids)
        unknown = [i for i in ids if i not in self._pos]
        if unknown:
            raise InputError(f"unknown ids: {unknown[:5]}")
        drop = {self._pos[i] for i in ids}
        keep = [j for j in range(len(self._ids)) if j not in drop]
        self._emb = self._emb[keep]
        self._ids = [self._ids[j] for j in keep]
        self._meta = [self._meta[j] for j in keep]
        self._pos = {i: j for j, i in enumerate(self._ids)}

    # ------------------------------------------------------------------ search
    def search(self, query: np.ndarray, k: int = 10) -> list[Hit]:
        """Top-k hits (best first) for one (D,) query; :meth:`search_batch` for a (Q, D) batch."""
        if not isinstance(query, np.ndarray) or query.ndim != 1:
            raise InputError(f"search takes one (D,) query, got {type(query).__name__} "
                             f"{getattr(query, 'shape', '')}; use search_batch for a (Q, D) batch")
        return self.search_batch(query[None], k)[0]

    def search_batch(self, queries: np.ndarray, k: int = 10) -> list[list[Hit]]:
        """Top-k hits for each row of a (Q, D) batch of queries."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InputError(f"k must be a positive integer, got {k!r}")
        q = check_embeddings(queries, self.dim, "query")                     # (Q, D)
        norms = np.linalg.norm(q, axis=1, keepdims=True)
        if (norms < 1e-12).any():
            raise InputError("cannot search with an all-zero query")
        scores = (q / norms) @ self._emb.T                                   # (Q, N)
        return [self._top_k(row, k) for row in scores]

    def _top_k(self, scores: np.ndarray, k: int) -> list[Hit]:
        n = scores.shape[0]
        if n == 0:
            return []
        k = min(k, n)
        kth = scores[np.argpartition(-scores, k - 1)[k - 1]]                 # the k-th best score
        cand = np.flatnonzero(scores >= kth)                                 # every tie at the boundary
        order = cand[np.lexsort((cand, -scores[cand]))][:k]                  # score desc, then insertion order
        return [Hit(self._ids[j], float(scores[j]), dict(self._meta[j])) for j in order]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the gallery folder atomically (temporary sibling, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            np.savez(tmp / "embeddings.npz", embeddings=self._emb, ids=np.array(self._ids, dtype=str).reshape(-1))
            info = {"format": FORMAT, "version": VERSION, "dim": self.dim, "count": len(self), "bundle": self.bundle,
                    "metadata": self._meta}
            (tmp / "index.json").write_text(json.dumps(info, indent=1))
            _replace_dir(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> "EmbeddingIndex":
        path = Path(path)
        if not (path / "index.json").is_file() or not (path / "embeddings.npz").is_file():
            raise InputError(f"{path} is not a gallery (expected index.json and embeddings.npz)")
        try:
            info = json.loads((path / "index.json").read_text())
            with np.load(path / "embeddings.npz", allow_pickle=False) as z:
                emb, ids = z["embeddings"], z["ids"]
        except (OSError, ValueError, KeyError) as e:
            raise InputError(f"{path}: unreadable gallery ({e.__class__.__name__}: {e})") from None
        if not isinstance(info, dict) or info.get("format") != FORMAT or info.get("version") != VERSION:
            raise InputError(f"{path}: not a {FORMAT} v{VERSION} gallery")
        if emb.dtype != np.float32 or emb.ndim != 2 or ids.ndim != 1 or ids.dtype.kind != "U":
            raise InputError(f"{path}: embeddings must be (N, D) float32 and ids (N,) strings")
        if emb.shape[0] != ids.shape[0] or emb.shape[0] != info.get("count") or emb.shape[1] != info.get("dim") \
                or not isinstance(info.get("metadata"), list) or len(info["metadata"]) != emb.shape[0]:
            raise InputError(f"{path}: index.json and embeddings.npz disagree (count/dim/metadata)")
        index = cls(int(info["dim"]), info.get("bundle"))
        id_list = [str(i) for i in ids]
        if len(set(id_list)) != len(id_list) or not all(id_list):
            raise InputError(f"{path}: ids must be unique non-empty strings")
        if not np.isfinite(emb).all() or (len(emb) and np.abs(np.linalg.norm(emb, axis=1) - 1).max() > 1e-3):
            raise InputError(f"{path}: embeddings must be finite unit rows")
        index._extend(id_list, emb, index._check_metadata(info["metadata"], len(id_list)))  # bit-exact round trip
        return index


def _check_ids(ids: Any) -> list[str]:
    ids = [ids] if isinstance(ids, str) else ids
    if not isinstance(ids, Sequence) or isinstance(ids, bytes) or not all(isinstance(i, str) and i for i in ids):
        raise InputError("ids must be a non-empty string or a list of non-empty strings")
    return list(ids)


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


# ----------------------------------------------------------------------------- galleries of files


def scan_media(folder: str | Path, suffixes: frozenset[str]) -> list[Path]:
    """Every file under ``folder`` (recursively) whose suffix is in ``suffixes``, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def index_files(model: Any, paths: Sequence[Path], root: Path | None = None, batch_size: int = 16,
                on_batch: Any = None, index: EmbeddingIndex | None = None) -> tuple[EmbeddingIndex, dict[str, str]]:
    """Embed image/audio files with an ``EdgeModel`` into ``index`` (a new one by default).

    Ids are the paths relative to ``root`` (or as given); metadata ``{"path", "modality"}``. A file
    the runtime refuses (InputError) is skipped and reported in the returned ``{path: reason}``;
    files already in the index are left alone. ``on_batch(n_done)`` is called after each batch."""
    from edge_runtime.items import infer_modality

    index = index if index is not None else EmbeddingIndex(model.embed_dim, model.fingerprint)
    skipped: dict[str, str] = {}
    by_modality: dict[str, list[tuple[str, Path]]] = {}
    for p in paths:
        pid = str(p.relative_to(root)) if root else str(p)
        if pid not in index:
            by_modality.setdefault(infer_modality(p), []).append((pid, p))
    done = 0
    for modality, items in by_modality.items():
        if modality not in model.modalities:
            skipped.update({pid: f"the bundle has no {modality} tower" for pid, _ in items})
            continue
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            ok, embs = _embed_chunk(model, chunk, modality, skipped)
            if ok:
                index.add([pid for pid, _ in ok], embs, [{"path": str(p), "modality": modality} for _, p in ok])
            done += len(chunk)
            if on_batch:
                on_batch(done)
    return index, skipped


def _embed_chunk(model: Any, chunk: list[tuple[str, Path]], modality: str,
                 skipped: dict[str, str]) -> tuple[list[tuple[str, Path]], np.ndarray]:
    """Embed a batch; if one file is bad, embed the files one by one to find and skip it."""
    try:
        return chunk, model.embed([p for _, p in chunk], modality)
    except InputError:
        pass
    ok, rows = [], []
    for pid, p in chunk:
        try:
            rows.append(model.embed(p, modality))
            ok.append((pid, p))
        except InputError as e:
            skipped[pid] = str(e)
    return ok, (np.stack(rows) if rows else np.zeros((0, model.embed_dim), np.float32))
