"""A tiny trained run (2 steps), built once per test module that asks for it."""

import pytest

from hybridssl.app.train import train_run
from hybridssl.config import load_config

TINY = ["data.train_size=64", "data.val_size=32", "train.eval_size=32", "train.batch_size=8", "train.ckpt_every=0",
        "train.steps=2", "train.threads=1"]


@pytest.fixture(scope="module")
def tiny_run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "run"
    train_run(load_config("tiny", TINY), run)
    return run
