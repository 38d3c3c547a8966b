"""A tiny end-to-end run, exact resume (N + resume N == 2N), and the non-finite-loss guard."""

import json

import pytest
import torch
from safetensors.torch import load_file

from hybridssl.app.train import train_run
from hybridssl.config import load_config
from hybridssl.runs import load_run
from hybridssl.trainer import NonFiniteLossError

TINY = ["data.train_size=64", "data.val_size=32", "train.eval_size=32", "train.batch_size=8", "train.ckpt_every=0"]


def _weights(run_dir):
    last = sorted((run_dir / "checkpoints").glob("step_*"))[-1]
    return load_file(str(last / "model.safetensors")), last.name


@pytest.mark.slow
def test_tiny_run_writes_everything(tmp_path):
    cfg = load_config("tiny", TINY + ["train.steps=4", "train.ckpt_every=2"])
    metrics = train_run(cfg, tmp_path / "run")
    run = tmp_path / "run"
    for f in ("config.yaml", "tokenizer.json", "metrics.jsonl", "metrics.json", "report.md"):
        assert (run / f).is_file(), f
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_000002", "step_000004"]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    assert set(lines[0]["weights"]) == set(lines[0]["parts"]) and "contrastive/image-text" in lines[0]["parts"]
    assert {"image->text", "text->image", "audio->image", "image->audio"} <= set(metrics["heldout"]["retrieval"])
    assert "image" in metrics["heldout"]["zero_shot"]
    loaded = load_run(run)
    assert loaded.model.embed("image", torch.zeros(1, 3, 32, 32)).shape == (1, cfg.model.embed_dim)
    with pytest.raises(FileExistsError):
        train_run(cfg, run)


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["weighting.strategy=dwa", "weighting.options={period: 1}", "train.ema_decay=0.9"],
                                   ["train.accum_steps=2", "weighting.strategy=gradnorm", "model.generative=vae"],
                                   ["data.batches=neighbours", "data.neighbour_group=4", "data.neighbour_refresh=2",
                                    "data.neighbour_pool=32"]])
def test_resume_is_exact(tmp_path, extra):
    full = load_config("tiny", TINY + ["train.steps=6"] + extra)
    train_run(full, tmp_path / "full")
    half = load_config("tiny", TINY + ["train.steps=3"] + extra)
    train_run(half, tmp_path / "split")
    train_run(load_config("tiny", TINY + ["train.steps=6"] + extra), tmp_path / "split", resume=True)
    (a, name_a), (b, name_b) = _weights(tmp_path / "full"), _weights(tmp_path / "split")
    assert name_a == name_b == "step_000006"
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), k
    la = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    lb = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["loss"] for x in la] == pytest.approx([json.loads(x)["loss"] for x in lb], rel=1e-5)


def test_resume_without_checkpoint_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_run(load_config("tiny", TINY), tmp_path / "empty", resume=True)


@pytest.mark.slow
def test_non_finite_losses_are_skipped_then_abort(tmp_path, monkeypatch):
    from hybridssl import task as task_mod

    real = task_mod.HybridTask.forward
    calls = {"n": 0}

    def poisoned(self, batch, step, generator=None):
        out = real(self, batch, step, generator)
        calls["n"] += 1
        if calls["n"] in (2, 3):
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(task_mod.HybridTask, "forward", poisoned)
    metrics = train_run(load_config("tiny", TINY + ["train.steps=5"]), tmp_path / "nan")
    assert metrics["skipped_steps"] == 2
    lines = [json.loads(x) for x in (tmp_path / "nan" / "metrics.jsonl").read_text().splitlines()]
    assert [x["skipped_steps"] for x in lines] == [0, 1, 2, 2, 2]

    calls["n"] = 0
    monkeypatch.setattr(task_mod.HybridTask, "forward",
                        lambda self, b, s, g=None: (lambda o: (setattr(o, "loss", o.loss * float("inf")), o)[1])(real(self, b, s, g)))
    with pytest.raises(NonFiniteLossError, match="max_bad_steps"):
        train_run(load_config("tiny", TINY + ["train.steps=5", "train.max_bad_steps=2"]), tmp_path / "inf")


def test_thread_setting_is_scoped_to_the_run(tmp_path):
    before = torch.get_num_threads()
    train_run(load_config("tiny", TINY + ["train.steps=1", f"train.threads={max(1, before - 1) if before > 1 else 2}"]),
              tmp_path / "threads")
    assert torch.get_num_threads() == before


