"""The parity gate's arithmetic against direct loops, and its two gates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from export.backends import RunnerModel
from export.parity import (
    AccuracyGuardError,
    Evaluation,
    ParityError,
    check_drop,
    check_parity,
    compare,
    cosine_stats,
    min_cosine,
    row_cosines,
)
from hybridssl.evaluation.embed import Embeddings


def test_row_cosines_match_a_loop():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    want = [sum(a[i, k] * b[i, k] for k in range(5)) / math.sqrt(sum(a[i, k] ** 2 for k in range(5)) *
                                                                    sum(b[i, k] ** 2 for k in range(5))) for i in range(7)]
    np.testing.assert_allclose(row_cosines(a, b), want, rtol=1e-12)
    assert np.isnan(row_cosines(np.zeros((1, 3)), np.ones((1, 3)))[0])
    with pytest.raises(ValueError, match="different shapes"):
        row_cosines(a, b[:3])


def _emb(by, index=None):
    index = index or {m: np.arange(len(v)) for m, v in by.items()}
    n = max(len(v) for v in by.values())
    return Embeddings(keys=[str(i) for i in range(n)], labels=np.zeros(n, np.int64), by_modality=by, index=index)


def test_cosine_stats_and_compare():
    ref = _emb({"image": np.eye(3), "text": np.eye(3)})
    got = _emb({"image": np.array([[1.0, 0, 0], [1, 1, 0], [0, 0, 2]]), "text": np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, np.nan]])})
    stats = cosine_stats(ref, got)
    assert stats["image"]["min"] == pytest.approx(1 / math.sqrt(2)) and stats["image"]["mean"] == pytest.approx((2 + 1 / math.sqrt(2)) / 3)
    assert stats["text"]["nonfinite"] == 1 and stats["text"]["min"] == 1.0 and stats["image"]["n"] == 3
    r = compare(Evaluation(ref, {"R@1 image->text": 50.0, "zero-shot image": 80.0}),
                Evaluation(got, {"R@1 image->text": 52.0, "zero-shot image": 77.5}))
    assert r["delta"] == {"R@1 image->text": 2.0, "zero-shot image": -2.5} and r["drop"] == 2.5
    assert min_cosine(r) == -1.0                                          # a non-finite row counts as −1
    missing = compare(Evaluation(ref, {"zero-shot image": 80.0}), Evaluation(ref, {}))
    assert math.isnan(missing["delta"]["zero-shot image"]) and missing["drop"] == math.inf
    with pytest.raises(ValueError, match="cover different items"):
        cosine_stats(ref, _emb({"image": np.eye(3), "text": np.eye(3)}, {"image": np.array([0, 1, 2]), "text": np.array([0, 2, 1])}))
    with pytest.raises(ValueError, match="produced no 'text' embeddings"):
        cosine_stats(ref, _emb({"image": np.eye(3)}))


def test_gates():
    ok = {"cosine": {"image": {"min": 0.99995, "mean": 1.0, "n": 4, "nonfinite": 0}}, "delta": {"R@1 a->b": -0.5}, "drop": 0.5}
    check_parity("s", ok)
    check_drop("s", ok, max_drop=0.5)
    low = {**ok, "cosine": {"image": {"min": 0.9990, "mean": 0.9999, "n": 4, "nonfinite": 0}}}
    with pytest.raises(ParityError, match=r"s: the exported graph does not match PyTorch \(image min cosine 0.999000"):
        check_parity("s", low)
    with pytest.raises(AccuracyGuardError, match=r"step: accuracy guard tripped — R@1 a->b dropped 0.50 points \(max allowed 0.4\)"):
        check_drop("step", ok, max_drop=0.4)
    nan = {**ok, "cosine": {"image": {"min": float("nan"), "mean": float("nan"), "n": 4, "nonfinite": 4}}}
    with pytest.raises(AccuracyGuardError, match="non-finite embeddings"):
        check_drop("s", nan, max_drop=100)
    with pytest.raises(ParityError, match="4 non-finite"):
        check_parity("s", nan)


def test_runner_model_offers_the_tower_interface():
    seen = {}

    def runner(feeds):
        seen.update(feeds)
        return np.ones((len(feeds["input_ids"]), 4), np.float32) / 2

    model = RunnerModel({"text": runner})
    ids, attn = torch.tensor([[2, 5, 3, 0]]), torch.tensor([[True, True, True, False]])
    out = model.embed("text", ids, attn)
    assert out.shape == (1, 4) and seen["attention_mask"].tolist() == [[1, 1, 1, 0]]
    assert seen["input_ids"].dtype == np.int64 and seen["attention_mask"].dtype == np.int64
    assert torch.equal(model.forward_head("text", model.forward_features("text", ids, attn)), out)
    assert next(model.parameters()).device.type == "cpu" and model.modalities == ("text",)
    with pytest.raises(ValueError, match="no exported 'image' tower"):
        model.embed("image", torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="at least one tower"):
        RunnerModel({})
