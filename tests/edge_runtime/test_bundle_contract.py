"""docs/bundle.md's preprocessing section, followed step by step by a client that knows only the
text (Pillow + numpy, no hssl code), gives the runtime's pixels and embeddings — RGBA included."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
from PIL import Image


def client_pixels(path, prep: dict) -> np.ndarray:
    """The documented image steps, written from docs/bundle.md alone."""
    size, resize = prep["size"], prep["resize"]
    img = Image.open(path)
    img.load()                                                     # 1. whole file
    rgba = np.asarray(img.convert("RGBA"), dtype=np.float64)       # 2. alpha composited on white
    a = rgba[..., 3:4] / 255.0
    rgb = np.rint(rgba[..., :3] * a + (1 - a) * 255).astype(np.uint8)
    h, w = rgb.shape[:2]                                           # 3. shorter side to `resize`
    scale = resize / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    filters = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
    if (nh, nw) != (h, w):
        rgb = np.asarray(Image.fromarray(rgb).resize((nw, nh), filters[prep.get("interpolation", "bilinear")]))
    top, left = (nh - size) // 2, (nw - size) // 2                 # 4. centre crop
    crop = rgb[top : top + size, left : left + size].astype(np.float32) / np.float32(255)
    x = (crop - np.float32(prep["mean"])) / np.float32(prep["std"])  # 5. per channel, float32, CHW
    return x.transpose(2, 0, 1)[None].astype(np.float32)


def test_a_client_following_the_document_matches_the_runtime(edge_bundle, edge_model, tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (50, 70, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(rng.random((50, 70)) < 0.5, 0, rgba[..., 3])   # half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "logo.png")
    manifest = json.loads((edge_bundle / "manifest.json").read_text())
    prep = manifest["preprocessing"]["image"]

    ours = client_pixels(tmp_path / "logo.png", prep)
    theirs = edge_model.preprocess_images([tmp_path / "logo.png"])["pixels"]
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)

    session = ort.InferenceSession(str(edge_bundle / manifest["modalities"]["image"]["files"]["model"]),
                                   providers=["CPUExecutionProvider"])
    emb = session.run(None, {"pixels": ours})[0][0]
    np.testing.assert_allclose(emb, edge_model.embed_image(tmp_path / "logo.png"), rtol=0, atol=1e-5)

    # what the document warns against: convert("RGB") keeps the colour under transparent pixels
    Image.fromarray(np.asarray(Image.open(tmp_path / "logo.png").convert("RGB"))).save(tmp_path / "plain.png")
    assert np.abs(client_pixels(tmp_path / "plain.png", prep) - ours).max() > 1.0
