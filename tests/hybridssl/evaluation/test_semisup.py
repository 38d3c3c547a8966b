"""FixMatch: the thresholded pseudo-label loss against its formula, the μ·B unlabelled batch, the
views, the unlabelled pool (no validation or test item), and the protocol in evaluate_run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hybridssl.app.evaluate import evaluate_run
from hybridssl.evaluation.finetune import ModalityInputs
from hybridssl.evaluation.semisup import (
    FixMatch,
    FixMatchConfig,
    pseudo_label_loss,
    strong_view,
    unlabelled_positions,
    weak_view,
)


def test_pseudo_label_loss_keeps_only_confident_items():
    probs = torch.tensor([[0.97, 0.02, 0.01], [0.5, 0.3, 0.2], [0.01, 0.01, 0.98]])
    logits = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    loss, mask = pseudo_label_loss(logits, probs, threshold=0.95)
    assert mask.tolist() == [1.0, 0.0, 1.0]
    ce = lambda z, y: -(z[y] - torch.logsumexp(z, 0))  # noqa: E731
    expected = (ce(logits[0], 0) + ce(logits[2], 2)) / 3                 # masked mean over the whole batch
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert float(pseudo_label_loss(logits, probs, threshold=0.99)[0]) == 0.0


def _images(n: int) -> ModalityInputs:
    g = torch.Generator().manual_seed(0)
    return ModalityInputs("image", torch.randn(n, 3, 16, 16, generator=g), None, np.full(n, -1),
                          np.arange(n, dtype=np.int64))


def test_the_unlabelled_batch_is_mu_times_the_labelled_one():
    fm = FixMatch(_images(50), FixMatchConfig(unlabelled_ratio=3), seed=0)
    rows = fm.batch(labelled_size=4)
    assert len(rows) == 12 and len(set(rows.tolist())) == 12
    assert len(fm.batch(labelled_size=40)) == 50                        # capped at the pool
    clf = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4))
    loss = fm.loss(lambda x, a: clf(x), 4, torch.device("cpu"))
    assert loss.requires_grad and fm.drawn == 12 and 0 <= fm.pseudo_label_rate <= 100
    with pytest.raises(ValueError, match="threshold"):
        FixMatchConfig(threshold=0)


def test_views_keep_shapes_and_follow_the_seed():
    x = _images(4).x
    a = weak_view("image", x, None, torch.Generator().manual_seed(1))[0]
    b = weak_view("image", x, None, torch.Generator().manual_seed(1))[0]
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    s = strong_view("image", x, None, torch.Generator().manual_seed(2))[0]
    assert s.shape == x.shape and (s == 0).any()                        # cutout
    mel = torch.randn(2, 1, 16, 40)
    assert strong_view("audio", mel, None, torch.Generator().manual_seed(0))[0].shape == mel.shape
    ids, attn = torch.ones(3, 20, dtype=torch.long), torch.ones(3, 20, dtype=torch.bool)
    ids2, attn2 = strong_view("text", ids, attn, torch.Generator().manual_seed(0))
    assert torch.equal(ids2, ids) and attn2[:, 0].all() and not attn2.all()


def test_the_unlabelled_pool_leaves_out_the_validation_split():
    assert unlabelled_positions(np.arange(10), np.array([2, 7])).tolist() == [0, 1, 3, 4, 5, 6, 8, 9]


def test_evaluate_run_reports_it_beside_the_supervised_fine_tune(tiny_run_dir, tmp_path):
    result = evaluate_run(tiny_run_dir, out_dir=tmp_path, fractions=(0.1,), seeds=(0,), finetune_steps=3, pool_size=60,
                          test_size=20, threads=1, examples=0, attribute_probes=False, semi_supervised=True)
    low = result["low_label"]
    assert set(low["protocols"]) == {"linear_probe", "knn", "finetune", "semi_supervised"}
    run = low["protocols"]["semi_supervised"]["0.1"]["runs"][0]
    sup = low["protocols"]["finetune"]["0.1"]["runs"][0]
    assert run["n_train"] == sup["n_train"] and run["n_unlabelled"] == 60 - run["n_val"]   # pool minus validation
    assert 0 <= run["pseudo_label_rate"] <= 100 and math.isfinite(run["accuracy"])
    assert low["semi_supervised_config"] == {"threshold": 0.95, "unlabelled_ratio": 3, "weight": 1.0}
