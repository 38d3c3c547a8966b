"""`hssl demo --quick`: every stage of the pipeline runs and hands its artifact to the next."""

import json

import pytest

from cli.main import main


@pytest.mark.slow
def test_demo_quick_runs_the_whole_pipeline(tmp_path, capsys):
    root = tmp_path / "demo"
    assert main(["demo", "--quick", "--no-progress", "--out", str(root)]) == 0
    out = capsys.readouterr().out
    for stage in ("1/4", "2/4", "3/4", "4/4", "Teacher vs student", "edge_runtime queries", "hssl demo — summary"):
        assert stage in out, stage
    assert (root / "teacher" / "metrics.json").exists()
    assert json.loads((root / "student" / "metrics.json").read_text())["steps"] == 30
    manifest = json.loads((root / "bundle" / "manifest.json").read_text())
    assert manifest["target"] == "onnxruntime" and manifest["source"]["kind"] == "student"
    assert len(list((root / "gallery").glob("*.png"))) == 24
