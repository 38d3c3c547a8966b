"""Batches of near neighbours: hard negatives by batch composition (``data.batches=neighbours``).

InfoNCE is minimised by whatever already tells a batch's pairs apart; a factor that the others make
redundant inside a random batch gets almost no gradient ("feature suppression", Chen et al. 2021).
On the built-in scenes colour × size × position × texture already separates 240 kinds of scene, so
an anchor of a random 64-batch has 0.26 negatives that differ from it only in shape. Composing every
batch of groups of ``g`` items that are near neighbours in the model's *current* caption embedding
space (hard-negative batches, cf. Sachidananda et al. 2023, "Global Contrastive Batch Sampling")
makes an anchor's group-mates agree with it on what the model already encodes, so only what it does
not yet encode can tell them apart; as the embedding learns a factor, the groups move on to the next.

Every ``refresh`` steps (from step ``refresh`` on; before that the plain random batches of
:class:`~hybridssl.data.batching.StepBatchSampler`):

1. a pool of at most ``pool`` training items, drawn by ``rng(seed, refresh index)``, is embedded
   with the current text tower from the captions alone (no image or audio is decoded);
2. each pooled item's ``k = 4g`` nearest pool neighbours by cosine are found;
3. the pool is cut greedily into groups of ``g``: items are visited in a seeded random order; an
   unassigned item opens a group and takes its nearest unassigned neighbours, filled up with random
   unassigned items when its list runs out (items without a caption only ever fill);
4. step ``s`` takes ``B / g`` distinct groups drawn by ``rng(seed, s)``.

The groups are part of the trainer state, so resuming at any step replays the same batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler


def nearest_neighbours(emb: torch.Tensor, k: int, block: int = 2048) -> np.ndarray:
    """(n, k) indices of each row's k most cosine-similar other rows, most similar first."""
    x = torch.nn.functional.normalize(emb.float(), dim=-1)
    n = len(x)
    k = min(k, n - 1)
    out = np.empty((n, k), dtype=np.int64)
    for s in range(0, n, block):
        sim = x[s:s + block] @ x.T
        sim[torch.arange(len(sim)), torch.arange(s, s + len(sim))] = -torch.inf  # not its own neighbour
        out[s:s + block] = sim.topk(k, dim=1).indices.numpy()
    return out


def greedy_groups(neighbours: np.ndarray, group: int, rng: np.random.Generator,
                  fill: np.ndarray | None = None) -> np.ndarray:
    """Cut ``len(neighbours) + len(fill)`` items into ⌊·/group⌋ groups (rows) of near neighbours.

    ``neighbours``: (n, k) each item's nearest items (indices < n), most similar first; ``fill``:
    further item indices (≥ n) that are nobody's neighbour and only fill groups up. Left-over items
    (fewer than ``group``) are dropped."""
    n = len(neighbours)
    extra = np.asarray(fill if fill is not None else [], dtype=np.int64)
    total = n + len(extra)
    assigned = np.zeros(total, dtype=bool)
    spare = list(rng.permutation(np.concatenate([np.arange(n), extra])))  # random fill, popped from the end
    groups: list[list[int]] = []
    for seed_item in rng.permutation(n):
        if assigned[seed_item]:
            continue
        members = [int(seed_item)]
        assigned[seed_item] = True
        for j in neighbours[seed_item]:
            if len(members) == group:
                break
            if not assigned[j]:
                members.append(int(j))
                assigned[j] = True
        while len(members) < group and spare:
            j = spare.pop()
            if not assigned[j]:
                members.append(int(j))
                assigned[j] = True
        if len(members) == group:
            groups.append(members)
    return np.asarray(groups, dtype=np.int64).reshape(-1, group)


