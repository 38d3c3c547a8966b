"""On an NVIDIA GPU (skipped elsewhere; ``scripts/gpu_check.sh`` runs them and refuses skips): a run
trains in bf16 on CUDA, resumes, and its model embeds on the GPU; FLOP counts do not depend on the device."""

from __future__ import annotations

import json

import pytest
import torch

from hybridssl.app.train import train_run
from hybridssl.config import load_config
from hybridssl.flops import training_step_flops
from hybridssl.runs import build_model, load_run
from hybridssl.tokenizer import TextTokenizer, train_tokenizer
from hybridssl.trainer import Trainer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")]
SETS = ["data.train_size=64", "train.batch_size=16", "train.ckpt_every=2", "train.eval_size=32",
        "train.device=cuda", "train.precision=bf16"]


def test_tiny_run_trains_resumes_and_embeds_on_the_gpu(tmp_path):
    run = tmp_path / "run"
    train_run(load_config("tiny", [*SETS, "train.steps=2"]), run)
    metrics = train_run(load_config("tiny", [*SETS, "train.steps=4"]), run, resume=True)
    assert metrics["steps"] == 4
    logs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logs] == [1, 2, 3, 4] and all(torch.isfinite(torch.tensor(x["loss"])) for x in logs)
    loaded = load_run(run, device="cuda")
    emb = loaded.model.embed("image", torch.randn(3, 3, 32, 32, device="cuda"))
    assert emb.is_cuda and torch.allclose(emb.norm(dim=1), torch.ones(3, device="cuda"), atol=1e-4)


def test_flop_count_is_the_same_on_cpu_and_gpu(tmp_path):
    counts = {}
    for device in ("cpu", "cuda"):
        cfg = load_config("tiny", ["data.train_size=16", "train.batch_size=8", f"train.device={device}",
                                   "train.precision=fp32"])
        from hybridssl.data.splits import build_datasets

        train_set, _ = build_datasets(cfg.data, cfg.train.seed)
        ts = cfg.preprocess.text
        tok = TextTokenizer(train_tokenizer(train_set.captions(), ts.vocab_size, ts.model, ts.lowercase), ts.max_length)
        torch.manual_seed(0)
        trainer = Trainer(cfg, tmp_path / device, train_set, tok, build_model(cfg, tok.vocab_size, train_set.modalities))
        counts[device] = training_step_flops(trainer, next(iter(trainer.loader())))
    assert counts["cpu"] == counts["cuda"] > 0
