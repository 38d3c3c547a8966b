"""Experiment tracking, read back with each library's own reader: TensorBoard's EventAccumulator,
MLflow's search_runs / client, W&B's protobuf records of its offline run file."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from hybridssl.app.train import train_run
from hybridssl.config import load_config
from hybridssl.tracking import Tracking, check_trackers, flatten_metrics, metric_name, step_values
from hybridssl.trainer import StepLog

ROOT = Path(__file__).resolve().parents[3]
TINY = ["data.train_size=64", "data.val_size=32", "train.eval_size=32", "train.batch_size=8", "train.ckpt_every=2",
        "train.steps=4", "train.threads=1", "train.log_every=2"]


def test_names_and_flattening():
    assert metric_name("retrieval/image->text/R@1") == metric_name("retrieval/image→text/R@1") == \
        "retrieval/image_to_text/R_1"
    flat = flatten_metrics({"heldout": {"retrieval": {"image->text": {"R@1": 12.5, "ok": True}}, "n": 3, "skip": "x"},
                            "nan": float("nan")})
    assert flat == {"heldout/retrieval/image_to_text/R_1": 12.5, "heldout/n": 3.0}
    log = StepLog(7, 1.5, 1e-3, {"contrastive": 1.0}, {"contrastive": 0.5}, {"grad_norm": 2.0, "bad": float("inf")},
                  100.0, 0, 1)
    assert step_values(log) == {"loss": 1.5, "lr": 1e-3, "samples_per_s": 100.0, "skipped_steps": 0.0,
                                "loss/contrastive": 1.0, "weight/contrastive": 0.5, "signal/grad_norm": 2.0}
    with pytest.raises(ValueError, match="unknown tracker"):
        check_trackers(["tensorboard", "comet"])
    assert not Tracking().active  # no trackers: every call is a no-op
    Tracking().step(log)


def wandb_records(run_file: Path) -> list:
    """The protobuf records of a W&B run file (LevelDB log framing: 32 KiB blocks, 7-byte headers)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    records, pos, chunk = [], 7, b""
    while pos + 7 <= len(data):
        room = 32768 - pos % 32768
        if room < 7:                                      # block trailer padding
            pos += room
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):                                # FULL or LAST
            r = pb.Record()
            r.ParseFromString(chunk)
            records.append(r)
            chunk = b""
        elif kind == 0:
            break
    return records


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("tracked") / "run"
    train_run(load_config("tiny", [*TINY, "train.log=tensorboard,mlflow,wandb"]), run)
    return run


def test_tensorboard_holds_steps_config_final_metrics_and_plots(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tracked_run / "tensorboard" / "run"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert [e.step for e in acc.Scalars("loss")] == [2, 4]
    assert {"lr", "samples_per_s", "loss/contrastive/image-text", "signal/grad_norm"} <= set(tags["scalars"])
    assert any(t.startswith("weight/") for t in tags["scalars"])
    r1 = [t for t in tags["scalars"] if t.startswith("heldout/retrieval/") and t.endswith("/R_1")]
    metrics = json.loads((tracked_run / "metrics.json").read_text())
    direction = r1[0].split("/")[2].replace("_to_", "->")
    assert acc.Scalars(r1[0])[0].value == pytest.approx(metrics["heldout"]["retrieval"][direction]["R@1"])
    assert set(tags["images"]) == {"heldout/projection", "heldout/retrieval"}
    assert (tracked_run / "plots" / "projection.png").is_file()


def test_mlflow_run_has_params_history_and_artifacts(tracked_run):
    import mlflow

    uri = f"sqlite:///{tracked_run / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["hssl"])
    assert len(runs) == 1
    row = runs.iloc[0]
    assert row["params.train.steps"] == "4" and row["params.model.modalities"]
    assert row["tags.mlflow.runName"] == "run" and row["tags.kind"] == "train" and row["status"] == "FINISHED"
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert [m.step for m in client.get_metric_history(row["run_id"], "loss")] == [2, 4]
    assert sorted(a.path for a in client.list_artifacts(row["run_id"], "plots")) == [
        "plots/projection.png", "plots/retrieval_examples.png"]
    assert json.loads((tracked_run / "tracking.json").read_text())["mlflow"] == row["run_id"]


def test_wandb_offline_run_file_holds_config_and_history(tracked_run):
    files = list((tracked_run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    records = wandb_records(files[0])
    assert [r.run.run_id for r in records if r.HasField("run")][0] == json.loads(
        (tracked_run / "tracking.json").read_text())["wandb"]
    history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
               for r in records if r.HasField("history")]
    steps = [h for h in history if "loss" in h]
    assert [h["_step"] for h in steps] == [2, 4]
    assert any("heldout/retrieval/image_to_text/R_1" in h for h in history)
    config = {i.key: json.loads(i.value_json) for r in records if r.HasField("run") for i in r.run.config.update}
    config.update({i.key: json.loads(i.value_json) for r in records if r.HasField("config") for i in r.config.update})
    assert config["train.steps"] == 4 and config["model.modalities"]


def test_a_resumed_run_continues_the_same_tracked_runs(tracked_run, tmp_path):
    import mlflow

    ids = json.loads((tracked_run / "tracking.json").read_text())
    cfg = load_config("tiny", [*TINY, "train.steps=6", "train.log=mlflow"])
    train_run(cfg, tracked_run, resume=True)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tracked_run / 'mlflow.db'}")
    assert [m.step for m in client.get_metric_history(ids["mlflow"], "loss")] == [2, 4, 6]
    assert json.loads((tracked_run / "tracking.json").read_text())["mlflow"] == ids["mlflow"]


def test_a_missing_tracker_library_is_one_line(tmp_path):
    blocked = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "mlflow":
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Blocker())
from cli.main import main
sys.exit(main(sys.argv[1:]))
"""
    out = subprocess.run([sys.executable, "-c", blocked, "train", "-c", "tiny", "--steps", "1", "--log", "mlflow",
                          "--out", str(tmp_path / "r"), "--no-progress", "--set", "data.train_size=16",
                          "--set", "data.val_size=8"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 2, out.stderr
    assert "error: --log mlflow needs mlflow, which is not installed: pip install 'hssl[mlflow]'" in " ".join(
        out.stdout.split())
    assert not (tmp_path / "r").exists()  # refused before the run started
    assert "Traceback" not in out.stdout + out.stderr
