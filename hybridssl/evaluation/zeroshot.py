"""Zero-shot classification with prompt ensembling (Radford et al., ICML 2021, "Learning Transferable
Visual Models From Natural Language Supervision", CLIP) and macro-F1.

Class embedding (prompt ensembling): for class c with P_c prompt embeddings t_{c,p} (P_c, D),

    w_c = mean_p (t_{c,p} / |t_{c,p}|),   w_c <- w_c / |w_c|          -> class_emb (C, D)

Prediction: ``y_hat_i = argmax_c cos(x_i, w_c)`` for embeddings x (N, D); exact ties go to the
lowest class index (``np.argmax``).

Macro-F1 over classes c: precision_c = TP/(TP+FP), recall_c = TP/(TP+FN) (each 0 when its
denominator is 0), F1_c = 2 P R / (P + R) (0 when P + R = 0). Classes absent from both y_true and
y_pred are excluded from the mean (they carry no information); a class that is predicted but never
true, or true but never predicted, is included with F1 = 0.
"""

from __future__ import annotations

import numpy as np

from hybridssl.evaluation.retrieval import unit_rows


def class_embeddings(prompt_embeddings: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """Per class, the re-normalised mean of its normalised (P, D) prompt embeddings.

    Returns ``(class_names, class_emb (C, D))`` in the dict's insertion order, so label ``i`` refers
    to ``class_names[i]``.
    """
    if len(prompt_embeddings) == 0:
        raise ValueError("prompt_embeddings is empty: need at least one class")
    names = list(prompt_embeddings)
    rows = []
    for name in names:
        prompts = unit_rows(prompt_embeddings[name], f"prompt embeddings of class {name!r}")  # (P, D)
        rows.append(prompts.mean(axis=0))                          # (D,)
    dims = {r.shape[0] for r in rows}
    if len(dims) != 1:
        raise ValueError(f"prompt embeddings of different classes have different dims: {sorted(dims)}")
    mean = np.stack(rows)                                         # (C, D)
    norms = np.linalg.norm(mean, axis=1, keepdims=True)           # (C, 1)
    if np.any(norms < 1e-12):
        bad = [names[i] for i in np.flatnonzero(norms[:, 0] < 1e-12)]
        raise ValueError(f"prompt embeddings of classes {bad} cancel out (mean has ~zero norm)")
    return names, mean / norms


def zero_shot_predict(embeddings: np.ndarray, class_emb: np.ndarray) -> np.ndarray:
    """Predicted class index (N,) int64: argmax cosine similarity to the class embeddings."""
    x = unit_rows(embeddings, "embeddings")                 # (N, D)
    w = unit_rows(class_emb, "class_emb")                   # (C, D)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"embedding dims differ: embeddings D={x.shape[1]}, class_emb D={w.shape[1]}")
    return np.argmax(x @ w.T, axis=1).astype(np.int64)            # (N,)


def _check_labels(y: np.ndarray, n_classes: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{name} must lie in [0, {n_classes}), got range [{y.min()}, {y.max()}] "
                         "(filter out unlabeled items, e.g. label -1, first)")
    return y.astype(np.int64)


def _per_class_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(F1 (C,), true counts (C,), present (C,) bool: the class occurs in y_true or y_pred)."""
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    t = _check_labels(y_true, n_classes, "y_true")                # (N,)
    p = _check_labels(y_pred, n_classes, "y_pred")                # (N,)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    if t.size == 0:
        raise ValueError("y_true is empty")
    tp = np.bincount(t[t == p], minlength=n_classes).astype(np.float64)    # (C,)
    n_true = np.bincount(t, minlength=n_classes).astype(np.float64)        # (C,) TP + FN
    n_pred = np.bincount(p, minlength=n_classes).astype(np.float64)        # (C,) TP + FP
    precision = np.divide(tp, n_pred, out=np.zeros_like(tp), where=n_pred > 0)
    recall = np.divide(tp, n_true, out=np.zeros_like(tp), where=n_true > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return f1, n_true, (n_true > 0) | (n_pred > 0)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Macro-averaged F1 as a fraction in [0, 1] (see module docstring for the conventions)."""
    f1, _, present = _per_class_f1(y_true, y_pred, n_classes)
    return float(f1[present].mean())


def weighted_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Support-weighted F1 in [0, 1]: ``Σ_c F1_c · n_c / N`` with n_c the true count of class c (the
    figure to read on imbalanced labels; scikit-learn's ``average="weighted"``)."""
    f1, n_true, _ = _per_class_f1(y_true, y_pred, n_classes)
    return float((f1 * n_true).sum() / n_true.sum())


def f1_report(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, float]:
    """``{"macro_f1": %, "weighted_f1": %}`` of predictions."""
    return {"macro_f1": 100.0 * macro_f1(y_true, y_pred, n_classes),
            "weighted_f1": 100.0 * weighted_f1(y_true, y_pred, n_classes)}


def zero_shot_accuracy(embeddings: np.ndarray, labels: np.ndarray, class_emb: np.ndarray) -> dict[str, float]:
    """{"accuracy": %, "macro_f1": %, "chance": 100 / C, "n": N} of zero-shot predictions."""
    n_classes = np.asarray(class_emb).shape[0] if np.asarray(class_emb).ndim == 2 else 0
    pred = zero_shot_predict(embeddings, class_emb)               # (N,)
    y = _check_labels(labels, n_classes, "labels")                # (N,)
    if y.shape[0] != pred.shape[0]:
        raise ValueError(f"len(labels)={y.shape[0]} != number of embeddings {pred.shape[0]}")
    return {
        "accuracy": 100.0 * float(np.mean(pred == y)),
        "macro_f1": 100.0 * macro_f1(y, pred, n_classes),
        "chance": 100.0 / n_classes,
        "n": int(y.shape[0]),
    }
