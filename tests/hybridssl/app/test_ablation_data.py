"""The ablation on other data than the built-in scenes: a pair-less dataset gets the intra-modal
contrastive objective (NT-Xent on two masked views), a paired one keeps cross-modal InfoNCE."""

import json

import numpy as np
from PIL import Image

from hybridssl.app.ablation import dataset_overrides


def _manifest(tmp_path, with_caption: bool):
    rows = []
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
        rows.append({"image": f"{i}.png", "label": str(i % 2), **({"caption": f"item {i}"} if with_caption else {})})
    path = tmp_path / ("paired.jsonl" if with_caption else "images.jsonl")
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return f"manifest:{path}"


def test_single_modality_data_gets_ntxent(tmp_path):
    spec = _manifest(tmp_path, with_caption=False)
    assert dataset_overrides(spec) == [f"data.train={spec}", "data.val_fraction=0.5", "loss.ntxent_weight=1"]


def test_paired_data_keeps_cross_modal_contrast(tmp_path):
    spec = _manifest(tmp_path, with_caption=True)
    assert dataset_overrides(spec) == [f"data.train={spec}", "data.val_fraction=0.5"]  # half held out of pretraining
    assert dataset_overrides("builtin:noise=0.1") == ["data.train=builtin:noise=0.1"]
    # plain "builtin" is the preset's own built-in spec (the small preset's paraphrases stay on)
    assert dataset_overrides("builtin", "builtin:paraphrases=7") == ["data.train=builtin:paraphrases=7"]
    assert dataset_overrides("builtin", spec) == ["data.train=builtin"]
