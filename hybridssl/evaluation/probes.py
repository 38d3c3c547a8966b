"""Linear probe on frozen embeddings: multinomial logistic regression trained full-batch by L-BFGS.

Preprocessing (:func:`preprocess_features`): features are standardised with the *training* mean
and std (per dimension; a std below 1e-12 counts as 1), then every row is L2-normalised.

Objective (:func:`logistic_objective`), for x (n, D), labels y (n,), weights W (D, K), bias b (K,):

    L(W, b) = (1/n) Σ_i −log softmax(x_i W + b)[y_i]  +  λ ‖W‖²_F        (bias not penalised)

It is minimised in float64 with ``torch.optim.LBFGS`` (strong-Wolfe line search) from W = 0,
b = 0. Multiplying L by n·C shows it has the same minimiser as scikit-learn's multinomial
``LogisticRegression(C=C)``, which minimises C Σ_i CE_i + ½‖W‖²_F, exactly when
**C = 1 / (2 λ n)**.

Classes that have no training example are left out of the softmax while fitting (the fit is the
one over the classes present); in the returned (W, b) their column of W is 0 and their bias is
−inf, so their logit is −inf, their probability exactly 0 and they are never predicted.

:func:`linear_probe` fits one model per λ of a grid on the training split, picks λ by
validation accuracy (ties → the larger λ) and reports the chosen model on the test split
(validation is never merged into training). :func:`summarize` gives mean ± sample std over seeds.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from hybridssl.evaluation.zeroshot import f1_report

_STD_FLOOR = 1e-12


def check_features(name: str, x: np.ndarray, allow_empty: bool = False) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, D), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"{name} must be a real numeric array, got {x.dtype}")
    if x.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is empty")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has zero feature dimensions")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf")
    return x.astype(np.float64)


def check_labels(name: str, y: np.ndarray, n: int, n_classes: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must have an integer dtype, got {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{name} must lie in [0, {n_classes}), got range [{y.min()}, {y.max()}]")
    return y.astype(np.int64)


def check_n_classes(n_classes: int) -> int:
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive int, got {n_classes!r}")
    return int(n_classes)


def preprocess_features(train_x: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Standardise with train mean/std, then L2-normalise rows; returns [train, *others] float64."""
    mean = train_x.mean(axis=0)                                      # (D,)
    std = train_x.std(axis=0)                                        # (D,)
    std = np.where(std < _STD_FLOOR, 1.0, std)
    out = []
    for x in (train_x, *others):
        z = (x - mean) / std                                         # (n, D)
        norm = np.linalg.norm(z, axis=1, keepdims=True)              # (n, 1)
        out.append(z / np.maximum(norm, _STD_FLOOR))
    return out


def logistic_objective(W: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, l2: float) -> torch.Tensor:
    """Mean cross-entropy of softmax(x W + b) plus l2·‖W‖²_F; W (D, K), b (K,), x (n, D), y (n,)."""
    logits = x @ W + b                                               # (n, K)
    return F.cross_entropy(logits, y) + l2 * (W * W).sum()


