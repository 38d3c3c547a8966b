"""Representation-quality diagnostics: alignment, uniformity (Wang & Isola, ICML 2020, "Understanding
Contrastive Representation Learning through Alignment and Uniformity on the Hypersphere") and the
effective rank (Roy & Vetterli, EUSIPCO 2007, "The effective rank: a measure of effective
dimensionality").

All embeddings are (N, D) and are L2-normalised here (defensively) for alignment and uniformity.

    alignment(x, y; alpha)  = mean_i |x_i - y_i|_2^alpha                       (lower = better)
    uniformity(x; t)        = log mean_{i<j} exp(-t |x_i - x_j|_2^2)           (lower = more uniform)
    effective_rank(x)       = exp(-sum_k p_k log p_k),  p_k = s_k / sum_k s_k

where s_k are the singular values of the column-centred matrix x - mean_i x_i; zero ones are
skipped, "zero" meaning below max(N, D) * eps * |x|_F (round-off level, as in a numerical rank).
For unit vectors |x_i - x_j|^2 = 2 - 2 <x_i, x_j>, so uniformity lies in [-4t, 0].

Uniformity uses all N(N-1)/2 pairs when N <= ``max_rows`` (4096); above that a fixed-seed
(``seed=0``) random subset of ``max_rows`` rows is drawn without replacement, so the value is
deterministic for a given input. It is evaluated in row blocks with a log-sum-exp.

The effective rank lies in [1, min(N, D)] for a non-zero matrix; centring removes one direction,
so after centring it is at most min(N - 1, D) (the centred D x D identity has effective rank D - 1;
pass ``center=False`` for the uncentred definition of the paper). A matrix that is zero after
centring (all rows identical: complete collapse) returns 0.0 by convention.
"""

from __future__ import annotations

import numpy as np

UNIFORMITY_MAX_ROWS = 4096
_BLOCK = 512


def _check_matrix(x: np.ndarray, name: str, min_rows: int = 1) -> np.ndarray:
    """Validate a finite (N, D) array with N >= min_rows, D >= 1; return it as float64."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {x.shape}")
    if x.shape[0] < min_rows or x.shape[1] == 0:
        raise ValueError(f"{name} needs at least {min_rows} row(s) and 1 column, got shape {x.shape}")
    x = x.astype(np.float64, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return x


def _normalise_rows(x: np.ndarray, name: str) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)             # (N, 1)
    if np.any(norms == 0):
        raise ValueError(f"{name} has all-zero rows: cannot L2-normalise")
    return x / norms                                              # (N, D)


def alignment(x: np.ndarray, y: np.ndarray, alpha: float = 2.0) -> float:
    """mean_i |x_i - y_i|^alpha over positive pairs (x_i, y_i), rows L2-normalised first."""
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    xn = _normalise_rows(_check_matrix(x, "x"), "x")              # (N, D)
    yn = _normalise_rows(_check_matrix(y, "y"), "y")              # (N, D)
    if xn.shape != yn.shape:
        raise ValueError(f"x and y must be paired with equal shapes, got {xn.shape} and {yn.shape}")
    dist = np.linalg.norm(xn - yn, axis=1)                        # (N,)
    return float(np.mean(dist ** alpha))


def _logsumexp(v: np.ndarray) -> float:
    top = float(np.max(v))
    return top + float(np.log(np.sum(np.exp(v - top))))


def uniformity(x: np.ndarray, t: float = 2.0, max_rows: int = UNIFORMITY_MAX_ROWS, seed: int = 0) -> float:
    """log mean_{i<j} exp(-t |x_i - x_j|^2) on normalised rows (subsampled above ``max_rows``)."""
    if not t > 0:
        raise ValueError(f"t must be > 0, got {t}")
    if max_rows < 2:
        raise ValueError(f"max_rows must be >= 2, got {max_rows}")
    xn = _normalise_rows(_check_matrix(x, "x", min_rows=2), "x")  # (N, D)
    if xn.shape[0] > max_rows:
        rows = np.random.default_rng(seed).choice(xn.shape[0], size=max_rows, replace=False)
        xn = xn[np.sort(rows)]                                    # (max_rows, D)
    n = xn.shape[0]
    block_lse = []
    for start in range(0, n - 1, _BLOCK):
        stop = min(start + _BLOCK, n - 1)
        sq = np.clip(2.0 - 2.0 * (xn[start:stop] @ xn.T), 0.0, None)   # (b, N)
        upper = np.arange(n)[None, :] > np.arange(start, stop)[:, None]  # (b, N) j > i
        block_lse.append(_logsumexp(-t * sq[upper]))
    n_pairs = n * (n - 1) / 2
    return _logsumexp(np.asarray(block_lse)) - float(np.log(n_pairs))


def effective_rank(x: np.ndarray, center: bool = True) -> float:
    """Roy & Vetterli effective rank exp(H(p)), p = normalised singular values of (centred) x."""
    x0 = _check_matrix(x, "x")                                    # (N, D)
    xm = x0 - x0.mean(axis=0, keepdims=True) if center else x0    # (N, D)
    s = np.linalg.svd(xm, compute_uv=False)                       # (min(N, D),)
    tol = max(x0.shape) * np.finfo(np.float64).eps * float(np.linalg.norm(x0))
    s = s[s > tol]                                                # round-off "zeros" skipped
    if s.size == 0:
        return 0.0
    p = s / s.sum()
    return float(np.exp(-np.sum(p * np.log(p))))
