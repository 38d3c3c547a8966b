"""The `hssl` commands, in-process through ``cli.main.main``, on tiny runs."""

import json

import pytest

from cli.main import main

TINY = ["--config", "tiny", "--set", "data.train_size=48", "--set", "data.val_size=24", "--set", "train.eval_size=24",
        "--set", "train.batch_size=8", "--no-progress"]


@pytest.mark.slow
def test_train_info_and_resume(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "2", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "Held-out cross-modal retrieval" in out and "image->text" in out
    assert main(["train", *TINY, "--steps", "3", "--out", str(run), "--resume"]) == 0
    assert json.loads((run / "metrics.json").read_text())["steps"] == 3
    capsys.readouterr()
    assert main(["info", str(run)]) == 0
    out = capsys.readouterr().out
    assert "3 / 3" in out and "step_000003" in out


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "--config", "nope"]) == 2
    assert "unknown preset" in capsys.readouterr().out
    assert main(["train", *TINY, "--set", "train.stepz=1", "--out", str(tmp_path / "x")]) == 2
    assert "train.stepz" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "missing")]) == 2
    assert "not a run directory" in capsys.readouterr().out
    assert main(["train", *TINY, "--data", f"manifest:{tmp_path / 'none.jsonl'}", "--out", str(tmp_path / "y")]) == 2
    assert "none.jsonl" in capsys.readouterr().out


@pytest.mark.slow
def test_train_on_a_user_manifest(tmp_path, capsys):
    import numpy as np
    import soundfile as sf
    from PIL import Image

    rows = []
    rng = np.random.default_rng(0)
    for i in range(24):
        colour = ["red", "blue"][i % 2]
        img = np.zeros((40, 40, 3), np.uint8)
        img[..., 0 if colour == "red" else 2] = 200
        Image.fromarray(img).save(tmp_path / f"{i}.png")
        sf.write(tmp_path / f"{i}.wav", (rng.standard_normal((8000, 2)) * 0.1).astype("float32"), 8000)
        rows.append({"image": f"{i}.png", "caption": f"a {colour} picture number {i}", "audio": f"{i}.wav", "label": colour})
    rows.append({"image": "missing.png", "caption": "lost"})
    (tmp_path / "broken.png").write_bytes(b"not a png")
    rows.append({"image": "broken.png", "caption": "broken"})
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    run = tmp_path / "run"
    code = main(["train", *TINY, "--data", f"manifest:{tmp_path / 'm.jsonl'}", "--steps", "3", "--out", str(run)])
    assert code == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert (run / "splits.json").is_file()
    report = metrics["data_report"]
    assert report["repaired"].get("resampled", 0) > 0 and report["repaired"].get("mono_mixed", 0) > 0
    assert report["total_skipped"] >= 1


def test_help_lists_every_dataset_spec(capsys, monkeypatch):
    from hybridssl.data.open import open_dataset
    from hybridssl.data.specs import FORMS, prefix

    monkeypatch.setenv("COLUMNS", "400")
    for command in ("train", "ablate", "distill"):
        assert main([command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        missing = [f for f in FORMS if prefix(f) not in text]
        assert not missing, f"hssl {command} --help omits {missing}"
    for form in FORMS:  # every listed form is one open_dataset knows (a missing path, not an unknown prefix)
        try:
            open_dataset(f"{prefix(form)}:/no/such/place" if ":" in form else "builtin:size=4")
        except (ValueError, FileNotFoundError, OSError) as e:
            assert "unknown dataset spec prefix" not in str(e), form
    with pytest.raises(ValueError, match="unknown dataset spec prefix"):
        open_dataset("nope:x")


@pytest.mark.slow
def test_resume_takes_the_runs_own_config_and_refuses_changes(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--set", "model.width=32", "--steps", "2", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--steps", "3", "--no-progress"]) == 0  # no --config
    assert json.loads((run / "metrics.json").read_text())["steps"] == 3
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--steps", "4", "--set", "train.lr=0.01", "--no-progress"]) == 2
    assert "train.lr: run 0.001, given 0.01" in " ".join(capsys.readouterr().out.split())


def test_hostile_config_files_exit_2_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: !!python/object/apply:os.system ['echo pwned']\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    out = capsys.readouterr().out
    assert "not a valid config file" in out and "pwned" not in out.split("bad.yaml")[0]
    loop = tmp_path / "loop.yaml"
    loop.write_text("base: loop.yaml\n")
    assert main(["train", "--config", str(loop), "--out", str(tmp_path / "r")]) == 2
    assert "circular" in capsys.readouterr().out
    assert main(["train", *TINY, "--set", "train.batch_size=0", "--out", str(tmp_path / "r")]) == 2
    assert "train.batch_size must be >= 1" in capsys.readouterr().out


def test_usage_errors_are_one_line_not_a_traceback(capsys):
    assert main(["ablate", "--no-such-option"]) == 2
    captured = capsys.readouterr()
    assert "No such option" in captured.err + captured.out and "Traceback" not in captured.err + captured.out
    assert main(["train", "--steps", "many"]) == 2
