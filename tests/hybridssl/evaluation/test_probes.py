from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hybridssl.evaluation.probes import (
    fit_logistic,
    linear_probe,
    logistic_objective,
    predict,
    predict_proba,
    preprocess_features,
    summarize,
)


def _blobs(n_per: int, n_classes: int, dim: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * spread
    y = np.repeat(np.arange(n_classes), n_per)
    x = centres[y] + rng.normal(size=(len(y), dim))
    return x, y


def _reference_objective(W: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, l2: float) -> torch.Tensor:
    """(1/n) Σ_i [log Σ_k exp(x_i·W_k + b_k) − (x_i·W_{y_i} + b_{y_i})] + l2 Σ_{d,k} W_dk², by loops."""
    n, d = x.shape
    k = W.shape[1]
    total = torch.zeros((), dtype=torch.float64)
    for i in range(n):
        logits = [sum(x[i, j] * W[j, c] for j in range(d)) + b[c] for c in range(k)]
        m = max(float(v.detach()) for v in logits)
        lse = m + torch.log(sum(torch.exp(v - m) for v in logits))
        total = total + lse - logits[int(y[i])]
    penalty = sum(W[j, c] ** 2 for j in range(d) for c in range(k))
    return total / n + l2 * penalty


def test_objective_and_gradient_match_loop_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 3, 2, 0, 1])
    W1 = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b1 = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    W2, b2 = W1.detach().clone().requires_grad_(), b1.detach().clone().requires_grad_()
    fast = logistic_objective(W1, b1, x, y, 0.3)
    ref = _reference_objective(W2, b2, x, y, 0.3)
    assert fast.item() == pytest.approx(ref.item(), rel=1e-12)
    fast.backward()
    ref.backward()
    torch.testing.assert_close(W1.grad, W2.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(b1.grad, b2.grad, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda W, b: logistic_objective(W, b, x, y, 0.3), (W1.detach().requires_grad_(), b1.detach().requires_grad_()))


def test_separable_data_reaches_100_percent():
    x, y = _blobs(20, 3, 5, spread=10.0, seed=0)
    W, b = fit_logistic(x, y, 3, l2=1e-4)
    assert W.shape == (5, 3) and b.shape == (3,)
    assert np.mean(predict(x, W, b) == y) == 1.0


def test_solution_is_stationary():
    x, y = _blobs(15, 3, 4, spread=1.0, seed=1)
    W, b = fit_logistic(x, y, 3, l2=1e-2, tol=1e-10)
    Wt = torch.tensor(W, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    logistic_objective(Wt, bt, torch.tensor(x), torch.tensor(y), 1e-2).backward()
    assert Wt.grad.abs().max().item() < 1e-7 and bt.grad.abs().max().item() < 1e-7


@pytest.mark.parametrize("l2", [1e-3, 1e-1])
def test_matches_sklearn_with_C_equal_1_over_2_lambda_n(l2):
    sklm = pytest.importorskip("sklearn.linear_model")
    x, y = _blobs(20, 3, 4, spread=1.0, seed=2)               # overlapping classes
    n = len(y)
    W, b = fit_logistic(x, y, 3, l2=l2, max_iter=500, tol=1e-10)
    clf = sklm.LogisticRegression(C=1.0 / (2.0 * l2 * n), solver="lbfgs", tol=1e-12, max_iter=10_000)
    clf.fit(x, y)
    xt = np.random.default_rng(9).normal(size=(30, 4))
    np.testing.assert_allclose(predict_proba(xt, W, b), clf.predict_proba(xt), atol=1e-5)
    np.testing.assert_array_equal(predict(xt, W, b), clf.predict(xt))
    np.testing.assert_allclose(W, clf.coef_.T, atol=1e-4)     # unique: both have Σ_k W_k = 0
    np.testing.assert_allclose(b - b.mean(), clf.intercept_ - clf.intercept_.mean(), atol=1e-4)


def test_missing_classes_are_never_predicted():
    x, y = _blobs(10, 2, 3, spread=3.0, seed=3)
    y = np.where(y == 1, 2, 0)                                # classes 0 and 2 present, 1 and 3 absent
    W, b = fit_logistic(x, y, 4, l2=1e-2)
    assert np.all(W[:, [1, 3]] == 0) and np.all(np.isneginf(b[[1, 3]]))
    xt = np.random.default_rng(0).normal(size=(50, 3)) * 10
    assert set(np.unique(predict(xt, W, b))) <= {0, 2}
    p = predict_proba(xt, W, b)
    assert np.all(p[:, [1, 3]] == 0) and np.allclose(p.sum(1), 1.0)


def test_single_class_train_predicts_it():
    x = np.random.default_rng(0).normal(size=(5, 3))
    W, b = fit_logistic(x, np.full(5, 1), 3, l2=1e-2)
    assert np.all(predict(x, W, b) == 1)


def test_preprocess_standardises_with_train_stats_then_unit_norm():
    tr = np.array([[1.0, 10.0], [3.0, 30.0]])                 # mean (2, 20), std (1, 10)
    te = np.array([[2.0, 40.0], [4.0, 20.0]])
    a, c = preprocess_features(tr, te)
    s = 1 / math.sqrt(2)
    np.testing.assert_allclose(a, [[-s, -s], [s, s]])         # (-1, -1), (1, 1) normalised
    np.testing.assert_allclose(c, [[0.0, 1.0], [1.0, 0.0]])   # (0, 2), (2, 0) normalised


def _probe_data(seed: int):
    x, y = _blobs(30, 4, 6, spread=1.2, seed=seed)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    tr, va, te = perm[:40], perm[40:80], perm[80:]
    return x[tr], y[tr], x[va], y[va], x[te], y[te]


def test_linear_probe_selects_lambda_on_val_and_reports_test():
    trx, try_, vax, vay, tex, tey = _probe_data(0)
    grid = (1e-4, 1e-2, 1.0)
    out = linear_probe(trx, try_, vax, vay, tex, tey, 4, l2_grid=grid)
    assert set(out) == {"accuracy", "macro_f1", "weighted_f1", "l2", "val_accuracy", "n_train"}
    # reference selection: fit each λ on preprocessed train, score on val, ties → larger λ
    a, v, t = preprocess_features(trx, vax, tex)
    accs = {l2: 100 * np.mean(predict(v, *fit_logistic(a, try_, 4, l2)) == vay) for l2 in grid}
    best = max(grid, key=lambda l2: (accs[l2], l2))
    assert out["l2"] == best
    assert out["val_accuracy"] == pytest.approx(accs[best])
    pred = predict(t, *fit_logistic(a, try_, 4, best))
    assert out["accuracy"] == pytest.approx(100 * np.mean(pred == tey))
    assert out["n_train"] == 40
    assert 0.0 <= out["macro_f1"] <= 100.0


def test_linear_probe_choice_ignores_test_labels():
    trx, try_, vax, vay, tex, tey = _probe_data(1)
    a = linear_probe(trx, try_, vax, vay, tex, tey, 4, l2_grid=(1e-3, 1e-1))
    b = linear_probe(trx, try_, vax, vay, tex, np.roll(tey, 5), 4, l2_grid=(1e-3, 1e-1))
    assert a["l2"] == b["l2"] and a["val_accuracy"] == b["val_accuracy"]


def test_linear_probe_perfect_and_with_classes_missing_from_train():
    x, y = _blobs(10, 3, 4, spread=20.0, seed=4)
    out = linear_probe(x, y, x, y, x, y, 3, l2_grid=(1e-3,))
    assert out["accuracy"] == 100.0 and out["macro_f1"] == pytest.approx(100.0)
    # class 2 = near-copies of class 0; classes 2 and 3 absent from train
    x2 = np.concatenate([x[y == 0], x[y == 1], x[y == 0] + 1e-3])
    y2 = np.repeat([0, 1, 2], 10)
    out = linear_probe(x2[:20], y2[:20], x2, y2, x2, y2, 4)
    assert out["accuracy"] == pytest.approx(100 * 20 / 30)
    # class 2 items all predicted 0: F1_0 = 2·(10/20)·1 / (10/20 + 1) = 2/3, F1_1 = 1, F1_2 = 0,
    # class 3 neither true nor predicted → excluded: macro-F1 = (2/3 + 1 + 0) / 3 = 5/9
    assert out["macro_f1"] == pytest.approx(100 * 5 / 9)


def test_bad_input_raises():
    x, y = _blobs(5, 2, 3, spread=1.0, seed=0)
    with pytest.raises(ValueError, match="2-D"):
        fit_logistic(x[:, 0], y, 2, 1e-2)
    with pytest.raises(ValueError, match="NaN"):
        fit_logistic(np.where(x > 0.5, np.nan, x), y, 2, 1e-2)
    with pytest.raises(ValueError, match="shape"):
        fit_logistic(x, y[:-1], 2, 1e-2)
    with pytest.raises(ValueError, match="lie in"):
        fit_logistic(x, y + 1, 2, 1e-2)
    with pytest.raises(ValueError, match="l2"):
        fit_logistic(x, y, 2, -1.0)
    with pytest.raises(ValueError, match="empty"):
        fit_logistic(x[:0], y[:0], 2, 1e-2)
    with pytest.raises(ValueError, match="dims"):
        linear_probe(x, y, x[:, :2], y, x, y, 2)
    with pytest.raises(ValueError, match="empty"):
        linear_probe(x, y, x, y, x, y, 2, l2_grid=())
    with pytest.raises(ValueError, match="val"):
        linear_probe(x, y, x[:0], y[:0], x, y, 2)


def test_empty_val_allowed_with_single_lambda():
    x, y = _blobs(5, 2, 3, spread=5.0, seed=0)
    out = linear_probe(x, y, x[:0], y[:0], x, y, 2, l2_grid=(1e-2,))
    assert math.isnan(out["val_accuracy"]) and out["l2"] == 1e-2


def test_summarize():
    s = summarize([1.0, 2.0, 3.0])
    assert s == {"mean": 2.0, "std": 1.0, "n": 3, "values": [1.0, 2.0, 3.0]}  # sample std: √(2/2)
    s = summarize([70.0, 74.0])
    assert s["std"] == pytest.approx(math.sqrt(8.0))           # ((−2)² + 2²) / (2 − 1) = 8
    assert summarize([5.5]) == {"mean": 5.5, "std": 0.0, "n": 1, "values": [5.5]}
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        summarize([1.0, float("nan")])
