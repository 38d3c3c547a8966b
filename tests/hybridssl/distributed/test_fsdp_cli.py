"""``hssl train`` under torchrun with FSDP, through the CLI: the run ends with its held-out report
(the evaluation runs on the model assembled from every rank's shards, not on rank 0's DTensor shards),
that report is the one the saved checkpoint gives, and ``--resume`` continues the run under torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hybridssl.data.splits import build_datasets
from hybridssl.evaluation.heldout import evaluate_heldout
from hybridssl.runs import load_run
from hybridssl.threads import torch_threads

ROOT = Path(__file__).resolve().parents[3]
SETS = ["train.distributed=fsdp", "data.train_size=32", "train.batch_size=8", "train.threads=1",
        "train.warmup_steps=1", "train.ckpt_every=0", "train.eval_size=48"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun_hssl(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "cli.main", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _sets(*extra: str) -> list[str]:
    return [a for kv in (*SETS, *extra) for a in ("--set", kv)]


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("fsdp_cli") / "run"
    proc = _torchrun_hssl("train", "--config", "tiny", "--out", str(run), *_sets("train.steps=3"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def test_fsdp_run_ends_with_the_checkpoints_heldout_report(fsdp_run):
    metrics = json.loads((fsdp_run / "metrics.json").read_text())
    assert metrics["steps"] == 3 and (fsdp_run / "report.md").is_file()
    loaded = load_run(fsdp_run)
    cfg = loaded.cfg
    _, val_set = build_datasets(cfg.data, cfg.train.seed)
    with torch_threads(1):
        again = evaluate_heldout(loaded.model, loaded.tokenizer, val_set, cfg)
    assert set(again["retrieval"]) == set(metrics["heldout"]["retrieval"])
    for direction, got in metrics["heldout"]["retrieval"].items():  # a tie may flip: 1/48 of a rank
        assert abs(got["mean_rank"] - again["retrieval"][direction]["mean_rank"]) < 0.1, direction


def test_fsdp_run_resumes_under_torchrun(fsdp_run):
    proc = _torchrun_hssl("train", "--config", "tiny", "--out", str(fsdp_run), "--resume", *_sets("train.steps=5"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((fsdp_run / "metrics.json").read_text())
    assert metrics["steps"] == 5 and metrics["schedule_change"]["resumed_at_step"] == 3
    steps = [json.loads(line)["step"] for line in (fsdp_run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]
