"""Teacher-embedding cache: the teacher's embeddings of every training item, computed once.

With the cache the teacher is not run during distillation (faster, and the student may read a
different image resolution than the teacher did). Layout of the cache folder (default
``TEACHER_RUN/distill_cache``)::

    embeddings.safetensors   "<m>" (n_m, E) float32 L2-normalised teacher embeddings and
                             "<m>.positions" (n_m,) int64 training-set positions, per modality m
    fingerprint.json         what the embeddings are a function of (see :func:`fingerprint`)

The fingerprint holds the sha256 of the teacher's weights, the data section of the run config, the
seed, the number of training items, the teacher's preprocessing spec and the modalities. A cache
whose fingerprint differs from the current one is stale: it is refused with the differing fields
named, or rebuilt when asked (``rebuild=True``). The folder is written under a temporary name and
renamed into place, so a killed build never leaves a cache that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from edge_runtime.bundle import sha256_file
from hybridssl.data.tagged import PositionTagged
from hybridssl.evaluation.embed import extract_embeddings

CACHE_FORMAT = 1
FILES = ("embeddings.safetensors", "fingerprint.json")
Progress = Callable[[str, int, int], None]


def fingerprint(checkpoint_folder: Path, data: dict[str, Any], seed: int, n_items: int,
                preprocess: dict[str, Any], modalities: Sequence[str]) -> dict[str, Any]:
    """The JSON-able identity of a cache: teacher weights, data, seed, size, preprocessing, modalities."""
    fp = {
        "format": CACHE_FORMAT,
        "teacher_weights_sha256": sha256_file(Path(checkpoint_folder) / "model.safetensors"),
        "data": data,
        "seed": int(seed),
        "n_items": int(n_items),
        "preprocess": preprocess,
        "modalities": list(modalities),
    }
    return json.loads(json.dumps(fp))  # tuples → lists, as they come back from fingerprint.json


class TeacherCache:
    """Per-modality teacher embeddings addressed by training-set position."""

    def __init__(self, embeddings: dict[str, Tensor], positions: dict[str, Tensor], n_items: int) -> None:
        self.embeddings = embeddings                                    # m → (n_m, E)
        self.positions = positions                                      # m → (n_m,) int64
        self.n_items = n_items
        self._row: dict[str, Tensor] = {}
        for m, pos in positions.items():
            if pos.numel() and (int(pos.min()) < 0 or int(pos.max()) >= n_items):
                raise ValueError(f"teacher cache: {m} positions fall outside the {n_items} training items")
            row = torch.full((n_items,), -1, dtype=torch.long)          # (N,) position → cache row
            row[pos] = torch.arange(pos.numel())
            self._row[m] = row

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.embeddings)

    def lookup(self, modality: str, positions: np.ndarray) -> tuple[Tensor, Tensor]:
        """For batch items at ``positions`` (b,): (batch rows that have ``modality`` (k,), embeddings (k, E))."""
        if modality not in self._row:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, 0)
        pos = torch.as_tensor(np.asarray(positions, dtype=np.int64))
        if pos.numel() and (int(pos.min()) < 0 or int(pos.max()) >= self.n_items):
            raise ValueError(f"training positions outside the cache's {self.n_items} items: the cache does not "
                             "belong to this dataset")
        rows = self._row[modality][pos]                                 # (b,) −1 = absent
        have = torch.nonzero(rows >= 0).flatten()                       # (k,)
        return have, self.embeddings[modality][rows[have]]              # (k,), (k, E)


def build_cache(model, dataset, spec, tokenizer, chunk: int = 512, progress: Progress | None = None) -> TeacherCache:
    """Embed every item of ``dataset`` with ``model`` (inference mode), ``chunk`` items at a time."""
    n = len(dataset)
    embs: dict[str, list[np.ndarray]] = {}
    pos: dict[str, list[np.ndarray]] = {}
    for start in range(0, n, chunk):
        if progress is not None:
            progress("caching teacher embeddings", start, n)
        part = extract_embeddings(model, PositionTagged(dataset, range(start, min(n, start + chunk))), spec, tokenizer)
        positions = part.positions                                      # (n_part,)
        for m, e in part.by_modality.items():
            embs.setdefault(m, []).append(e)
            pos.setdefault(m, []).append(positions[part.index[m]])
    if progress is not None:
        progress("caching teacher embeddings", n, n)
    return TeacherCache({m: torch.from_numpy(np.concatenate(v)).float() for m, v in embs.items()},
                        {m: torch.from_numpy(np.concatenate(v)).long() for m, v in pos.items()}, n)


def save_cache(cache: TeacherCache, folder: Path, fp: dict[str, Any]) -> None:
    """Write ``cache`` and its fingerprint to ``folder`` (replacing it) via a temporary sibling."""
    folder = Path(folder)
    tmp = folder.with_name(f".tmp-{folder.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    tensors = {**{m: e.contiguous() for m, e in cache.embeddings.items()},
               **{f"{m}.positions": p.contiguous() for m, p in cache.positions.items()}}
    save_file(tensors, str(tmp / "embeddings.safetensors"))
    (tmp / "fingerprint.json").write_text(json.dumps(fp, indent=1, sort_keys=True))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def read_fingerprint(folder: Path) -> dict[str, Any] | None:
    """The stored fingerprint, or None when ``folder`` holds no complete cache."""
    folder = Path(folder)
    if not all((folder / f).is_file() for f in FILES):
        return None
    try:
        return json.loads((folder / "fingerprint.json").read_text())
    except ValueError as e:
        raise ValueError(f"teacher cache {folder} is corrupt ({e}); rebuild it (--rebuild-cache) or delete it") from e


def mismatched_fields(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))


def load_cache(folder: Path) -> TeacherCache:
    folder = Path(folder)
    try:
        tensors = load_file(str(folder / "embeddings.safetensors"))
    except (OSError, SafetensorError) as e:
        raise ValueError(f"teacher cache {folder} is corrupt ({e}); rebuild it (--rebuild-cache) or delete it") from e
    fp = read_fingerprint(folder) or {}
    mods = [k for k in tensors if not k.endswith(".positions")]
    missing = [m for m in mods if f"{m}.positions" not in tensors]
    if missing:
        raise ValueError(f"teacher cache {folder} is corrupt: no positions for {missing}; rebuild it (--rebuild-cache)")
    return TeacherCache({m: tensors[m].float() for m in mods}, {m: tensors[f"{m}.positions"].long() for m in mods},
                        int(fp.get("n_items", 0)))


def load_or_build(folder: Path, fp: dict[str, Any], build: Callable[[], TeacherCache],
                  rebuild: bool = False) -> tuple[TeacherCache, bool]:
    """(cache, hit): the cache in ``folder`` if its fingerprint equals ``fp``; else build and save it
    when the folder holds none (or ``rebuild``), else refuse with the differing fields named."""
    stored = read_fingerprint(folder)
    if stored is not None and stored == fp:
        return load_cache(folder), True
    if stored is not None and not rebuild:
        fields = mismatched_fields(stored, fp)
        raise ValueError(f"teacher cache {folder} was built for another distillation ({', '.join(fields)} "
                         "differ): rebuild it with --rebuild-cache (distill.rebuild_cache=true), use another "
                         "--cache-dir, or delete the folder")
    cache = build()
    save_cache(cache, folder, fp)
    return cache, False
