"""The runtime imports and runs with torch (and the training-side packages) made unimportable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import importlib, json, sys
BLOCKED = {"torch", "torchaudio", "torchvision", "timm", "hybridssl", "distill", "export", "cli"}

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Blocker())
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
