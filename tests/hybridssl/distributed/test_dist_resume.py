"""A run resumes on another world size: checkpoints hold the full (unsharded) state, the data of a
step depends only on (seed, step), and a step on 2 ranks equals a step of one process.

* 2 gloo ranks train 2 steps (DDP, and FSDP whose checkpoint is gathered on rank 0), then ONE
  process resumes each run to step 4;
* one process trains 2 steps, then 2 ranks resume it to step 4;
all three must match 4 uninterrupted single-process steps (weights, EMA weights, losses). The
configuration carries every piece of resumable state: AdamW moments, the MoCo queue, the adaptive
weighting's EMAs and the EMA of the weights.

Every phase trains in float64: the claim is algebraic, and float32 rounding (which differs between
CPUs' kernels) is amplified by AdamW's first steps (see test_dist_equivalence's docstring); in
float64 the runs agree to ~1e-10 on any CPU.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hybridssl.checkpoint import latest_checkpoint
from hybridssl.config import load_config
from hybridssl.data.splits import build_datasets
from hybridssl.runs import build_model
from hybridssl.tokenizer import TextTokenizer, train_tokenizer
from hybridssl.trainer import Trainer

WORLD = 2
BASE = ["data.train_size=32", "train.batch_size=8", "train.ckpt_every=0", "train.warmup_steps=1", "train.threads=1",
        "loss.queue_size=16", "train.ema_decay=0.9"]
RUNS = {"ddp-then-one": "ddp", "fsdp-then-one": "fsdp", "one-then-ddp": "ddp"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _trainer(run: Path, tokenizer: Path, steps: int, mode: str = "ddp") -> Trainer:
    cfg = load_config("tiny", BASE + [f"train.steps={steps}", f"train.distributed={mode}"])
    train_set, _ = build_datasets(cfg.data, cfg.train.seed)
    tok = TextTokenizer.from_file(tokenizer, cfg.preprocess.text.max_length)
    torch.manual_seed(cfg.train.seed)
    run.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg, run, train_set, tok, build_model(cfg, tok.vocab_size, train_set.modalities))
    ckpt = latest_checkpoint(run)
    if ckpt is not None:
        trainer.load(ckpt)
    return trainer


def _worker(rank: int, port: int, root: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    from hybridssl import dist

    base = Path(root)
    try:
        for name, mode in RUNS.items():
            steps = 4 if name.startswith("one-then") else 2  # fresh 2-rank runs stop at 2, the resume goes to 4
            trainer = _trainer(base / name, base / "tokenizer.json", steps, mode)
            assert trainer.world_size == WORLD
            trainer.fit()
    finally:
        dist.destroy()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist_resume")
    cfg = load_config("tiny", BASE)
    train_set, _ = build_datasets(cfg.data, cfg.train.seed)
    TextTokenizer(train_tokenizer(train_set.captions(), cfg.preprocess.text.vocab_size),
                  cfg.preprocess.text.max_length).save(root / "tokenizer.json")
    # every phase in a fresh process: the pytest process (ONNX Runtime, OpenVINO, thread pools of
    # hundreds of earlier tests) must not host the training
    spawn = torch.multiprocessing.spawn
    spawn(_single_phase, args=(str(root), "before"), nprocs=1)                # 2 steps on one process
    spawn(_worker, args=(_free_port(), str(root)), nprocs=WORLD)
    spawn(_single_phase, args=(str(root), "after"), nprocs=1)                 # resumes + the reference
    return root


def _single_phase(_: int, root: str, phase: str) -> None:
    torch.set_num_threads(1)  # tiny tensors: more threads only contend on a shared CPU
    torch.set_default_dtype(torch.float64)
    root_ = Path(root)
    if phase == "before":
        _trainer(root_ / "one-then-ddp", root_ / "tokenizer.json", 2).fit()
        return
    for name in ("ddp-then-one", "fsdp-then-one"):
        _trainer(root_ / name, root_ / "tokenizer.json", 4).fit()             # resume on one process
    _trainer(root_ / "full", root_ / "tokenizer.json", 4).fit()               # the reference


def _final(run: Path, kind: str) -> dict[str, torch.Tensor]:
    folder = latest_checkpoint(run)
    assert folder is not None and folder.name == "step_000004"
    return load_file(str(folder / f"{kind}.safetensors"))


@pytest.mark.distributed
@pytest.mark.parametrize("name", list(RUNS))
def test_resume_on_another_world_size_matches_uninterrupted(root, name):
    state = json.loads((latest_checkpoint(root / name) / "state.json").read_text())
    assert state["world_size"] == (WORLD if name.startswith("one-then") else 1)
    assert state["samples_seen"] == 4 * 8
    for kind in ("model", "ema"):
        got, want = _final(root / name, kind), _final(root / "full", kind)
        assert got.keys() == want.keys()
        for k in want:
            torch.testing.assert_close(got[k], want[k], atol=1e-10, rtol=1e-9, msg=lambda m, k=k, kind=kind: f"{kind} {k}: {m}")
    lines = [json.loads(x) for x in (root / name / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(x) for x in (root / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    assert [x["loss"] for x in lines] == pytest.approx([x["loss"] for x in ref], rel=1e-9)
    assert [x["world_size"] for x in lines] == ([1, 1, 2, 2] if name.startswith("one-then") else [2, 2, 1, 1])
