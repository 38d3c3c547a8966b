"""`hssl eval` in-process on a tiny run: the tables, the files, and one-line errors for bad input."""

import json

import pytest
import torch
from PIL import Image

from cli.evaluate import parse_fractions
from cli.main import main
from hybridssl.app.train import train_run
from hybridssl.config import load_config

TINY = ["data.train_size=64", "data.val_size=32", "train.eval_size=32", "train.batch_size=8", "train.ckpt_every=0",
        "train.steps=2", "train.threads=1"]
FAST = ["--pool-size", "80", "--test-size", "40", "--seeds", "2", "--finetune-steps", "3", "--threads", "1",
        "--no-progress"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    before = torch.get_num_threads()
    run = tmp_path_factory.mktemp("cli_eval") / "run"
    train_run(load_config("tiny", TINY), run)
    torch.set_num_threads(before)
    return run


def test_eval_prints_tables_and_writes_files(run_dir, tmp_path, capsys):
    out = tmp_path / "ev"
    code = main(["eval", str(run_dir), *FAST, "--fractions", "0.05,1", "--prompts", "a {},a photo of a {}",
                 "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    for title in ("cross-modal retrieval", "zero-shot", "Low-label protocols", "Attribute probes", "Embedding quality"):
        assert title in text, title
    assert "linear_probe" in text and "finetune" in text and "100%" in text and "5%" in text
    result = json.loads((out / "eval.json").read_text())
    assert result["prompts"] == {"source": "templates", "templates": ["a {}", "a photo of a {}"]}
    assert list(result["low_label"]["protocols"]["knn"]) == ["0.05", "1"]
    assert result["low_label"]["seeds"] == [0, 1]
    for name in ("eval.json", "splits.json", "fractions.png", "projection.png", "retrieval_examples.png"):
        assert (out / name).is_file() and str(out / name) in text.replace("\n", ""), name
    with Image.open(out / "fractions.png") as im:
        assert im.format == "PNG"


def test_no_finetune(run_dir, tmp_path, capsys):
    assert main(["eval", str(run_dir), *FAST, "--fractions", "1", "--no-finetune", "--out", str(tmp_path / "e")]) == 0
    result = json.loads((tmp_path / "e" / "eval.json").read_text())
    assert set(result["low_label"]["protocols"]) == {"linear_probe", "knn"}
    assert "finetune" not in capsys.readouterr().out.split("Low-label")[1].split("Attribute")[0]


def test_parse_fractions():
    assert parse_fractions("0.01, 0.05,0.1,1.0") == (0.01, 0.05, 0.1, 1.0)
    assert parse_fractions("1,0.5,0.5") == (0.5, 1.0)


@pytest.mark.parametrize("args, message", [
    (["--fractions", "0,0.5"], "(0, 1]"),
    (["--fractions", "0.5,1.5"], "(0, 1]"),
    (["--fractions", "half"], "not a number"),
    (["--fractions", ","], "at least one"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--prompts", "a photo"], "placeholder"),
    (["--modality", "video"], "not available"),
    (["--probe-input", "logits"], "probe_input"),
])
def test_bad_options_are_one_line_errors(run_dir, tmp_path, capsys, args, message):
    assert main(["eval", str(run_dir), *FAST, *args, "--out", str(tmp_path / "bad")]) == 2
    out = capsys.readouterr().out
    assert "error:" in out and message in " ".join(out.split())


def test_run_dir_without_checkpoints(tmp_path, capsys):
    (tmp_path / "norun").mkdir()
    assert main(["eval", str(tmp_path / "norun")]) == 2
    out = " ".join(capsys.readouterr().out.split())
    assert "holds no checkpoint" in out and "Traceback" not in out
