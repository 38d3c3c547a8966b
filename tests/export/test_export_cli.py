"""`hssl export` through a typer app holding only this command (cli/main.py registers it for real)."""

from __future__ import annotations

import json
import re

import pytest
import typer
from typer.testing import CliRunner

from cli.export import export, parse_list, steps_table


@pytest.fixture(scope="module")
def app():
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command()(export)
    app.command("noop")(lambda: None)          # two commands: typer keeps "export" as a sub-command
    return app


def test_cli_exports_and_prints_the_table(app, tiny_run, tmp_path, monkeypatch):
    from cli.console import console

    monkeypatch.setattr(console, "width", 160)
    out = tmp_path / "bundle"
    res = CliRunner().invoke(app, ["export", str(tiny_run), "--target", "onnx", "--out", str(out), "--eval-size", "32",
                                   "--modalities", "image,text", "--threads", "1", "--no-progress"],
                             terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "Parity and accuracy per step" in res.output and "optimize" in res.output
    assert re.search(r"optimize\s+│ fp32\s+│ (1\.00000|0\.9999\d)", res.output)
    assert f"written to {out}" in res.output.replace("\n", "")
    assert json.loads((out / "manifest.json").read_text())["target"] == "onnx"


def test_cli_user_errors(app, tiny_run, tmp_path):
    res = CliRunner().invoke(app, ["export", str(tiny_run), "--target", "tensorrt", "--out", str(tmp_path / "t"),
                                   "--precision", "fp16", "--modalities", "image", "--eval-size", "16", "--threads", "1",
                                   "--no-progress"], terminal_width=300)
    assert res.exit_code == 2 and "error:" in res.output
    assert "TensorRT is not installed" in res.output or "no NVIDIA GPU" in res.output
    res = CliRunner().invoke(app, ["export", str(tiny_run), "--keep-float", "stem,stem", "--no-progress"])
    assert isinstance(res.exception, ValueError) and "repeats" in str(res.exception)


def test_real_entry_point_exits_non_zero_with_the_install_hint(tiny_run, tmp_path):
    """Through the installed ``hssl`` script (its exit status is what a shell or CI sees)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("hssl")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]
    proc = subprocess.run([*cmd, "export", str(tiny_run), "--target", "tensorrt", "--out", str(tmp_path / "t"),
                           "--precision", "fp16", "--modalities", "image", "--eval-size", "16", "--threads", "1",
                           "--no-progress"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "300"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "error:" in proc.stdout
    assert "pip install 'hssl[tensorrt]'" in proc.stdout or "no NVIDIA GPU" in proc.stdout


def test_parse_list_and_table():
    assert parse_list("image, text ,", "--modalities") == ("image", "text") and parse_list(None, "x") == ()
    report = {"reference": {"held_out_items": 8}, "settings": {"max_drop": 1.0}, "steps": [
        {"step": "ort-int8", "backend": "onnxruntime", "precision": "int8", "passed": False,
         "cosine": {"image": {"min": 0.98}}, "delta": {"R@1 image->text": -2.0, "zero-shot image": -5.0},
         "files": {"image": {"bytes": 2_000_000}}}]}
    table = steps_table(report)
    cells = [c._cells[0] for c in table.columns]
    assert cells == ["ort-int8", "int8", "0.98000", "-2.0", "-5.0", "2.00 MB", "[red]rejected[/]"]
