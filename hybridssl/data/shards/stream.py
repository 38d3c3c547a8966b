"""Streaming a shard folder exactly once per epoch over ranks × workers, with a seeded shuffle buffer (:class:`ShardStream`; the rules are in :mod:`hybridssl.data.shards`)."""

from __future__ import annotations

import itertools
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from hybridssl.data.batching import Skipped
from hybridssl.data.sample import BadItem, Sample
from hybridssl.data.shards.codec import decode_sample
from hybridssl.data.shards.index import ShardSet, iter_tar, open_shards
from hybridssl.dist import partition


# ------------------------------------------------------------------------------ streaming reader
class ShardStream(IterableDataset):
    """Sequential reader of a shard set for one rank: yields :class:`Sample` (or ``Skipped`` records
    for damaged data), each sample exactly once per epoch over all ranks and workers (module doc).

    ``epochs=None`` streams forever (epoch 0, 1, …); ``start_epoch`` is where to begin. ``keys``
    restricts the stream to those samples (e.g. a train split); ``skip_batches`` / ``batch_size``: see
    the module doc.
    """

    def __init__(self, shards: ShardSet | str | Path, *, rank: int = 0, world: int = 1, seed: int = 0,
                 shuffle_buffer: int = 1000, epochs: int | None = 1, start_epoch: int = 0,
                 keys: set[str] | None = None, skip_batches: int = 0, batch_size: int = 1) -> None:
        super().__init__()
        self.shards = shards if isinstance(shards, ShardSet) else open_shards(shards)
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in [0, world size {world})")
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs must be >= 1 or None (forever), got {epochs}")
        self.rank, self.world, self.seed = rank, world, seed
        self.shuffle_buffer, self.epochs, self.start_epoch = shuffle_buffer, epochs, start_epoch
        self.keys = keys
        if skip_batches < 0 or batch_size < 1:
            raise ValueError(f"need skip_batches >= 0 and batch_size >= 1, got {skip_batches} and {batch_size}")
        self.skip_batches, self.batch_size = skip_batches, batch_size

    def consumer(self) -> tuple[int, int, int, int]:
        """(consumer id, number of consumers, worker, workers); consumer = rank·workers + worker."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.rank * workers + worker, self.world * workers, worker, workers

    def __iter__(self) -> Iterator[Sample | Skipped]:
        c, n, worker, workers = self.consumer()
        done = max(0, self.skip_batches - worker + workers - 1) // workers  # batches this worker already gave
        raw = itertools.islice(self._epochs(c, n), done * self.batch_size, None)
        for item in raw:
            yield item if isinstance(item, Skipped) else decode_or_skip(*item)

    def _epochs(self, consumer: int, consumers: int) -> Iterator[tuple[str, dict[str, bytes]] | Skipped]:
        epoch = self.start_epoch
        while self.epochs is None or epoch < self.start_epoch + self.epochs:
            rng = np.random.default_rng([self.seed, epoch, consumer])
            yield from shuffled(self._raw(epoch, consumer, consumers), self.shuffle_buffer, rng)
            epoch += 1

    def _raw(self, epoch: int, consumer: int, consumers: int) -> Iterator[tuple[str, dict[str, bytes]] | Skipped]:
        order = partition(list(range(len(self.shards.files))), 0, 1, self.seed, epoch)  # seeded shard order
        by_shard = len(order) >= consumers
        mine = partition(order, consumer, consumers) if by_shard else order
        position = 0
        for s in mine:
            path = self.shards.files[s]
            delivered, error = 0, "the tar ends early"
            try:
                for key, members in iter_tar(path):
                    delivered += 1
                    if self.keys is not None and key not in self.keys:
                        continue
                    take = by_shard or position % consumers == consumer
                    position += 1
                    if take:
                        yield key, members
            except (tarfile.TarError, OSError, EOFError) as e:
                error = f"{type(e).__name__}: {e}"
            lost = range(position, position + max(0, self.shards.counts[s] - delivered))  # lost samples' positions
            for p in lost:
                if by_shard or p % consumers == consumer:
                    yield Skipped(f"{path.name}#{delivered + p - lost.start}", "truncated_shard", error)
            position = lost.stop


def decode_or_skip(key: str, members: dict[str, bytes]) -> Sample | Skipped:
    try:
        return decode_sample(key, members)
    except BadItem as e:
        return Skipped(e.uid, e.reason, e.detail)


def shuffled(items: Iterator[Any], size: int, rng: np.random.Generator) -> Iterator[Any]:
    """Buffered shuffle (module doc): a permutation of ``items`` using ``size`` slots."""
    if size <= 1:
        yield from items
        return
    buf: list[Any] = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        j = int(rng.integers(len(buf)))
        buf[j], item = item, buf[j]
        yield item
    for j in rng.permutation(len(buf)).tolist():
        yield buf[j]
