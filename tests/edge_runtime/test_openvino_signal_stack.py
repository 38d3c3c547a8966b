"""OpenVINO swaps the thread's alternate signal stack per Core and "restores" a freed one when Cores
die in creation order; the next Python signal handler then dies with SIGSEGV (exit 139). hssl keeps
one Core per process (``edge_runtime.openvino_core``) and guards NNCF's own Cores. Each case runs in
a fresh interpreter: a crash must not take the test process with it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("openvino")
ROOT = Path(__file__).resolve().parents[2]

MODEL = """
import numpy as np, openvino as ov
from openvino import opset13 as ops

def save_model(path):
    x = ops.parameter([-1, 8], np.float32, name="x")
    w = ops.constant(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32))
    ov.save_model(ov.Model([ops.matmul(x, w, False, False)], [x]), path)
    return path
"""

# After the OpenVINO work: a Python SIGCHLD handler fired by a child's exit (what DataLoader workers
# install), then Ctrl-C, which must arrive as KeyboardInterrupt.
SIGNALS = """
import gc, signal, subprocess
gc.collect()
fired = []
signal.signal(signal.SIGCHLD, lambda *_: fired.append(1))
subprocess.run(["true"], check=True)
try:
    signal.raise_signal(signal.SIGINT)
except KeyboardInterrupt:
    print("interrupt-ok", len(fired) > 0)
"""


def _run(body: str, tmp_path: Path) -> subprocess.CompletedProcess:
    script = textwrap.dedent(MODEL) + textwrap.dedent(body) + textwrap.dedent(SIGNALS)
    return subprocess.run([sys.executable, "-c", script, str(tmp_path / "m.xml")], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_backends_released_in_creation_order_leave_signals_working(tmp_path):
    proc = _run("""
    import sys
    from edge_runtime.backends import OpenVINOBackend
    path = save_model(sys.argv[1])
    towers = [OpenVINOBackend(__import__("pathlib").Path(path), threads=1) for _ in range(3)]
    assert towers[0].run({"x": np.ones((2, 8), np.float32)}).shape == (2, 4)
    del towers[0]; del towers[0]; del towers[0]   # released in creation order, as an app would
    """, tmp_path)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert "interrupt-ok True" in proc.stdout


def test_cores_made_and_dropped_inside_the_guard_leave_signals_working(tmp_path):
    """What NNCF does inside ``quantize_ir``: Cores of its own, created and freed in creation order."""
    proc = _run("""
    import sys
    from edge_runtime.openvino_core import preserve_signal_stack, signal_stack
    path = save_model(sys.argv[1])
    with preserve_signal_stack():
        before = signal_stack()
        a = ov.Core(); ca = a.compile_model(path, "CPU")
        b = ov.Core(); cb = b.compile_model(path, "CPU")
        del ca, a
        del cb, b
    assert signal_stack() == before, (signal_stack(), before)
    """, tmp_path)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert "interrupt-ok True" in proc.stdout
