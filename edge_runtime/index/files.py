"""Galleries of files: embed a folder's images / audio into an ``EmbeddingIndex`` and keep it in
step with the folder (``sync_folder``: new files added, deleted ones removed, changed ones — by
size or modification time — re-embedded; everything else untouched)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.index.gallery import EmbeddingIndex
from edge_runtime.validate import InputError


def scan_media(folder: str | Path, suffixes: frozenset[str]) -> list[Path]:
    """Every file under ``folder`` (recursively) whose suffix is in ``suffixes``, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def file_stamp(p: Path) -> dict[str, int]:
    """What tells a changed file: its size and modification time (ns)."""
    st = p.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def index_files(model: Any, paths: Sequence[Path], root: Path | None = None, batch_size: int = 16,
                on_batch: Callable[[int, int], Any] | None = None, index: EmbeddingIndex | None = None,
                replace: bool = False) -> tuple[EmbeddingIndex, dict[str, str]]:
    """Embed image/audio files with an ``EdgeModel`` into ``index`` (a new one by default).

    Ids are the paths relative to ``root`` (or as given); metadata ``{"path", "modality", "size",
    "mtime_ns"}``. A file the runtime refuses (InputError) is skipped and reported in the returned
    ``{id: reason}``. Files already in the index are left alone, unless ``replace``: then their
    entry is replaced once the new embedding succeeded (a refused file keeps its old entry).
    ``on_batch(n_done, n_total)`` is called after each batch."""
    from edge_runtime.items import infer_modality

    index = index if index is not None else EmbeddingIndex(model.embed_dim, model.fingerprint)
    skipped: dict[str, str] = {}
    by_modality: dict[str, list[tuple[str, Path]]] = {}
    for p in paths:
        pid = str(p.relative_to(root)) if root else str(p)
        if replace or pid not in index:
            by_modality.setdefault(infer_modality(p), []).append((pid, p))
    done, total = 0, sum(len(items) for items in by_modality.values())
    for modality, items in by_modality.items():
        if modality not in model.modalities:
            skipped.update({pid: f"the bundle has no {modality} tower" for pid, _ in items})
            continue
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            ok, embs = _embed_chunk(model, chunk, modality, skipped)
            if ok:
                stale = [pid for pid, _ in ok if pid in index]
                if stale:
                    index.remove(stale)
                index.add([pid for pid, _ in ok], embs,
                          [{"path": str(p), "modality": modality, **file_stamp(p)} for _, p in ok])
            done += len(chunk)
            if on_batch:
                on_batch(done, total)
    return index, skipped


@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def sync_folder(model: Any, folder: Path, index: EmbeddingIndex, paths: Sequence[Path], batch_size: int = 16,
                on_batch: Callable[[int, int], Any] | None = None) -> SyncReport:
    """Bring ``index`` (ids relative to ``folder``) in step with ``paths`` (the folder's files now).

    The gallery must come from this bundle (fingerprint check). Work is proportional to what
    changed: the embedding calls are for new and changed files only. A gallery written before files
    were stamped (no size / mtime in the metadata) is re-embedded once."""
    if index.bundle and index.bundle != model.fingerprint:
        raise InputError(f"the gallery was built with another bundle (fingerprint {index.bundle[:12]}…, this one "
                         f"{model.fingerprint[:12]}…); rebuild it (hssl index --rebuild)")
    present = {str(p.relative_to(folder)): p for p in paths}
    report = SyncReport(removed=[i for i in index.ids if i not in present])
    if report.removed:
        index.remove(report.removed)
    new = [p for pid, p in present.items() if pid not in index]
    changed = [p for pid, p in present.items() if pid in index and _stamp_of(index, pid) != file_stamp(p)]
    _, report.skipped = index_files(model, new + changed, folder, batch_size, on_batch, index, replace=True)
    report.added = [pid for pid in (str(p.relative_to(folder)) for p in new) if pid not in report.skipped]
    report.updated = [pid for pid in (str(p.relative_to(folder)) for p in changed) if pid not in report.skipped]
    report.unchanged = len(present) - len(new) - len(changed)
    return report


def _stamp_of(index: EmbeddingIndex, pid: str) -> dict[str, int]:
    meta = index.metadata(pid)
    return {k: meta[k] for k in ("size", "mtime_ns") if k in meta}


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
