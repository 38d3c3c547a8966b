"""Model FLOPs against the formula, a training step's count, and the peak lookup."""

from __future__ import annotations

import pytest
import torch

from hybridssl.config import load_config
from hybridssl.data.splits import build_datasets
from hybridssl.flops import PEAK_ENV, bf16_peak_tflops, count_flops, training_step_flops, utilisation
from hybridssl.runs import build_model
from hybridssl.tokenizer import TextTokenizer, train_tokenizer
from hybridssl.trainer import Trainer


def test_linear_layer_step_is_six_b_i_o():
    layer = torch.nn.Linear(10, 20)
    x = torch.randn(7, 10, requires_grad=True)
    assert count_flops(lambda: layer(x)) == 2 * 7 * 10 * 20
    assert count_flops(lambda: layer(x).sum().backward()) == 6 * 7 * 10 * 20


def test_training_step_flops_of_the_tiny_task(tmp_path):
    cfg = load_config("tiny", ["data.train_size=16", "train.batch_size=8", "train.threads=1"])
    train_set, _ = build_datasets(cfg.data, cfg.train.seed)
    ts = cfg.preprocess.text
    tok = TextTokenizer(train_tokenizer(train_set.captions(), ts.vocab_size, ts.model, ts.lowercase), ts.max_length)
    trainer = Trainer(cfg, tmp_path, train_set, tok, build_model(cfg, tok.vocab_size, train_set.modalities))
    batch = next(iter(trainer.loader()))
    flops = training_step_flops(trainer, batch)
    forward = count_flops(lambda: trainer.task(trainer.to_device(batch), 0, torch.Generator().manual_seed(0)))
    assert 2.5 * forward < flops < 3.5 * forward        # backward ≈ 2 × forward
    assert all(p.grad is None for p in trainer.task.parameters())


def test_peak_lookup(monkeypatch):
    monkeypatch.delenv(PEAK_ENV, raising=False)
    assert bf16_peak_tflops("NVIDIA H200") == 989.4
    assert bf16_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert bf16_peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert bf16_peak_tflops("NVIDIA L40S") == 362.05 and bf16_peak_tflops("NVIDIA L4") == 121.0
    with pytest.raises(ValueError, match=PEAK_ENV):
        bf16_peak_tflops("Some Future GPU")
    monkeypatch.setenv(PEAK_ENV, "500")
    assert bf16_peak_tflops("Some Future GPU") == 500.0
    assert utilisation(1e9, 1000.0, 500.0) == pytest.approx(0.002)
