"""Shared fixtures: a tiny teacher run (all three modalities) and a tiny student distilled from it."""

import pytest

from hybridssl.app.train import train_run
from hybridssl.config import load_config

TINY_TEACHER = ["data.train_size=64", "data.val_size=32", "train.eval_size=32", "train.batch_size=8",
                "train.ckpt_every=0", "train.steps=2", "train.threads=1"]
#: run overrides that keep a distillation of the tiny teacher at a few seconds
TINY_DISTILL = ["train.steps=3", "train.batch_size=8", "train.threads=1", "train.warmup_steps=1"]


@pytest.fixture(scope="session")
def tiny_distill():
    """Run overrides that keep a distillation of the tiny teacher at a few seconds."""
    return list(TINY_DISTILL)


@pytest.fixture(scope="session")
def tiny_teacher_overrides():
    return list(TINY_TEACHER)


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("teacher") / "run"
    train_run(load_config("tiny", TINY_TEACHER), run)
    return run


@pytest.fixture(scope="session")
def student_dir(tmp_path_factory, teacher_dir):
    """mobilevit_xxs at 64 px (teacher 32 px, so the live teacher reads its own resolution) + text + audio."""
    from distill.api import distill_run

    out = tmp_path_factory.mktemp("student") / "run"
    distill_run(teacher_dir, out, student="mobilevit", image_size=64, overrides=TINY_DISTILL)
    return out