class NeighbourBatching:
    """The groups of the current refresh period, and when to recompute them (see the module doc)."""

    def __init__(self, dataset: Any, *, batch_size: int, group: int, refresh: int, pool: int, seed: int) -> None:
        if group < 2 or batch_size % group:
            raise ValueError(f"data.neighbour_group must be >= 2 and divide train.batch_size={batch_size}, got {group}")
        if refresh < 1:
            raise ValueError(f"data.neighbour_refresh must be >= 1, got {refresh}")
        if pool < batch_size:
            raise ValueError(f"data.neighbour_pool must be >= train.batch_size={batch_size}, got {pool}")
        self.dataset, self.batch_size, self.group = dataset, batch_size, group
        self.refresh_every, self.pool, self.seed = refresh, pool, seed
        self.groups: np.ndarray | None = None  # (G, g) dataset indices; None: random batches
        self.made_at = -1                       # the step whose model made ``groups``

    def due(self, step: int) -> bool:
        return step >= self.refresh_every and step // self.refresh_every * self.refresh_every != self.made_at

    def refresh(self, step: int, embed_captions: Callable[[list[str]], torch.Tensor]) -> None:
        """Recompute the groups with ``embed_captions`` (captions → (n, E) embeddings of the current model)."""
        made_at = step // self.refresh_every * self.refresh_every
        rng = np.random.default_rng([self.seed, made_at, 7])
        n = len(self.dataset)
        pool = rng.choice(n, size=min(self.pool, n), replace=False)
        captions = [self.dataset.caption_at(int(i)) for i in pool]
        with_caption = np.array([bool(c) for c in captions])
        if with_caption.sum() < 2:
            raise ValueError("data.batches=neighbours needs captions: fewer than 2 items of the pool have one")
        captioned, others = pool[with_caption], pool[~with_caption]
        emb = embed_captions([c for c in captions if c])
        local = greedy_groups(nearest_neighbours(emb, 4 * self.group), self.group, rng,
                              fill=np.arange(len(captioned), len(captioned) + len(others)))
        groups = np.concatenate([captioned, others])[local]
        if len(groups) < self.batch_size // self.group:
            raise ValueError(f"data.neighbour_pool: {len(groups)} groups of {self.group} cannot fill a batch of "
                             f"{self.batch_size}")
        self.groups, self.made_at = groups, made_at

    def batch(self, step: int) -> list[int]:
        assert self.groups is not None
        rng = np.random.default_rng([self.seed, step, 11])
        take = rng.choice(len(self.groups), size=self.batch_size // self.group, replace=False)
        return self.groups[take].reshape(-1).tolist()

    def state_dict(self) -> dict[str, Any]:
        return {"made_at": self.made_at, "groups": None if self.groups is None else self.groups.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.made_at = int(state.get("made_at", -1))
        groups = state.get("groups")
        self.groups = None if groups is None else np.asarray(groups, dtype=np.int64).reshape(-1, self.group)


class NeighbourBatchSampler(Sampler[list[int]]):
    """Steps ``start … total−1``: the neighbour batches of ``batching``'s current groups.

    Its owner rebuilds the loader at every refresh, so one sampler never outlives its groups."""

    def __init__(self, batching: NeighbourBatching, total_steps: int, start_step: int) -> None:
        self.batching, self.total, self.start = batching, total_steps, start_step

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.total):
            yield self.batching.batch(step)


def caption_embedder(model: Any, tokenizer: Any, device: torch.device, chunk: int = 1024
                     ) -> Callable[[list[str]], torch.Tensor]:
    """captions → (n, E) text-tower embeddings of ``model`` on ``device`` (eval mode, no gradient),
    returned on the CPU."""

    def embed(captions: list[str]) -> torch.Tensor:
        was_training = model.training
        model.eval()
        parts = []
        with torch.inference_mode():
            for s in range(0, len(captions), chunk):
                ids, attn = tokenizer.encode(captions[s:s + chunk])
                parts.append(model.embed("text", torch.from_numpy(ids).to(device),
                                         torch.from_numpy(attn).to(device)).float().cpu())
        model.train(was_training)
        return torch.cat(parts)

    return embed


def neighbour_batching(cfg: Any, train_set: Any, tokenizer: Any, modalities: tuple[str, ...]
                       ) -> NeighbourBatching | None:
    """The run's :class:`NeighbourBatching` under ``data.batches=neighbours`` (else None), or a
    one-line ValueError where it cannot work. Under torchrun every rank computes the same groups from
    its replica of the weights (DDP keeps them equal)."""
    dc, tc = cfg.data, cfg.train
    if dc.batches != "neighbours":
        return None
    if dc.streaming:
        raise ValueError("data.batches=neighbours needs indexed data; it cannot be combined with data.streaming")
    if tokenizer is None or "text" not in modalities or not hasattr(train_set, "caption_at"):
        raise ValueError("data.batches=neighbours groups items by their captions: the run needs a text tower and captions")
    if tc.distributed == "fsdp":
        raise ValueError("data.batches=neighbours is not supported with train.distributed=fsdp (the text tower is sharded)")
    return NeighbourBatching(train_set, batch_size=tc.batch_size, group=dc.neighbour_group,
                             refresh=dc.neighbour_refresh, pool=dc.neighbour_pool, seed=tc.seed)
