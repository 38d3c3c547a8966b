"""Variational auto-encoder objective (Kingma & Welling 2014, "Auto-Encoding Variational Bayes").

Posterior q(z|x) = N(μ, diag(exp(logvar))), prior p(z) = N(0, I).  Shapes: μ, logvar (B, ..., Z).

* ``reparameterize``:  z = μ + exp(logvar / 2) · ε,  ε ~ N(0, I)  (same shape as μ).
* ``gaussian_kl``:     KL(q ‖ p) = −½ Σ_{non-batch dims} (1 + logvar − μ² − exp(logvar)),
                       averaged over the batch → ().
* ``kl_weight``:       β(step) = β · min(1, step / warmup_steps)  (linear warm-up, "KL annealing").
* ``vae_loss``:        total = recon + β · KL.

Reconstruction term.  With a unit-variance Gaussian decoder p(x|z) = N(x̂, I) the ELBO's
reconstruction term is −log p(x|z) = ½ ‖x − x̂‖² + const, i.e. half the SUM of squared errors up to
a constant.  We use the MEAN squared error instead — over all elements, or, given a patch mask
(B, N) (1 = masked), over the masked patches exactly like :func:`~hybridssl.losses.mae.mae_loss` —
so the reconstruction scale matches the MAE loss; the relative weight of the KL is then set by β.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hybridssl.losses.mae import mae_loss

__all__ = ["gaussian_kl", "kl_weight", "reparameterize", "vae_loss"]


def _check_gaussian(mu: Tensor, logvar: Tensor) -> None:
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    if mu.ndim < 2 or mu.shape[0] < 1 or mu.numel() == 0:
        raise ValueError(f"mu and logvar must be non-empty with shape (B, ..., Z), got {tuple(mu.shape)}")


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """z = μ + exp(logvar/2)·ε with ε ~ N(0, I) drawn on ``generator``'s device; differentiable in μ, logvar."""
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    dev = generator.device if generator is not None else mu.device
    eps = torch.randn(mu.shape, generator=generator, device=dev).to(mu)  # (B, ..., Z)
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, exp(logvar)) ‖ N(0, I)) summed over the non-batch dims, mean over the batch → ()."""
    _check_gaussian(mu, logvar)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())  # (B, ..., Z)
    return kl.flatten(1).sum(dim=1).mean()


def kl_weight(step: int, warmup_steps: int, beta: float = 1.0) -> float:
    """Linear warm-up of the KL weight: 0 at step 0, ``beta`` from ``warmup_steps`` on (beta at once if 0)."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if warmup_steps == 0:
        return float(beta)
    return float(beta) * min(1.0, step / warmup_steps)


def vae_loss(
    recon: Tensor,
    target: Tensor,
    mu: Tensor,
    logvar: Tensor,
    beta: float,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """(total, recon_term, kl_term) with total = MSE-reconstruction + β·KL (see module doc).

    recon, target: same shape ((B, N, P) when a mask (B, N) is given); mu, logvar: (B, ..., Z).
    """
    if recon.shape != target.shape or recon.numel() == 0:
        raise ValueError(f"recon and target must be non-empty and of the same shape, got "
                         f"{tuple(recon.shape)} and {tuple(target.shape)}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if mask is None:
        recon_term = F.mse_loss(recon, target)
    else:
        recon_term = mae_loss(recon, target, mask)
    kl_term = gaussian_kl(mu, logvar)
    return recon_term + beta * kl_term, recon_term, kl_term
