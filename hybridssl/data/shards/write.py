"""Writing a dataset into tar shards and their ``index.json`` (atomically, shard by shard)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import webdataset as wds

from edge_runtime.bundle import sha256_file
from hybridssl.data.base import MultimodalDataset
from hybridssl.data.sample import SkipReport
from hybridssl.data.shards.codec import encode_sample
from hybridssl.data.shards.format import AUDIO_FORMATS, FORMAT, INDEX, VERSION


# ------------------------------------------------------------------------------ writing
class ShardWriter:
    """Writes ``shard-{i:06d}.tar`` files of ``shard_size`` samples with webdataset's ``TarWriter``
    (each under a temporary name first; fixed member metadata, so identical input → identical tars)."""

    def __init__(self, out_dir: Path, shard_size: int) -> None:
        self.out_dir, self.shard_size = out_dir, shard_size
        self.shards: list[dict[str, Any]] = []
        self.tar: wds.TarWriter | None = None
        self.count = 0

    def add(self, key: str, members: dict[str, bytes]) -> None:
        if self.tar is None:
            self.tar = wds.TarWriter(str(self._tmp(len(self.shards))), encoder=False, mtime=0, mode=0o644,
                                     user="hssl", group="hssl")
        self.tar.write({"__key__": key, **members})
        self.count += 1
        if self.count == self.shard_size:
            self.close()

    def _tmp(self, i: int) -> Path:
        return self.out_dir / f".shard-{i:06d}.tar.tmp"

    def close(self) -> None:
        if self.tar is None:
            return
        self.tar.close()
        i = len(self.shards)
        final = self.out_dir / f"shard-{i:06d}.tar"
        os.replace(self._tmp(i), final)
        self.shards.append({"file": final.name, "count": self.count, "bytes": final.stat().st_size,
                            "sha256": sha256_file(final)})
        self.tar, self.count = None, 0


def write_shards(dataset: MultimodalDataset, out_dir: str | Path, shard_size: int = 1000, audio_format: str = "flac",
                 progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Write every usable sample of ``dataset`` into tar shards under ``out_dir``; returns the index.

    Samples that raise BadItem are skipped and counted in the index's ``skipped`` report.
    ``progress(i)`` is called after each source item. ``out_dir`` must not already hold an index.
    """
    if int(shard_size) != shard_size or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"audio_format must be one of {AUDIO_FORMATS}, got {audio_format!r}")
    if len(dataset) == 0:
        raise ValueError(f"{dataset.name}: the dataset is empty, nothing to shard")
    out = Path(out_dir)
    if (out / INDEX).exists():
        raise FileExistsError(f"{out} already holds shards ({INDEX}); choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    report = SkipReport()
    report.merge(dataset.load_report)
    writer = ShardWriter(out, int(shard_size))
    written = 0
    for i in range(len(dataset)):
        sample = dataset.try_get(i, report)
        if sample is not None:
            writer.add(f"{i:09d}", encode_sample(sample, audio_format))
            written += 1
        if progress:
            progress(i + 1)
    writer.close()
    if not written:
        raise ValueError(f"{dataset.name}: no sample could be read ({report.to_dict()['skipped']})")
    index = {"format": FORMAT, "version": VERSION, "name": dataset.name, "modalities": list(dataset.modalities),
             "label_names": dataset.label_names, "feature_dims": dict(getattr(dataset, "feature_dims", {}) or {}),
             "audio_format": audio_format, "shard_size": int(shard_size), "samples": written,
             "shards": writer.shards, "skipped": report.to_dict()}
    tmp = out / f".{INDEX}.tmp"
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, out / INDEX)
    return index
