"""Streaming a shard folder through `webdataset <https://github.com/webdataset/webdataset>`_
(:class:`ShardStream`): webdataset opens and expands the tars into samples
(``tarfile_to_samples``), shuffles them in a buffer (``shuffle``) and, for multi-node runs, draws
shards with replacement (``ResampledShards``). hssl adds what webdataset leaves to its users: the
split over ranks × workers with its fallback for few shards, the seeds, the accounting of samples
a damaged shard could not deliver, and the exact resume position (the rules are in
:mod:`hybridssl.data.shards`).
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from hybridssl.data.batching import Skipped
from hybridssl.data.sample import BadItem, Sample
from hybridssl.data.shards.codec import decode_sample
from hybridssl.data.shards.index import ShardSet, open_shards
from hybridssl.dist import partition

Raw = tuple[str, dict[str, bytes]]


def seed_of(*parts: int) -> int:
    """One 64-bit seed from several integers (``numpy.random.SeedSequence``)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0])


class ShardStream(IterableDataset):
    """Sequential reader of a shard set for one rank: yields :class:`Sample` (or ``Skipped`` records
    for damaged data), each sample exactly once per epoch over all ranks and workers (module doc).

    ``epochs=None`` streams forever (epoch 0, 1, …); ``start_epoch`` is where to begin. ``keys``
    restricts the stream to those samples (e.g. a train split); ``skip_batches`` / ``batch_size``: see
    the module doc. ``resampled``: every consumer draws shards with replacement from all of them
    (webdataset's ``ResampledShards``, seeded per consumer) — endless, no epochs, no exactly-once;
    what multi-node runs over many shards use.
    """

    def __init__(self, shards: ShardSet | str | Path, *, rank: int = 0, world: int = 1, seed: int = 0,
                 shuffle_buffer: int = 1000, epochs: int | None = 1, start_epoch: int = 0,
                 keys: set[str] | None = None, skip_batches: int = 0, batch_size: int = 1,
                 resampled: bool = False) -> None:
        super().__init__()
        self.shards = shards if isinstance(shards, ShardSet) else open_shards(shards)
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in [0, world size {world})")
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs must be >= 1 or None (forever), got {epochs}")
        if skip_batches < 0 or batch_size < 1:
            raise ValueError(f"need skip_batches >= 0 and batch_size >= 1, got {skip_batches} and {batch_size}")
        self.rank, self.world, self.seed = rank, world, seed
        self.shuffle_buffer, self.epochs, self.start_epoch = shuffle_buffer, epochs, start_epoch
        self.keys, self.resampled = keys, resampled
        self.skip_batches, self.batch_size = skip_batches, batch_size

    def consumer(self) -> tuple[int, int, int, int]:
        """(consumer id, number of consumers, worker, workers); consumer = rank·workers + worker."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.rank * workers + worker, self.world * workers, worker, workers

    def __iter__(self) -> Iterator[Sample | Skipped]:
        c, n, worker, workers = self.consumer()
        done = max(0, self.skip_batches - worker + workers - 1) // workers  # batches this worker already gave
        raw = itertools.islice(self._resampled(c) if self.resampled else self._epochs(c, n),
                               done * self.batch_size, None)
        for item in raw:
            yield item if isinstance(item, Skipped) else decode_or_skip(*item)

    def _epochs(self, consumer: int, consumers: int) -> Iterator[Raw | Skipped]:
        epoch = self.start_epoch
        while self.epochs is None or epoch < self.start_epoch + self.epochs:
            order = partition(list(range(len(self.shards.files))), 0, 1, self.seed, epoch)  # seeded shard order
            by_shard = len(order) >= consumers
            mine = partition(order, consumer, consumers) if by_shard else order
            split = None if by_shard else (consumer, consumers)
            raw = self._samples([self.shards.files[s] for s in mine], split)
            yield from self._shuffle(raw, seed_of(self.seed, epoch, consumer))
            epoch += 1

    def _resampled(self, consumer: int) -> Iterator[Raw | Skipped]:
        urls = [str(f) for f in self.shards.files]
        drawn = (Path(d["url"]) for d in wds.ResampledShards(urls, seed=seed_of(self.seed, consumer), deterministic=True))
        yield from self._shuffle(self._samples(drawn, None), seed_of(self.seed, consumer, 1))

    def _shuffle(self, raw: Iterator[Raw | Skipped], seed: int) -> Iterator[Raw | Skipped]:
        if self.shuffle_buffer <= 1:
            return raw
        return wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=random.Random(seed))(raw)

    def _samples(self, shards: Iterable[Path], split: tuple[int, int] | None) -> Iterator[Raw | Skipped]:
        """The raw samples of ``shards`` in order (webdataset's tar expansion), then for each shard one
        ``Skipped`` per sample its index lists but it did not deliver (``split`` given: exact mode) or,
        resampled (``split`` None and ``self.resampled``), one per damaged shard read. ``split=(c, n)``
        with n > 1: keep only the samples whose running position p has p mod n == c."""
        counts = {str(f): c for f, c in zip(self.shards.files, self.shards.counts)}
        opened: deque[str] = deque()                  # shards handed to webdataset and not yet accounted for
        errors: dict[str, str] = {}

        def handler(exn: Exception) -> bool:          # a damaged tar: note why, go on with the next one
            url = next((a for a in reversed(exn.args) if isinstance(a, str) and a in counts), None)
            errors[url or "?"] = f"{type(exn).__name__}: {exn.args[0] if exn.args else exn}"
            return True

        def announce(paths: Iterable[Path]) -> Iterator[dict[str, str]]:
            for p in paths:
                opened.append(str(p))
                yield {"url": str(p)}

        position = 0

        def lost(url: str, delivered: int) -> Iterator[Skipped]:
            nonlocal position
            n = max(0, counts[url] - delivered)
            for k in range(n):
                if split is None or (position + k) % split[1] == split[0]:
                    yield Skipped(f"{Path(url).name}#{delivered + k}", "truncated_shard",
                                  errors.get(url, "the tar ends early"))
            position += n

        current, delivered = None, 0
        for sample in wds.tarfile_to_samples(handler=handler)(announce(shards)):
            url = sample["__url__"]
            if self.resampled:                        # endless draws: report damage as it is met
                for bad in list(errors):
                    yield Skipped(Path(bad).name, "truncated_shard", errors.pop(bad))
            elif url != current:                      # the shards before this one are finished
                while opened and opened[0] != url:
                    done = opened.popleft()
                    yield from lost(done, delivered if done == current else 0)
                current, delivered = url, 0
            delivered += 1
            key = sample["__key__"]
            if self.keys is not None and key not in self.keys:
                continue
            take = split is None or split[1] == 1 or position % split[1] == split[0]
            position += 1
            if take:
                yield key, {ext: v for ext, v in sample.items() if not ext.startswith("__")}
        while opened and not self.resampled:
            done = opened.popleft()
            yield from lost(done, delivered if done == current else 0)


def decode_or_skip(key: str, members: dict[str, Any]) -> Sample | Skipped:
    try:
        return decode_sample(key, members)
    except BadItem as e:
        return Skipped(e.uid, e.reason, e.detail)
