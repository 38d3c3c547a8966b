"""The training DataLoader of one rank: indexed data through a seeded step sampler (resumable at any
step), or streamed tar shards (``data.streaming``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import DataLoader, Sampler

from hybridssl.config import RunConfig
from hybridssl.data.base import MultimodalDataset
from hybridssl.data.batching import SafeDataset, StepBatchSampler
from hybridssl.data.neighbour_batches import NeighbourBatching, NeighbourBatchSampler
from hybridssl.dist import RankBatchSampler


def train_loader(train_set: MultimodalDataset, cfg: RunConfig, collator: Callable, step: int, rank: int,
                 world_size: int, neighbours: NeighbourBatching | None = None) -> DataLoader:
    """The training batches of ``rank`` from optimizer step ``step`` on: a seeded step sampler over the
    indexed dataset (each rank its slice of every batch) — the neighbour groups of ``neighbours`` once
    it holds some —, or with ``data.streaming`` the rank's share of the tar shards."""
    tc = cfg.train
    if cfg.data.streaming:
        return stream_loader(train_set, cfg, collator, step, rank, world_size)
    total, start = tc.steps * tc.accum_steps, step * tc.accum_steps
    sampler: Sampler[list[int]]
    if neighbours is not None and neighbours.groups is not None:
        sampler = NeighbourBatchSampler(neighbours, total, start)
    else:
        sampler = StepBatchSampler(len(train_set), tc.batch_size, tc.seed, total, start_step=start)
    if world_size > 1:
        sampler = RankBatchSampler(sampler, rank, world_size)  # this rank's slice
    return DataLoader(SafeDataset(train_set), batch_sampler=sampler, collate_fn=collator,
                      num_workers=cfg.data.num_workers, persistent_workers=False)

def stream_loader(train_set: MultimodalDataset, cfg: RunConfig, collator: Callable, step: int, rank: int,
                  world_size: int) -> DataLoader:
    """``data.streaming``: this rank's share of the tar shards, read sequentially (each sample once per
    epoch over ranks × workers, seeded shuffle buffer, endless epochs). Resuming skips the batches this
    rank already read, so it is exact on the same world size and num_workers."""
    from hybridssl.data.shards import ShardDataset
    from hybridssl.data.splits import IndexSubset

    base: Any = train_set
    keys = None
    if isinstance(train_set, IndexSubset):  # a seeded train split: stream only its samples
        base = train_set.base
        keys = {base.key(i) for i in train_set.indices}
    if not isinstance(base, ShardDataset):
        raise ValueError(f"data.streaming reads tar shards: give a data.train spec 'shards:DIR' "
                         f"(write them with `hssl shard`), got {cfg.data.train!r}")
    tc = cfg.train
    per_rank = tc.batch_size // world_size
    stream = base.stream(rank=rank, world=world_size, seed=tc.seed, epochs=None, keys=keys,
                         shuffle_buffer=cfg.data.shuffle_buffer, batch_size=per_rank,
                         skip_batches=step * tc.accum_steps, resampled=cfg.data.resample)
    return DataLoader(stream, batch_size=per_rank, collate_fn=collator, num_workers=cfg.data.num_workers)
