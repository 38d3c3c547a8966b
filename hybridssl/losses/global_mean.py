"""Loss terms under torchrun (world size W > 1): every term is a mean over n_r units on rank r; the
rank's term is scaled by W·n_r/N (N = Σ_r n_r) so that DDP's gradient average is the gradient of the
global mean, and its VALUE is replaced by the global mean Σ_r n_r L_r / N (one all-reduce), so the
weighting sees the same statistics — and gives the same weights — on every rank; candidate counts and
redundancy are global too (see :mod:`hybridssl.task`)."""

from __future__ import annotations

import torch
from torch import Tensor

from hybridssl import dist
from hybridssl.dist import RankPlan


def globalise(names: list[str], losses: dict[str, Tensor], counts: dict[str, int], sizes: dict[str, tuple[int, int]],
              redundancies: list[float], plan: RankPlan,
              device: torch.device) -> tuple[dict[str, Tensor], dict[str, int], float | None]:
    """Global values, rank-share gradients, global candidate counts (in-batch + queue) and redundancy."""
    local = [float(counts.get(n, 0)) for n in names]
    sums = [counts.get(n, 0) * float(losses[n].detach()) if n in losses else 0.0 for n in names]
    vec = torch.tensor(local + sums + [sum(redundancies), float(len(redundancies))],
                       dtype=torch.float64, device=device)
    totals: list[float] = dist.all_reduce_sum(vec).tolist()
    k = len(names)
    total_n, total_sum, (red_sum, red_n) = totals[:k], totals[k:2 * k], totals[2 * k:]
    out: dict[str, Tensor] = {}
    for i, name in enumerate(names):
        if total_n[i] <= 0:
            continue
        value = total_sum[i] / total_n[i]
        if name not in losses:
            out[name] = torch.tensor(value, dtype=torch.float32, device=device)
            continue
        share = losses[name] * (plan.world * counts.get(name, 0) / total_n[i])
        out[name] = share + (value - share.detach())   # value: the global mean; gradient: this rank's share
    final = {}
    for name, (n_cand, queue_len) in sizes.items():
        if name in out:
            n_cand = n_cand or max(2, round(total_n[names.index(name)] / plan.world))
            final[name] = n_cand + queue_len
    return out, final, (red_sum / red_n if red_n else None)
