"""The one module of hssl that calls ``torch.distributed``: process-group set-up from the environment
``torchrun`` exports, rank / world-size helpers, collectives the losses and the trainer need, and the
per-rank split of a global batch.

Set-up (:func:`init_from_env`): under ``torchrun`` the variables ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` are set; the process group is created with the
NCCL back end when CUDA is available (and the device ``cuda:LOCAL_RANK`` selected), gloo otherwise.
Without those variables (a plain ``python`` / ``hssl`` process) nothing is initialised and every
helper below behaves as the single process of a world of size 1 — collectives are the identity.

Collectives:

* :func:`gather_with_grad` ``x (B_r, ...)`` → ``(Σ_r B_r, ...)``, the rows of every rank in rank order,
  **with gradients**: the backward of ``torch.distributed.nn.functional.all_gather`` sums, on the rank
  that owns a row, the gradients every rank's loss sent to it. With DDP's gradient averaging a rank
  loss ``L_r`` then yields ``∇ (1/W) Σ_r L_r`` — the gradient of the global objective. Ranks may hold
  different numbers of rows (partial modalities, skipped items): rows are padded to the largest count
  for the exchange and the padding is dropped again.
* :func:`gather_rows` the same without gradients (keys for the MoCo queue, token ids).
* :func:`all_reduce_sum` / :func:`all_reduce_mean` of a tensor (a copy; the input is not modified).

Per-rank data: :func:`rank_slice` cuts the global batch of a step into W contiguous slices,
rank r taking positions ``[r·b, (r+1)·b)`` with ``b = B / W`` — concatenating the slices in rank
order gives back the global batch, so the 2-rank run sees exactly what a 1-process run sees;
:class:`RankBatchSampler` applies it to every batch of a sampler of global batches.
:func:`partition` is the seeded split of a list of work items (e.g. shard files) over consumers.
"""

from __future__ import annotations

import datetime
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
import torch
from torch import Tensor, nn

_R = TypeVar("_R")

T = TypeVar("T")

__all__ = [
    "all_reduce_mean", "all_reduce_sum", "barrier", "destroy", "gather_rows", "gather_sizes",
    "gather_with_grad", "init_from_env", "is_distributed", "is_main", "local_rank", "partition",
    "RankBatchSampler", "rank", "rank_slice", "world_size", "RankPlan", "wrap_for_ranks", "full_state",
    "load_full_state", "optimizer_fqns", "EveryParameter",
]


# ------------------------------------------------------------------------------ state
def _initialised() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return torch.distributed.get_rank() if _initialised() else 0


def world_size() -> int:
    """The number of processes (1 without a process group)."""
    return torch.distributed.get_world_size() if _initialised() else 1


def local_rank() -> int:
    """The rank on this node (``LOCAL_RANK`` from torchrun; 0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", "0")) if _initialised() else 0


def is_distributed() -> bool:
    """True when a process group with more than one process is up."""
    return world_size() > 1


def is_main() -> bool:
    """True on rank 0 (the process that writes checkpoints, metrics and reports)."""
    return rank() == 0


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun exports it (1 when the variable is absent)."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be an integer, got {raw!r}") from None
    if n < 1:
        raise ValueError(f"WORLD_SIZE must be >= 1, got {n}")
    return n


def init_from_env(backend: str | None = None, timeout_s: float = 1800.0) -> bool:
    """Create the process group from torchrun's environment; True when running distributed.

    Idempotent: an existing process group is kept. ``backend`` defaults to ``nccl`` when CUDA is
    available, else ``gloo``. Missing ``MASTER_ADDR`` / ``MASTER_PORT`` / ``RANK`` with
    ``WORLD_SIZE > 1`` is a ValueError naming the variable.
    """
    if _initialised():
        return is_distributed()
    if env_world_size() == 1:
        return False
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE > 1 but {', '.join(missing)} not set: launch with torchrun")
    if not torch.distributed.is_available():
        raise ValueError("this PyTorch build has no torch.distributed support")
    use_cuda = torch.cuda.is_available() and backend in (None, "nccl")
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend or ("nccl" if use_cuda else "gloo"),
                                         timeout=datetime.timedelta(seconds=timeout_s))
    return is_distributed()


def destroy() -> None:
    """Tear the process group down (no-op without one)."""
    if _initialised():
        torch.distributed.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        torch.distributed.barrier()


# ------------------------------------------------------------------------------ collectives
def all_reduce_sum(x: Tensor) -> Tensor:
    """Σ over ranks of ``x`` (a new tensor; ``x`` itself is left unchanged)."""
    out = x.detach().clone()
    if is_distributed():
        torch.distributed.all_reduce(out, op=torch.distributed.ReduceOp.SUM)
    return out


def all_reduce_mean(x: Tensor) -> Tensor:
    """Mean over ranks of ``x`` (a new tensor)."""
    return all_reduce_sum(x) / world_size()


def gather_sizes(n: int, device: torch.device | str = "cpu") -> list[int]:
    """Every rank's ``n``, in rank order (``[n]`` in a single process)."""
    if not is_distributed():
        return [int(n)]
    mine = torch.tensor([int(n)], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(mine) for _ in range(world_size())]
    torch.distributed.all_gather(sizes, mine)
    return [int(s) for s in sizes]


