"""Train / validation datasets for a run, with splits fixed by seed and written to disk.

* built-in data: the generator's own ``train`` and ``val`` splits (disjoint RNG streams);
* user data with a ``val`` spec: that dataset;
* user data without one: a seeded hold-out of ``val_fraction`` of the items
  (``np.random.default_rng(seed).permutation(n)``), recorded in ``RUN_DIR/splits.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from hybridssl.config import DataConfig
from hybridssl.data.base import MultimodalDataset
from hybridssl.data.open import open_dataset
from hybridssl.data.sample import Sample


class IndexSubset(MultimodalDataset):
    """A view of ``base`` restricted to ``indices`` that keeps the dataset interface."""

    def __init__(self, base: MultimodalDataset, indices: Sequence[int], name: str) -> None:
        super().__init__()
        self.base = base
        self.load_report = base.load_report  # rows the base dropped while indexing belong to every view of it
        self.indices = [int(i) for i in indices]
        self.name = name
        self.modalities = base.modalities
        self.label_names = base.label_names
        self.feature_dims = getattr(base, "feature_dims", {})

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Sample:
        return self.base[self.indices[i]]

    def caption_at(self, i: int) -> str | None:
        return self.base.caption_at(self.indices[i])

    def label_at(self, i: int) -> int | None:
        return self.base.label_at(self.indices[i])

    def captions(self) -> Iterator[str]:
        for i in range(len(self)):
            c = self.caption_at(i)
            if c:
                yield c

    def labels(self) -> list[int | None]:
        return [self.label_at(i) for i in range(len(self))]

    def __getattr__(self, name: str):  # class_prompts, scene_key, ... of the base dataset
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)


def is_builtin(spec: str) -> bool:
    return spec == "builtin" or spec.startswith("builtin:")


def build_datasets(cfg: DataConfig, seed: int, run_dir: Path | None = None) -> tuple[MultimodalDataset, MultimodalDataset]:
    if is_builtin(cfg.train):
        common = dict(seed=seed, image_size=cfg.image_size)
        train = open_dataset(cfg.train, size=cfg.train_size, split="train", **common)
        val = open_dataset(cfg.val or cfg.train, size=cfg.val_size, split="val", **common)
        return train, val
    full = open_dataset(cfg.train, **cfg.open_kwargs(cfg.train))
    if cfg.val:
        return full, open_dataset(cfg.val, **cfg.open_kwargs(cfg.val))
    n = len(full)
    if n < 2:
        raise ValueError(f"{cfg.train} has {n} usable item(s); at least 2 are needed to hold out a validation split")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, int(round(n * cfg.val_fraction))))
    val_idx, train_idx = sorted(perm[:n_val].tolist()), sorted(perm[n_val:].tolist())
    if run_dir is not None:
        (Path(run_dir) / "splits.json").write_text(json.dumps({"seed": seed, "train": train_idx, "val": val_idx}))
    return IndexSubset(full, train_idx, f"{full.name}[train]"), IndexSubset(full, val_idx, f"{full.name}[val]")