def _lines(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_resume_with_more_steps_continues_the_longer_plan(tmp_path):
    """train 3, resume to 6 = from step 3 on, the 6-step plan's learning rates (a 2-step warm-up and a
    cosine over 6 steps, so step 3's lr differs between the plans); the log has each step once."""
    over = TINY + ["train.warmup_steps=1", "train.threads=1"]
    train_run(load_config("tiny", over + ["train.steps=6"]), tmp_path / "planned")
    train_run(load_config("tiny", over + ["train.steps=3"]), tmp_path / "extended")
    metrics = train_run(load_config("tiny", over + ["train.steps=6"]), tmp_path / "extended", resume=True)
    planned, extended = _lines(tmp_path / "planned"), _lines(tmp_path / "extended")
    assert [x["step"] for x in extended] == [1, 2, 3, 4, 5, 6]
    assert [x["lr"] for x in extended[3:]] == pytest.approx([x["lr"] for x in planned[3:]], rel=1e-12)
    assert extended[2]["lr"] != pytest.approx(planned[2]["lr"])  # the old plan's steps keep their values
    assert metrics["schedule_change"] == {"resumed_at_step": 3, "planned_steps": 3, "steps": 6}
    with pytest.raises(ValueError, match="beyond --steps 2"):
        train_run(load_config("tiny", over + ["train.steps=2"]), tmp_path / "extended", resume=True)


@pytest.mark.slow
def test_resume_after_a_kill_does_not_repeat_logged_steps(tmp_path):
    """Killed after logging steps 3–4 but before their checkpoint: the resume logs them once."""
    run = tmp_path / "run"
    cfg = load_config("tiny", TINY + ["train.steps=4", "train.ckpt_every=2", "train.threads=1"])
    train_run(cfg, run)
    import shutil

    shutil.rmtree(run / "checkpoints" / "step_000004")
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "loss": 1.')  # a line cut by the kill
    metrics = train_run(cfg, run, resume=True)
    assert [x["step"] for x in _lines(run)] == [1, 2, 3, 4]
    assert "schedule_change" not in metrics


# ----------------------------------------------------------------------------- faults around a run
def test_a_kill_during_the_first_checkpoint_write_is_not_a_dead_end(tmp_path):
    """What a kill -9 inside save_checkpoint leaves before the first checkpoint exists: config, log
    lines and a half-written ``.tmp-`` folder. --resume says what to do; a plain rerun starts over."""
    run = tmp_path / "run"
    cfg = load_config("tiny", TINY + ["train.steps=2", "train.threads=1"])
    (run / "checkpoints" / ".tmp-step_000002").mkdir(parents=True)
    (run / "checkpoints" / ".tmp-step_000002" / "model.safetensors").write_bytes(b"\x00" * 10)
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 5.0}\n{"step": 2, "lo')
    from hybridssl.config import save_config

    save_config(cfg, run / "config.yaml")
    with pytest.raises(FileNotFoundError, match="without --resume to start it over"):
        train_run(cfg, run, resume=True)
    train_run(cfg, run)
    assert [x["step"] for x in _lines(run)] == [1, 2]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_000002"]


def test_resume_refuses_a_changed_config_but_may_go_further(tmp_path):
    run = tmp_path / "run"
    train_run(load_config("tiny", TINY + ["train.steps=2", "train.threads=1"]), run)
    with pytest.raises(ValueError, match=r"model\.width: run 32, given 48"):
        train_run(load_config("tiny", TINY + ["train.steps=3", "model.width=48"]), run, resume=True)
    with pytest.raises(ValueError, match=r"data\.train: run 'builtin', given 'builtin:size=10'"):
        train_run(load_config("tiny", TINY + ["train.steps=3", "data.train=builtin:size=10"]), run, resume=True)
    metrics = train_run(load_config("tiny", TINY + ["train.steps=3", "train.threads=2"]), run, resume=True)
    assert metrics["steps"] == 3


def _unreadable_manifest(folder):
    folder.mkdir()
    rows = []
    for k in range(6):
        (folder / f"{k}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # a PNG signature, no image
        rows.append(json.dumps({"image": f"{k}.png", "caption": f"a picture {k}"}))
    (folder / "m.jsonl").write_text("\n".join(rows) + "\n")
    return folder / "m.jsonl"


def test_a_run_on_nothing_but_unreadable_files_stops_before_training(tmp_path):
    manifest = _unreadable_manifest(tmp_path / "data")
    cfg = load_config("tiny", TINY + ["train.steps=4", f"data.train=manifest:{manifest}"])
    with pytest.raises(ValueError, match="none of 5 training items tried could be read"):
        train_run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_manifest_whose_every_row_is_dropped_stops_before_training(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"caption": 3}\nnot json\n{"image": "/etc/passwd"}\n')
    cfg = load_config("tiny", TINY + ["train.steps=4", f"data.train=manifest:{tmp_path / 'm.jsonl'}"])
    with pytest.raises(ValueError, match="usable item|at least 2"):
        train_run(cfg, tmp_path / "run")


KILLED_IN_FIRST_CHECKPOINT = r"""
import os, signal, sys
import hybridssl.checkpoint as ck
from hybridssl.config import load_config
from hybridssl.app.train import train_run

real = ck.save_file
def save_then_die(tensors, path, *a, **k):
    real(tensors, path, *a, **k)
    if ".tmp-step_000002" in str(path):
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 halfway through writing the first checkpoint
ck.save_file = save_then_die
train_run(load_config("tiny", sys.argv[2:]), sys.argv[1])
"""


@pytest.mark.slow
def test_a_real_kill_9_in_the_first_checkpoint_write(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    run = tmp_path / "run"
    over = TINY + ["train.steps=4", "train.ckpt_every=2", "train.threads=1"]
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run([sys.executable, "-c", KILLED_IN_FIRST_CHECKPOINT, str(run), *over], cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (run / "checkpoints" / ".tmp-step_000002").is_dir() and not list((run / "checkpoints").glob("step_*"))
    with pytest.raises(FileNotFoundError, match="without --resume to start it over"):
        train_run(load_config("tiny", over), run, resume=True)
    metrics = train_run(load_config("tiny", over), run)  # the plain rerun is not "already holds a run"
    assert metrics["steps"] == 4 and [x["step"] for x in _lines(run)] == [1, 2, 3, 4]
