"""The runtime imports and runs with torch (and the training-side packages) made unimportable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from blocking import ROOT, blocker

SCRIPT = blocker("torch", "torchaudio", "torchvision", "timm", "hybridssl", "distill", "export", "cli") + r"""
import importlib, json
try:
    import torch  # noqa: F401
    raise SystemExit("torch is still importable")
except ImportError:
    pass
for mod in ("bundle", "validate", "preprocess", "backends", "model", "index", "bench", "serve"):
    importlib.import_module(f"edge_runtime.{mod}")
import numpy as np
from edge_runtime.index import EmbeddingIndex
from edge_runtime.model import EdgeModel

bundle, image, audio = sys.argv[1:4]
model = EdgeModel.load(bundle, threads=1)
gallery = EmbeddingIndex(model.embed_dim, model.fingerprint)
gallery.add(["image"], model.embed_image(image))
gallery.add(["noise"], model.embed_image(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)))
hits = gallery.search(model.embed_audio(audio), k=2)
out = {
    "text": model.embed_text("a red circle").shape[0],
    "hits": [h.id for h in hits],
    "classify": model.classify(image, labels=["circle", "square"])[0][0],
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED),
}
print(json.dumps(out))
"""


def test_runtime_works_without_torch(edge_bundle, media):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(edge_bundle), str(media["rgb_png"]), str(media["mono_wav"])],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["text"] == 16 and sorted(out["hits"]) == ["image", "noise"]
    assert out["classify"] in ("circle", "square") and out["loaded"] == []


# The `hssl` entry point on a runtime-only install: every package of the train / export extras is
# made unimportable (hybridssl & co. stay: they are files of the same distribution, without torch).
CLI_BLOCKER = blocker("torch", "torchaudio", "torchvision", "timm", "safetensors", "yaml", "matplotlib", "onnx",
                      "onnxscript", "nncf", "openvino", "sklearn")

CLI_SCRIPT = CLI_BLOCKER + r"""
import json
from cli.main import main

bundle, image, audio, folder, work = sys.argv[1:6]
codes = {
    "help": main(["--help"]),
    "embed": main(["embed", bundle, image, audio, "--text", "a red circle", "--out", f"{work}/emb.npy"]),
    "classify": main(["classify", bundle, image, "--labels", "circle,square"]),
    "index": main(["index", bundle, folder, "--out", f"{work}/gallery", "--no-progress"]),
    "search": main(["search", bundle, f"{work}/gallery", "--text", "a red circle", "--json", f"{work}/hits.json"]),
    "bench": main(["bench", bundle, "--batch", "1", "--rounds", "2", "--threads", "1", "--out", f"{work}/bench.json"]),
    "train": main(["train", "--steps", "1"]),
}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps({"codes": codes, "loaded": loaded}))
"""

SERVE_SCRIPT = CLI_BLOCKER + r"""
from cli.main import main
sys.exit(main(["serve", sys.argv[1], "--port", "0", "--threads", "1"]))
"""


def _blocked(script: str, *args: str, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_cli_edge_commands_run_without_torch(edge_bundle, media, tmp_path):
    folder = tmp_path / "media"
    folder.mkdir()
    for key in ("rgb_png", "mono_wav"):
        (folder / media[key].name).write_bytes(media[key].read_bytes())
    proc = _blocked(CLI_SCRIPT, str(edge_bundle), str(media["rgb_png"]), str(media["mono_wav"]), str(folder), str(tmp_path))
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    out = json.loads(stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    train = out["codes"].pop("train")
    assert out["codes"] == dict.fromkeys(("help", "embed", "classify", "index", "search", "bench"), 0)
    assert train == 2 and "pip install 'hssl[train]'" in stdout  # a clear line, the extra not eaten by rich
    assert json.loads((tmp_path / "hits.json").read_text())["hits"]
    assert json.loads((tmp_path / "bench.json").read_text())["rows"]


def test_cli_serve_runs_without_torch_and_stops_on_ctrl_c(edge_bundle):
    import re
    import signal
    import urllib.request

    proc = _blocked(SERVE_SCRIPT, str(edge_bundle))
    try:
        line = ""
        while "serving" not in line:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()[-3000:]
        port = re.search(r"http://127\.0\.0\.1:(\d+)", line).group(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30) as r:
            assert json.loads(r.read())["embed_dim"] == 16
        status = Path(f"/proc/{proc.pid}/status")
        if status.exists():  # Linux: the server holds the runtime only (libtorch alone maps ~700 MB)
            rss_kb = int(next(x for x in status.read_text().splitlines() if x.startswith("VmRSS")).split()[1])
            assert rss_kb < 300_000, rss_kb
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
