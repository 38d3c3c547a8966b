"""GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018, "GradNorm: Gradient
Normalization for Adaptive Loss Balancing in Deep Multitask Networks").

Weights w_i (K,), initialised at 1, are a *buffer* (the main optimizer never sees them) and
are updated once per training step by their own gradient step.  With W the parameters of the
last shared layer (``ctx.shared_parameters``) and P the losses present this step:

    G_i   = ‖∇_W (w_i L_i)‖₂ = w_i · ‖∇_W L_i‖₂                       (P,)
    Ḡ     = mean_i G_i                                (treated as a constant)
    L̃_i   = L_i(t) / L_i(0)     (L_i(0): the loss the first step name i appeared)
    r_i   = L̃_i / mean_j L̃_j
    L_grad = Σ_i | G_i − Ḡ · r_i^α |
    ∂L_grad/∂w_i = sign(G_i − Ḡ r_i^α) · ‖∇_W L_i‖₂                  (analytic)
    w_i ← max(w_i − lr · ∂L_grad/∂w_i, 1e-3),   then  w ← w · P / Σ_i w_i   (present losses)

(the floor is applied before renormalising, so it guarantees w_i > 0, and w_i ≥ 1e-3 · P/Σ w).

The loss returned is total = Σ_i w_i.detach() · L_i with the weights from *before* this step's
update (those are also the reported ones).  Updates happen only in training mode with grad
enabled; ``ctx.shared_parameters`` is required then (ValueError otherwise).  The last
L_grad is kept in ``last_grad_loss`` for logging.

Distributed (world size W > 1): ‖∇_W L_i‖ is the norm of the rank-MEAN of the per-rank gradients
(one all-reduce per loss), i.e. of the gradient DDP applies, so every rank computes the same
weights; the losses it receives must carry the global values (the hybrid task passes them).
Every rank must call the update with the same present losses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from hybridssl.weighting.base import LossWeighting, WeightingContext, weighted_sum

_EPS = 1e-12


def _at_least_fp32(g: Tensor) -> Tensor:
    """bf16/fp16 gradients in float32; float32 and float64 ones as they are."""
    return g.to(torch.promote_types(g.dtype, torch.float32))


def shared_grad_norm(loss: Tensor, params: Sequence[nn.Parameter]) -> Tensor:
    """‖∇_W loss‖₂ over all ``params`` (0 if the loss does not depend on them); graph kept.

    Under torch.distributed the gradient is first averaged over the ranks (see module doc)."""
    from hybridssl import dist

    params = list(params)
    grads: Sequence[Tensor | None] = [None] * len(params)
    if loss.requires_grad:
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    if dist.is_distributed():
        flat = torch.cat([_at_least_fp32(g if g is not None else torch.zeros_like(p)).flatten()
                          for g, p in zip(grads, params)])            # (|W|,)
        return torch.linalg.vector_norm(dist.all_reduce_mean(flat))
    norms = [torch.linalg.vector_norm(_at_least_fp32(g)) for g in grads if g is not None]
    if not norms:
        return torch.zeros((), device=params[0].device)
    return torch.linalg.vector_norm(torch.stack(norms))


def gradnorm_step(weights: Tensor, grad_norms: Tensor, rel_losses: Tensor, alpha: float,
                  lr: float, min_weight: float = 1e-3) -> tuple[Tensor, Tensor]:
    """One GradNorm update of ``weights`` (P,) given ‖∇_W L_i‖ (P,) and L̃_i = L_i/L_i(0) (P,).

    Returns (new weights (P,) summing to P, L_grad ()).
    """
    g = weights * grad_norms                                   # (P,) G_i
    g_bar = g.mean()                                           # () constant
    r = rel_losses / rel_losses.mean().clamp_min(_EPS)         # (P,)
    target = g_bar * r.pow(alpha)                              # (P,)
    grad_loss = (g - target).abs().sum()
    dw = torch.sign(g - target) * grad_norms                   # (P,) ∂L_grad/∂w_i
    new = (weights - lr * dw).clamp_min(min_weight)
    new = new * (new.numel() / new.sum())
    return new, grad_loss


class GradNorm(LossWeighting):
    """w ← w − lr·∂/∂w Σ_i|w_i‖∇_W L_i‖ − Ḡ·r_i^α|, renormalised Σw = K; total = Σ w_i·L_i."""

    weights: Tensor
    initial_losses: Tensor
    initialised: Tensor

    name = "gradnorm"

    def __init__(self, loss_names: Sequence[str], alpha: float = 1.5, lr: float = 0.025,
                 min_weight: float = 1e-3) -> None:
        super().__init__(loss_names)
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha!r}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if not min_weight > 0:
            raise ValueError(f"min_weight must be > 0, got {min_weight!r}")
        self.alpha = float(alpha)
        self.lr = float(lr)
        self.min_weight = float(min_weight)
        k = self.num_losses
        self.register_buffer("weights", torch.ones(k))                              # (K,)
        self.register_buffer("initial_losses", torch.zeros(k))                      # (K,) L_i(0)
        self.register_buffer("initialised", torch.zeros(k, dtype=torch.bool))       # (K,)
        self.last_grad_loss: float | None = None

    def _shared(self, ctx: WeightingContext) -> list[nn.Parameter]:
        params = ctx.shared_parameters
        if params is None or len(list(params)) == 0:
            raise ValueError("GradNorm needs the shared parameters: pass "
                             "WeightingContext(shared_parameters=[...last shared layer params...])")
        return list(params)

    def _update(self, items: list[tuple[int, str, Tensor]], params: list[nn.Parameter]) -> None:
        idx = torch.tensor([i for i, _, _ in items], device=self.weights.device)
        current = torch.stack([loss.detach().float().to(self.weights.device)
                               for _, _, loss in items])                           # (P,)
        fresh = ~self.initialised.index_select(0, idx)                              # (P,)
        init = torch.where(fresh, current, self.initial_losses.index_select(0, idx))
        self.initial_losses.index_copy_(0, idx, init)
        self.initialised.index_fill_(0, idx, True)
        norms = torch.stack([shared_grad_norm(loss, params).to(self.weights.device)
                             for _, _, loss in items])                             # (P,)
        rel = current / init.clamp_min(_EPS)                                        # (P,) L̃_i
        new, grad_loss = gradnorm_step(self.weights.index_select(0, idx), norms, rel,
                                       self.alpha, self.lr, self.min_weight)
        self.weights.index_copy_(0, idx, new)
        self.last_grad_loss = float(grad_loss)

    def forward(self, losses: dict[str, Tensor],
                ctx: WeightingContext) -> tuple[Tensor, dict[str, float]]:
        items = self.present(losses)
        all_w = self.weights.tolist()
        w = [all_w[i] for i, _, _ in items]
        total = weighted_sum(items, w)
        if self.training and torch.is_grad_enabled():
            self._update(items, self._shared(ctx))
        return total, {name: wi for (_, name, _), wi in zip(items, w)}

    def extra_repr(self) -> str:
        return (f"G_i = w_i‖∇_W L_i‖, L_grad = Σ_i|G_i − Ḡ·r_i^α|, "
                f"w ← w − lr·∂L_grad/∂w, Σw = K; alpha={self.alpha:g}, lr={self.lr:g}, losses={list(self.loss_names)}")
