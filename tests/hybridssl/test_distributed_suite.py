"""Runs ``tests/hybridssl/distributed`` (2 gloo processes: DDP/FSDP equivalence with one process,
resume on another world size) in a fresh pytest process, isolated from the rest of the suite."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.distributed
def test_distributed_suite_in_its_own_process():
    env = {**os.environ, "HSSL_DISTRIBUTED_SUITE": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "distributed")],
                          cwd=HERE.parent.parent, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "9 passed" in proc.stdout, proc.stdout[-2000:]