def _padded(x: Tensor, rows: int) -> Tensor:
    """``x`` (B, ...) with zero rows appended up to ``rows`` (differentiable)."""
    if x.shape[0] == rows:
        return x.contiguous()
    pad = x.new_zeros((rows - x.shape[0], *x.shape[1:]))
    return torch.cat([x, pad], dim=0)


def _unpad(parts: Sequence[Tensor], sizes: Sequence[int]) -> Tensor:
    return torch.cat([p[:n] for p, n in zip(parts, sizes)], dim=0)


def gather_with_grad(x: Tensor) -> tuple[Tensor, list[int]]:
    """All ranks' rows of ``x`` (B_r, ...) → ((Σ B_r, ...), [B_0, …, B_{W-1}]), differentiable.

    Identity (and ``[B]``) in a single process. Every rank must call it (with 0 rows if it has none).
    """
    if not is_distributed():
        return x, [int(x.shape[0])]
    from torch.distributed.nn.functional import all_gather

    sizes = gather_sizes(x.shape[0], x.device)
    if max(sizes) == 0:  # nothing anywhere (every rank agrees): skip the empty collective
        return x, sizes
    with warnings.catch_warnings():  # torch ≥ 2.6 marks it deprecated; its replacement is private API
        warnings.simplefilter("ignore", FutureWarning)
        parts = all_gather(_padded(x, max(sizes)))
    return _unpad(parts, sizes), sizes


@torch.no_grad()
def gather_rows(x: Tensor) -> Tensor:
    """All ranks' rows of ``x`` (B_r, ...) → (Σ B_r, ...), no gradient (``x`` in a single process)."""
    if not is_distributed():
        return x
    sizes = gather_sizes(x.shape[0], x.device)
    if max(sizes) == 0:
        return x.detach()
    buf = _padded(x.detach(), max(sizes))
    parts = [torch.empty_like(buf) for _ in sizes]
    torch.distributed.all_gather(parts, buf)
    return _unpad(parts, sizes)


# ------------------------------------------------------------------------------ data split
def rank_slice(items: Sequence[T], rank_: int | None = None, world: int | None = None) -> list[T]:
    """Rank r's contiguous slice ``items[r·b:(r+1)·b]`` of a global batch, ``b = len(items) / W``.

    ``len(items)`` must be a multiple of W (ValueError otherwise): every rank then holds the same
    number of rows and W × per-rank batch = the configured global batch.
    """
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    if w < 1 or not 0 <= r < w:
        raise ValueError(f"rank {r} is not in [0, world size {w})")
    if len(items) % w:
        raise ValueError(f"a global batch of {len(items)} cannot be split evenly over {w} ranks: "
                         f"make train.batch_size a multiple of the world size")
    b = len(items) // w
    return list(items[r * b:(r + 1) * b])


def partition(items: Sequence[T], part: int, parts: int, seed: int | None = None, epoch: int = 0) -> list[T]:
    """Consumer ``part`` of ``parts``' share of ``items``: every ``parts``-th item of a seeded permutation.

    With ``seed`` None the order is kept. Every item goes to exactly one consumer; shares differ in
    size by at most one. The permutation is ``np.random.default_rng([seed, epoch])`` — the same on
    every rank, so the shares are disjoint.
    """
    if parts < 1 or not 0 <= part < parts:
        raise ValueError(f"part {part} is not in [0, {parts})")
    order = list(range(len(items)))
    if seed is not None:
        order = np.random.default_rng([seed, epoch]).permutation(len(items)).tolist()
    return [items[i] for i in order[part::parts]]


class RankBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Wraps a sampler of GLOBAL index batches and yields this rank's :func:`rank_slice` of each.

    With a step-indexed global sampler (``StepBatchSampler``) the data of a step depends only on
    (seed, step), whatever the world size: the union over ranks is the single-process batch."""

    def __init__(self, sampler: torch.utils.data.Sampler[list[int]], rank_: int, world: int) -> None:
        if world < 1 or not 0 <= rank_ < world:
            raise ValueError(f"rank {rank_} is not in [0, world size {world})")
        self.sampler, self.rank, self.world = sampler, rank_, world

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]

    def __iter__(self):
        for batch in self.sampler:
            yield rank_slice(batch, self.rank, self.world)


@dataclass
class RankPlan:
    """How many rows of each modality every rank holds this step (``counts[r][m]``), so a rank can
    replay the random draws of the rows it does not own and find its rows in gathered tensors."""

    rank: int
    world: int
    counts: list[dict[str, int]]

    @classmethod
    def gather(cls, batch: dict, device: torch.device) -> "RankPlan":
        keys = {"image": "image", "text": "text_ids", "audio": "audio"}
        local = torch.tensor([batch[k].shape[0] if k in batch else 0 for k in keys.values()], device=device)
        table = gather_rows(local[None]).tolist()                 # (W, 3)
        return cls(rank(), world_size(), [dict(zip(keys, row)) for row in table])

    def rows(self, m: str) -> tuple[int, int, int]:
        """(rows of m on lower ranks, rows here, rows on all ranks)."""
        col = [c[m] for c in self.counts]
        return sum(col[:self.rank]), col[self.rank], sum(col)

    def total(self, m: str) -> int:
        return self.rows(m)[2]

    def replay(self, m: str, draw: Callable[[int], object], fn: Callable[[], _R] | None) -> _R | None:
        """Run ``fn`` (this rank's draw for its rows of m) between ``draw(n)`` calls that consume the
        generator exactly as the rows of the lower and of the higher ranks do in one process."""
        before, local, total = self.rows(m)
        if before:
            draw(before)
        out = fn() if fn is not None and local else None
        if total - before - local:
            draw(total - before - local)
        return out


# ----------------------------------------------------------------------------- DDP / FSDP wrapping and state
def wrap_for_ranks(task: nn.Module, cfg: Any, device: torch.device, world_size: int) -> tuple[nn.Module, list[nn.Parameter]]:
    """What runs the forward on ``world_size`` ranks, and the parameters left out of FSDP sharding:
    the task itself (one process), its DDP wrapper, or (``train.distributed=fsdp``) an FSDP2 root."""
    if world_size == 1:
        return task, []
    if cfg.train.distributed == "fsdp":
        from torch.distributed.fsdp import fully_shard

        if cfg.weighting.strategy == "gradnorm":
            raise ValueError("weighting.strategy=gradnorm needs per-layer gradients: use train.distributed=ddp")
        # FSDP cannot shard 0-d parameters (the temperature): they stay replicated, gradients all-reduced here
        replicated = [p for p in task.parameters() if p.ndim == 0 and p.requires_grad]
        scalars = {p for p in task.parameters() if p.ndim == 0}
        root = fully_shard(EveryParameter(task), ignored_params=scalars or None)  # one group: same collectives everywhere
        return cast(nn.Module, root), replicated
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    # unused parameters: batches without some modality; buffers (queues, weighting state) are kept
    # identical by construction, so they are not re-broadcast each step
    return DistributedDataParallel(task, device_ids=ids, find_unused_parameters=True, forward_sync_buffers=False), []


def full_state(engine: nn.Module, task: nn.Module, optimizer: torch.optim.Optimizer,
               fsdp: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Model and optimizer state as one process holds them (optimizer params numbered 0..P−1)."""
    if not fsdp:
        return task.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model: dict[str, Any] = {k.removeprefix("task."): v for k, v in get_model_state_dict(engine, options=opts).items()}
    optim: dict[str, Any] = dict(get_optimizer_state_dict(engine, optimizer, options=opts))
    if not is_main():  # with cpu_offload only rank 0 receives the full state
        return model, optim
    index = {fqn: i for i, fqn in enumerate(optimizer_fqns(engine, optimizer))}
    numbered = {"state": {index[k]: v for k, v in optim["state"].items()},
                "param_groups": [{**g, "params": [index[f] for f in g["params"]]} for g in optim["param_groups"]]}
    return model, numbered

def optimizer_fqns(engine: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Name (in the FSDP root) of every optimizer parameter, in the optimizer's order."""
    names = {id(p): n for n, p in engine.named_parameters()}
    return [names[id(p)] for g in optimizer.param_groups for p in g["params"]]

def load_full_state(engine: nn.Module, task: nn.Module, optimizer: torch.optim.Optimizer, fsdp: bool,
                    model: dict[str, Tensor], optim: dict[str, Any]) -> None:
    """Load a full (unsharded) model and optimizer state into ``engine`` (the inverse of :func:`full_state`)."""
    if not fsdp:
        task.load_state_dict(model)
        optimizer.load_state_dict(optim)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True)
    set_model_state_dict(engine, {f"task.{k}": v for k, v in model.items()}, options=opts)
    fqns = optimizer_fqns(engine, optimizer)
    optim = {"state": {fqns[int(i)]: v for i, v in optim["state"].items()},
             "param_groups": [{**g, "params": [fqns[int(i)] for i in g["params"]]} for g in optim["param_groups"]]}
    set_optimizer_state_dict(engine, optimizer, optim, options=opts)


class EveryParameter(nn.Module):
    """FSDP root around a task: adds 0·Σθ to the loss so that every trainable parameter gets a
    gradient on every rank — FSDP's reduce-scatter needs the same parameters on all ranks, also in
    steps where a rank's batch lacks a modality. (Parameters unused everywhere then get a zero
    gradient instead of none.)"""

    def __init__(self, task: nn.Module) -> None:
        super().__init__()
        self.task = task

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.task(*args, **kwargs)
        touch = sum(p.sum() for p in self.task.parameters() if p.requires_grad)
        out.loss = out.loss + 0.0 * touch
        return out
