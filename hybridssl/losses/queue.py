"""MoCo memory queue of negative keys and the momentum (EMA) encoder update (He et al. 2020,
"Momentum Contrast for Unsupervised Visual Representation Learning").

``MomentumQueue(size, dim)``: a FIFO ring buffer ``bank`` (size, D) of L2-normalised keys.
``enqueue(x)`` writes the B rows of x (B, D) at ``ptr, ptr+1, …`` (mod size), overwriting the
oldest entries; if B > size only the last ``size`` rows are kept.  ``filled`` counts the real
entries (≤ size), so ``negatives()`` (K, D), K = filled, never returns the random initial rows.
``negatives()`` returns a COPY: the trainer enqueues the new keys after the loss is built and
before ``backward``, and an in-place write into a tensor saved for backward would fail.

Distributed (``MomentumQueue(..., gather_distributed=True)``, world size W > 1): ``enqueue`` first
gathers the keys of every rank (rank order, any number of rows per rank, no gradient) and writes
all of them on every rank, so the queues stay identical across ranks and equal to the queue of a
single process that saw the global batch.  Every rank must call ``enqueue`` (with (0, D) keys if
it has none).

``momentum_update(target, source, m)``:  θ_target ← m·θ_target + (1 − m)·θ_source for every
parameter (MoCo eq. 2), buffers copied from the source; no gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MomentumQueue", "momentum_update"]


class MomentumQueue(nn.Module):
    """Ring buffer of the last ``size`` keys (detached) used as extra InfoNCE negatives."""

    bank: Tensor
    ptr: Tensor
    filled: Tensor

    def __init__(self, size: int, dim: int, gather_distributed: bool = False) -> None:
        super().__init__()
        self.gather_distributed = gather_distributed
        if int(size) != size or size < 1:
            raise ValueError(f"MomentumQueue size must be a positive integer, got {size!r}")
        if int(dim) != dim or dim < 1:
            raise ValueError(f"MomentumQueue dim must be a positive integer, got {dim!r}")
        self.size, self.dim = int(size), int(dim)
        self.register_buffer("bank", F.normalize(torch.randn(self.size, self.dim), dim=1))  # (size, D)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))  # next slot to write
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))  # number of real entries

    @torch.no_grad()
    def enqueue(self, x: Tensor) -> None:
        """Append the rows of ``x`` (B, D) (detached), overwriting the oldest entries."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"enqueue expects keys of shape (B, {self.dim}), got {tuple(x.shape)}")
        if self.gather_distributed:
            from hybridssl import dist

            x = dist.gather_rows(x.detach())  # (Σ_r B_r, D) in rank order
        x = x.detach()[-self.size:].to(device=self.bank.device, dtype=self.bank.dtype)  # (n ≤ size, D)
        n = x.shape[0]
        if n == 0:
            return
        slots = (self.ptr + torch.arange(n, device=self.bank.device)) % self.size  # (n,)
        self.bank[slots] = x
        self.ptr.copy_((self.ptr + n) % self.size)
        self.filled.copy_(torch.clamp(self.filled + n, max=self.size))

    def negatives(self) -> Tensor:
        """A detached copy of the filled rows, (K, D) with K = filled ≤ size ((0, D) when empty)."""
        return self.bank[: int(self.filled)].clone()

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}, filled={int(self.filled)}"


@torch.no_grad()
def momentum_update(target: nn.Module, source: nn.Module, momentum: float) -> None:
    """EMA ``target ← m·target + (1 − m)·source`` of every parameter; buffers are copied."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must lie in [0, 1], got {momentum!r}")
    for kind, tgt, src in (("parameters", dict(target.named_parameters()), dict(source.named_parameters())),
                           ("buffers", dict(target.named_buffers()), dict(source.named_buffers()))):
        if tgt.keys() != src.keys():
            diff = sorted(set(tgt) ^ set(src))
            raise ValueError(f"momentum_update: target and source {kind} differ: {diff[:5]}")
        for name, t in tgt.items():
            s = src[name]
            if t.shape != s.shape:
                raise ValueError(f"momentum_update: {kind[:-1]} {name!r} has shape {tuple(t.shape)} in the "
                                 f"target but {tuple(s.shape)} in the source")
            if kind == "parameters":
                t.mul_(momentum).add_(s.detach().to(t.dtype), alpha=1.0 - momentum)
            else:
                t.copy_(s)
