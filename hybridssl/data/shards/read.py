"""Random access to the samples of a shard folder: :class:`ShardDataset` (the ``shards:`` spec)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridssl.data.base import MultimodalDataset
from hybridssl.data.sample import BadItem, Sample
from hybridssl.data.shards.codec import decode_sample
from hybridssl.data.shards.index import open_shards, scan_tar


# ------------------------------------------------------------------------------ map-style reader
@dataclass(frozen=True)
class Record:
    shard: int
    key: str
    members: dict[str, tuple[int, int]]


class ShardDataset(MultimodalDataset):
    """Random access to the samples of a shard folder (``shards:`` spec).

    The tars are scanned once at open time (headers only); samples a damaged shard cannot deliver
    are counted in ``load_report`` (``truncated_shard`` / ``corrupt_shard``) and left out.
    """

    def __init__(self, spec: str | Path, verify: bool = False) -> None:
        super().__init__()
        self.shard_set = open_shards(spec, verify)
        index = self.shard_set.index
        self.name = str(index.get("name") or "shards")
        self.modalities = tuple(index.get("modalities") or ())
        self.label_names = index.get("label_names")
        self.feature_dims = dict(index.get("feature_dims") or {})
        self._records: list[Record] = []
        for s, (path, count) in enumerate(zip(self.shard_set.files, self.shard_set.counts)):
            table, error = scan_tar(path)
            self._records += [Record(s, k, m) for k, m in table]
            if len(table) < count:
                reason = "truncated_shard" if table or error is None else "corrupt_shard"
                for k in range(count - len(table)):
                    self.load_report.skip(f"{path.name}#{len(table) + k}", reason, error or "fewer samples than indexed")
        if not self._records:
            raise ValueError(f"no readable sample in the shards of {self.shard_set.root} "
                             f"({self.load_report.to_dict()['skipped']})")

    def __len__(self) -> int:
        return len(self._records)

    def key(self, i: int) -> str:
        return self._records[self._check_index(i)].key

    def _read(self, rec: Record, exts: Sequence[str] | None = None) -> dict[str, bytes]:
        out = {}
        with self.shard_set.files[rec.shard].open("rb") as f:
            for ext, (offset, size) in rec.members.items():
                if exts is None or ext in exts:
                    f.seek(offset)
                    out[ext] = f.read(size)
        return out

    def __getitem__(self, i: int) -> Sample:
        rec = self._records[self._check_index(i)]
        try:
            members = self._read(rec)
        except OSError as e:
            raise BadItem(rec.key, "corrupt_sample", f"{type(e).__name__}: {e}") from None
        return decode_sample(rec.key, members)

    def caption_at(self, i: int) -> str | None:
        rec = self._records[self._check_index(i)]
        try:
            raw = self._read(rec, ("txt",)).get("txt")
            return raw.decode("utf-8") if raw is not None else None
        except (OSError, UnicodeDecodeError):
            return None

    def label_at(self, i: int) -> int | None:
        rec = self._records[self._check_index(i)]
        try:
            label = json.loads(self._read(rec, ("json",))["json"]).get("label")
        except (OSError, ValueError, KeyError):
            return None
        return None if label is None else int(label)

    def stream(self, **kwargs: Any) -> Any:
        """A :class:`ShardStream` over the same shards (keyword arguments of ShardStream)."""
        from hybridssl.data.shards.stream import ShardStream

        return ShardStream(self.shard_set, **kwargs)
