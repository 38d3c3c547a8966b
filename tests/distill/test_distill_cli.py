"""`hssl distill` in-process: progress, the student tables and the teacher-vs-student table; errors."""

import json

import pytest
import typer
from typer.testing import CliRunner

from cli.console import console
from cli.distill import distill

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(distill)
app.command(name="noop")(lambda: None)          # two commands: typer keeps `distill` as a sub-command


def test_distill_command_trains_and_prints_the_comparison(teacher_dir, tmp_path, monkeypatch, tiny_distill):
    monkeypatch.setattr(console, "width", 200)                         # rich tables: no wrapping here
    out = tmp_path / "student"
    args = ["distill", "--teacher", str(teacher_dir), "--student", "mobilevit", "--modalities", "image,text",
            "--image-size", "64", "--out", str(out), "--eval-size", "12", "--no-progress", "--log", "tensorboard"]
    for item in tiny_distill:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Teacher vs student (image: mobilevit_xxs, text: text_tiny)" in result.output
    assert "R@1 image(student)->text(teacher)" in result.output
    assert "image tower parameters" in result.output
    report = json.loads((out / "distill_report.json").read_text())
    assert report["students"] == {"image": "mobilevit_xxs", "text": "text_tiny"}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard" / "student"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss")][-1] == 3                # the student's steps are tracked
    assert any(t.startswith("heldout/retrieval/") for t in acc.Tags()["scalars"])


def test_distill_command_errors(teacher_dir, tmp_path):
    result = CliRunner().invoke(app, ["distill", "--teacher", str(teacher_dir), "--student", "resnet50", "--out",
                                      str(tmp_path / "s"), "--no-progress"])
    assert isinstance(result.exception, ValueError) and "known students" in str(result.exception)
    result = CliRunner().invoke(app, ["distill", "--student", "mobilevit"])
    assert result.exit_code != 0 and "--teacher" in result.output
    with pytest.raises(FileNotFoundError, match="does not exist"):
        distill(teacher=tmp_path / "missing", out=tmp_path / "s", no_progress=True)
