from __future__ import annotations

import numpy as np
import pytest

from hybridssl.evaluation.zeroshot import class_embeddings, macro_f1, zero_shot_accuracy, zero_shot_predict


def reference_macro_f1(y_true, y_pred, n_classes):
    scores = []
    for c in range(n_classes):
        tp = sum(1 for t, p in zip(y_true, y_pred) if t == c and p == c)
        fp = sum(1 for t, p in zip(y_true, y_pred) if t != c and p == c)
        fn = sum(1 for t, p in zip(y_true, y_pred) if t == c and p != c)
        if tp + fp + fn == 0:
            continue  # absent from both y_true and y_pred
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        scores.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return sum(scores) / len(scores)


def test_class_embeddings_matches_loop_reference():
    rng = np.random.default_rng(0)
    prompts = {"dog": rng.normal(size=(3, 5)) * 7, "cat": rng.normal(size=(1, 5)), "bird": rng.normal(size=(4, 5))}
    names, emb = class_embeddings(prompts)
    assert names == ["dog", "cat", "bird"]  # insertion order
    assert emb.shape == (3, 5)
    for i, name in enumerate(names):
        acc = np.zeros(5)
        for row in prompts[name]:
            acc += row / np.sqrt(sum(v * v for v in row))
        acc /= len(prompts[name])
        np.testing.assert_allclose(emb[i], acc / np.sqrt(sum(v * v for v in acc)), atol=1e-12)


def test_class_embeddings_scale_invariant_per_prompt():
    p = np.array([[1.0, 0.0], [0.0, 1.0]])
    _, a = class_embeddings({"x": p})
    _, b = class_embeddings({"x": p * np.array([[100.0], [0.01]])})
    np.testing.assert_allclose(a, b, atol=1e-12)
    np.testing.assert_allclose(a[0], [2 ** -0.5, 2 ** -0.5], atol=1e-12)


def test_class_embeddings_invalid():
    with pytest.raises(ValueError, match="empty"):
        class_embeddings({})
    with pytest.raises(ValueError, match="dims"):
        class_embeddings({"a": np.ones((2, 3)), "b": np.ones((2, 4))})
    with pytest.raises(ValueError, match="cancel"):
        class_embeddings({"a": np.array([[1.0, 0.0], [-1.0, 0.0]])})
    with pytest.raises(ValueError, match="non-finite"):
        class_embeddings({"a": np.array([[np.nan, 0.0]])})
    with pytest.raises(ValueError, match="2-D"):
        class_embeddings({"a": np.ones(3)})
    with pytest.raises(ValueError, match="empty"):
        class_embeddings({"a": np.ones((0, 3))})


def test_zero_shot_predict_matches_loop():
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(20, 6)), rng.normal(size=(4, 6)) * rng.uniform(0.1, 10, size=(4, 1))
    pred = zero_shot_predict(x, w)
    for i in range(20):
        cos = [x[i] @ w[c] / (np.linalg.norm(x[i]) * np.linalg.norm(w[c])) for c in range(4)]
        assert pred[i] == int(np.argmax(cos))
    assert pred.dtype == np.int64


def test_zero_shot_accuracy_hand_case():
    class_emb = np.eye(3)
    x = np.array([[1.0, 0.1, 0.0], [0.9, 0.0, 0.2], [0.0, 2.0, 0.0], [0.0, 0.1, 1.0]])  # predicted 0, 0, 1, 2
    labels = np.array([0, 1, 1, 2])
    out = zero_shot_accuracy(x, labels, class_emb)
    assert out["accuracy"] == pytest.approx(75.0)
    # F1: class0 P=1/2 R=1 -> 2/3; class1 P=1 R=1/2 -> 2/3; class2 -> 1
    assert out["macro_f1"] == pytest.approx(100 * (2 / 3 + 2 / 3 + 1) / 3)
    assert out["chance"] == pytest.approx(100 / 3)
    assert out["n"] == 4


def test_macro_f1_class_missing_from_predictions():
    y_true = np.array([0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 0, 1, 0])
    # class0: P=2/4 R=1 -> 2/3; class1: P=1 R=1/2 -> 2/3; class2: never predicted -> 0;
    # class3: absent from both -> excluded.  Mean over 3 classes = 4/9.
    assert macro_f1(y_true, y_pred, 4) == pytest.approx(4 / 9)
    assert macro_f1(y_true, y_pred, 3) == pytest.approx(4 / 9)
    # a class predicted but never true counts with F1 = 0
    assert macro_f1(np.array([0, 0]), np.array([0, 1]), 2) == pytest.approx((2 / 3 + 0) / 2)


def test_macro_f1_matches_reference_random():
    rng = np.random.default_rng(2)
    for _ in range(20):
        c = int(rng.integers(1, 7))
        t, p = rng.integers(0, c, size=30), rng.integers(0, c, size=30)
        assert macro_f1(t, p, c + 2) == pytest.approx(reference_macro_f1(t, p, c + 2))
    assert macro_f1(np.array([1, 2]), np.array([1, 2]), 5) == 1.0


def test_invalid_labels_and_shapes():
    with pytest.raises(ValueError, match="range|lie in"):
        macro_f1(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="lie in"):
        zero_shot_accuracy(np.eye(2), np.array([0, -1]), np.eye(2))
    with pytest.raises(ValueError, match="integer"):
        macro_f1(np.array([0.0, 1.0]), np.array([0, 1]), 2)
    with pytest.raises(ValueError, match="length"):
        macro_f1(np.array([0, 1]), np.array([0]), 2)
    with pytest.raises(ValueError, match="empty"):
        macro_f1(np.array([], dtype=int), np.array([], dtype=int), 2)
    with pytest.raises(ValueError, match="n_classes"):
        macro_f1(np.array([0]), np.array([0]), 0)
    with pytest.raises(ValueError, match="len\\(labels\\)"):
        zero_shot_accuracy(np.eye(2), np.array([0]), np.eye(2))
    with pytest.raises(ValueError, match="dims differ"):
        zero_shot_predict(np.ones((2, 3)), np.eye(2))
    with pytest.raises(ValueError, match="non-finite"):
        zero_shot_predict(np.array([[np.inf, 0.0]]), np.eye(2))
    with pytest.raises(ValueError, match="2-D"):
        zero_shot_predict(np.ones(2), np.eye(2))