def fit_logistic(
    x: np.ndarray, y: np.ndarray, n_classes: int, l2: float, max_iter: int = 200, tol: float = 1e-8
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise :func:`logistic_objective` by full-batch float64 L-BFGS.

    x (n, D), y (n,) in [0, n_classes). Returns W (D, n_classes), b (n_classes,) float64; classes
    absent from y get W[:, c] = 0 and b[c] = −inf. ``tol`` bounds the max-abs gradient at stop.
    """
    n_classes = check_n_classes(n_classes)
    x = check_features("x", x)
    y = check_labels("y", y, x.shape[0], n_classes)
    l2 = float(l2)
    if not math.isfinite(l2) or l2 < 0:
        raise ValueError(f"l2 must be a finite number >= 0, got {l2}")
    if max_iter < 1 or not tol > 0:
        raise ValueError(f"max_iter must be >= 1 and tol > 0, got {max_iter}, {tol}")

    present = np.unique(y)                                           # (K',) sorted
    compact = np.searchsorted(present, y)                            # (n,) in [0, K')
    xt = torch.from_numpy(x)                                         # (n, D)
    yt = torch.from_numpy(compact)                                   # (n,)
    W = torch.zeros(x.shape[1], len(present), dtype=torch.float64, requires_grad=True)  # (D, K')
    b = torch.zeros(len(present), dtype=torch.float64, requires_grad=True)              # (K',)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, tolerance_grad=tol,
                            tolerance_change=1e-14, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = logistic_objective(W, b, xt, yt, l2)
        loss.backward()
        return loss

    opt.step(closure)
    W_full = np.zeros((x.shape[1], n_classes))                       # (D, K)
    b_full = np.full(n_classes, -np.inf)                             # (K,)
    W_full[:, present] = W.detach().numpy()
    b_full[present] = b.detach().numpy()
    return W_full, b_full


def predict_proba(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """softmax(x W + b) of shape (n, K); classes with b = −inf get probability 0."""
    logits = np.asarray(x, dtype=np.float64) @ W + b                 # (n, K)
    logits = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def predict(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmax_k (x W + b)_k of shape (n,) (ties → smallest class index)."""
    return np.argmax(np.asarray(x, dtype=np.float64) @ W + b, axis=1)


def _accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(100.0 * np.mean(pred == y))


def check_splits(train_x, train_y, val_x, val_y, test_x, test_y, n_classes: int, allow_empty_val: bool = False):
    """Validate the (features, labels) of the train/val/test splits of one protocol run; returns them
    as checked arrays: features (n, D) of one common D, labels in [0, n_classes)."""
    train_x = check_features("train_x", train_x)
    val_x = check_features("val_x", val_x, allow_empty=allow_empty_val)
    test_x = check_features("test_x", test_x)
    if not (val_x.shape[1] == test_x.shape[1] == train_x.shape[1]):
        raise ValueError(f"feature dims differ: train {train_x.shape[1]}, val {val_x.shape[1]}, test {test_x.shape[1]}")
    train_y = check_labels("train_y", train_y, train_x.shape[0], n_classes)
    val_y = check_labels("val_y", val_y, val_x.shape[0], n_classes)
    test_y = check_labels("test_y", test_y, test_x.shape[0], n_classes)
    return train_x, train_y, val_x, val_y, test_x, test_y


def linear_probe(
    train_x: np.ndarray, train_y: np.ndarray,
    val_x: np.ndarray, val_y: np.ndarray,
    test_x: np.ndarray, test_y: np.ndarray,
    n_classes: int,
    l2_grid: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0),
    max_iter: int = 200,
) -> dict:
    """Linear probe with λ chosen on validation accuracy (ties → larger λ); fit on train only.

    Returns {"accuracy": test top-1 %, "macro_f1": test macro-F1 %, "l2": chosen λ,
    "val_accuracy": %, "n_train": int}. An empty validation split is allowed only with a
    single-value grid (then "val_accuracy" is NaN).
    """
    n_classes = check_n_classes(n_classes)
    train_x, train_y, val_x, val_y, test_x, test_y = check_splits(
        train_x, train_y, val_x, val_y, test_x, test_y, n_classes, allow_empty_val=True)
    grid = [float(v) for v in l2_grid]
    if not grid:
        raise ValueError("l2_grid is empty")
    if val_x.shape[0] == 0 and len(grid) > 1:
        raise ValueError("val split is empty but l2_grid has several values to choose from")

    tr, va, te = preprocess_features(train_x, val_x, test_x)
    best: tuple[float, float, np.ndarray, np.ndarray] | None = None  # (val acc, λ, W, b)
    for l2 in grid:
        W, b = fit_logistic(tr, train_y, n_classes, l2, max_iter=max_iter)
        acc = _accuracy(predict(va, W, b), val_y) if va.shape[0] else float("nan")
        if best is None or acc > best[0] or (acc == best[0] and l2 > best[1]):
            best = (acc, l2, W, b)
    assert best is not None
    val_acc, l2, W, b = best
    pred = predict(te, W, b)                                         # (n_test,)
    return {
        "accuracy": _accuracy(pred, test_y),
        **f1_report(test_y, pred, n_classes),
        "l2": l2,
        "val_accuracy": val_acc,
        "n_train": int(train_x.shape[0]),
    }


def summarize(values: Sequence[float]) -> dict:
    """{"mean", "std" (sample std, ddof=1; 0.0 for one value), "n", "values"} over seeds."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("summarize() needs at least one value")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"summarize() got a non-finite value: {vals}")
    arr = np.asarray(vals)
    std = float(arr.std(ddof=1)) if len(vals) > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "n": len(vals), "values": vals}
