"""docs/python_api.md's example runs as written, and the API's own contracts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "python_api.md").read_text(), re.S)
    assert len(blocks) == 1
    return blocks[0]


@pytest.mark.slow
def test_the_documented_example_runs(tmp_path):
    out = subprocess.run([sys.executable, "-c", _example()], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("teacher image->text R@1:") and lines[1].startswith("linear probe at 10 % labels:")
    assert lines[-1] == "(16,)" or lines[-1].startswith("(")
    assert (tmp_path / "runs" / "api-teacher" / "tensorboard").is_dir()
    assert (tmp_path / "bundles" / "api-student" / "manifest.json").is_file()


def test_the_package_roots_stay_light():
    code = "import sys, hybridssl, distill, export; print('torch' in sys.modules); print(callable(hybridssl.train))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)},
                         timeout=120)
    assert out.stdout.split() == ["False", "True"], out.stderr


def test_keyword_overrides():
    from hybridssl.app.api import config_overrides

    assert config_overrides(["train.lr=0.1"], {"train__steps": 3, "model__modalities": ["image", "text"],
                                               "data__streaming": True}) == [
        "train.lr=0.1", "train.steps=3", "model.modalities=image,text", "data.streaming=true"]
    with pytest.raises(TypeError, match="section__key"):
        config_overrides([], {"steps": 3})
    import hybridssl

    with pytest.raises(AttributeError):
        hybridssl.no_such_thing  # noqa: B018
