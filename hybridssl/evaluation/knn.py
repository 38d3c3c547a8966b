"""Weighted k-nearest-neighbour classification on cosine similarity.

Wu, Xiong, Yu, Lin (2018), "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination", CVPR — the kNN monitor used throughout self-supervised learning.

For a query q and training features t_j (rows L2-normalised), s_j = cos(q, t_j). Let N_k(q) be
the k training points with the largest s_j (all of them when k > n_train). The vote for class c is

    w_c(q) = Σ_{j ∈ N_k(q), y_j = c} exp(s_j / τ)

and the prediction is argmax_c w_c(q). Exact ties in w are broken toward the smallest class
index. Internally the weights are computed as exp((s_j − max_j s_j) / τ), which multiplies every
vote of a query by the same positive constant (same argmax) and cannot overflow for small τ.

Shapes: train_x (N, D), train_y (N,), test_x (M, D) → predictions (M,). Queries are processed in
chunks of ``chunk_size`` rows so memory is O(chunk_size · N). Which of several training points
tied at the k-th similarity enters N_k(q) is unspecified (``torch.topk``'s choice).

:func:`knn_classify` picks k from a grid by validation accuracy (ties → the smaller k) and
reports test accuracy and macro-F1 (percent).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from hybridssl.evaluation.probes import check_features, check_labels, check_n_classes, check_splits
from hybridssl.evaluation.zeroshot import f1_report


def _l2_normalise(name: str, x: np.ndarray) -> torch.Tensor:
    norm = np.linalg.norm(x, axis=1, keepdims=True)                  # (n, 1)
    if np.any(norm == 0):
        raise ValueError(f"{name} has a zero-norm row; cosine similarity is undefined for it")
    return torch.from_numpy(x / norm)                                # (n, D) float64


def _topk_neighbours(
    train: torch.Tensor, query: torch.Tensor, k: int, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarities (M, k) sorted descending and train indices (M, k) of each query's k nearest."""
    k = min(k, train.shape[0])
    sims, idx = [], []
    for start in range(0, query.shape[0], chunk_size):
        s = query[start : start + chunk_size] @ train.T              # (C, N)
        top_s, top_i = torch.topk(s, k, dim=1, largest=True, sorted=True)  # (C, k)
        sims.append(top_s)
        idx.append(top_i)
    return torch.cat(sims), torch.cat(idx)


def _vote(sims: torch.Tensor, nbr_labels: torch.Tensor, k: int, tau: float, n_classes: int) -> np.ndarray:
    """argmax_c Σ_{first k neighbours with label c} exp(s/τ); sims, nbr_labels (M, ≥k) → (M,)."""
    s = sims[:, :k]                                                  # (M, k)
    w = torch.exp((s - s[:, :1]) / tau)                              # (M, k), column 0 is the max
    votes = torch.zeros(s.shape[0], n_classes, dtype=torch.float64)  # (M, K)
    votes.scatter_add_(1, nbr_labels[:, :k], w)
    return np.argmax(votes.numpy(), axis=1)                          # first max → smallest class


def _check_knn_args(k: int, tau: float, chunk_size: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if not (math.isfinite(float(tau)) and tau > 0):
        raise ValueError(f"tau must be a finite number > 0, got {tau}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")


def knn_predict(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
    k: int = 20, tau: float = 0.07, n_classes: int | None = None, chunk_size: int = 1024,
) -> np.ndarray:
    """Weighted cosine kNN predictions (M,) int64 for test_x (M, D); see module doc."""
    _check_knn_args(k, tau, chunk_size)
    train_x = check_features("train_x", train_x)
    test_x = check_features("test_x", test_x, allow_empty=True)
    if test_x.shape[1] != train_x.shape[1]:
        raise ValueError(f"feature dims differ: train {train_x.shape[1]}, test {test_x.shape[1]}")
    if n_classes is None:
        y = np.asarray(train_y)
        n_classes = int(y.max()) + 1 if y.size and np.issubdtype(y.dtype, np.integer) else 1
    n_classes = check_n_classes(n_classes)
    train_y = check_labels("train_y", train_y, train_x.shape[0], n_classes)
    if test_x.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    train, query = _l2_normalise("train_x", train_x), _l2_normalise("test_x", test_x)
    sims, idx = _topk_neighbours(train, query, k, chunk_size)        # (M, k'), (M, k')
    labels = torch.from_numpy(train_y)[idx]                          # (M, k')
    return _vote(sims, labels, k, float(tau), n_classes).astype(np.int64)


def knn_classify(
    train_x: np.ndarray, train_y: np.ndarray,
    val_x: np.ndarray, val_y: np.ndarray,
    test_x: np.ndarray, test_y: np.ndarray,
    n_classes: int,
    k_grid: Sequence[int] = (1, 5, 10, 20, 50),
    tau: float = 0.07,
    chunk_size: int = 1024,
) -> dict:
    """kNN with k chosen on validation accuracy (ties → smaller k; k > n_train uses all points).

    Returns {"accuracy": test %, "macro_f1": test %, "k": chosen k, "val_accuracy": %,
    "n_train": int, "tau": τ}. Neighbours are searched once for the largest k of the grid.
    """
    n_classes = check_n_classes(n_classes)
    grid = sorted(int(k) for k in k_grid)
    if not grid:
        raise ValueError("k_grid is empty")
    for k in grid:
        _check_knn_args(k, tau, chunk_size)
    train_x, train_y, val_x, val_y, test_x, test_y = check_splits(
        train_x, train_y, val_x, val_y, test_x, test_y, n_classes)

    train = _l2_normalise("train_x", train_x)
    ytrain = torch.from_numpy(train_y)
    v_sims, v_idx = _topk_neighbours(train, _l2_normalise("val_x", val_x), grid[-1], chunk_size)
    best_k, best_acc = grid[0], -1.0
    for k in grid:                                                   # ascending → ties keep smaller k
        acc = float(100.0 * np.mean(_vote(v_sims, ytrain[v_idx], k, float(tau), n_classes) == val_y))
        if acc > best_acc:
            best_k, best_acc = k, acc
    t_sims, t_idx = _topk_neighbours(train, _l2_normalise("test_x", test_x), best_k, chunk_size)
    pred = _vote(t_sims, ytrain[t_idx], best_k, float(tau), n_classes)
    return {
        "accuracy": float(100.0 * np.mean(pred == test_y)),
        **f1_report(test_y, pred, n_classes),
        "k": best_k,
        "val_accuracy": best_acc,
        "n_train": int(train_x.shape[0]),
        "tau": float(tau),
    }
