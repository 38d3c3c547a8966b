"""The floors against their formulas, the untrained copy, and the floors in ``evaluate_run``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hybridssl.evaluation.finetune import ModalityInputs
from hybridssl.evaluation.floors import raw_vectors, untrained_copy
from hybridssl.runs import build_model, load_run


def _inputs(m: str, x: torch.Tensor, attention: torch.Tensor | None = None) -> ModalityInputs:
    n = x.shape[0]
    return ModalityInputs(m, x, attention, np.zeros(n, np.int64), np.arange(n))


def test_image_floor_is_16x16_average_pooling():
    x = torch.randn(2, 3, 32, 32)
    v = raw_vectors(_inputs("image", x))
    assert v.shape == (2, 768)
    assert v[1, 16 * 5 + 7] == pytest.approx(float(x[1, 0, 10:12, 14:16].mean()), abs=1e-6)   # channel 0, cell (5, 7)


def test_text_floor_is_a_normalised_bag_without_special_tokens():
    ids = torch.tensor([[1, 5, 5, 7, 2, 0], [1, 9, 2, 0, 0, 0]])
    attn = ids != 0
    v = raw_vectors(_inputs("text", ids, attn), vocab_size=10, special_ids=(0, 1, 2))
    assert v.shape == (2, 10)
    np.testing.assert_allclose(v[0], np.eye(10)[5] * 2 / 3 + np.eye(10)[7] / 3, atol=1e-7)
    np.testing.assert_allclose(v[1], np.eye(10)[9], atol=1e-7)
    with pytest.raises(ValueError, match="vocabulary size"):
        raw_vectors(_inputs("text", ids, attn))


def test_sequence_floor_is_mean_and_std_over_real_frames():
    x = torch.randn(2, 6, 3)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    v = raw_vectors(_inputs("seq_imu", x, mask))
    real = x[0, :4].numpy()
    np.testing.assert_allclose(v[0], np.concatenate([real.mean(0), real.std(0)]), atol=1e-5)


def test_untrained_copy_is_the_runs_initialisation(tiny_run_dir):
    run = load_run(tiny_run_dir)
    fresh = untrained_copy(run, 7)
    torch.manual_seed(7)
    ref = build_model(run.cfg, int(run.state["vocab_size"]), tuple(run.state["modalities"]))
    for (name, a), b in zip(fresh.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), name
    assert any(not torch.equal(a, t) for a, t in zip(fresh.state_dict().values(), run.model.state_dict().values()))
    assert not fresh.training
