"""The teacher-embedding cache: same embeddings as the live teacher, hits, refusals and rebuilds."""

import json

import numpy as np
import pytest
import torch

from distill.cache import TeacherCache, build_cache, fingerprint, load_cache, load_or_build
from distill.task import CachedTeacher, DistillCollator, LiveTeacher, TaggedDataset
from hybridssl.data.batching import SafeDataset
from hybridssl.data.open import open_dataset
from hybridssl.runs import checkpoint_folder, load_run


@pytest.fixture(scope="module")
def built(teacher_dir):
    teacher = load_run(teacher_dir)
    data = open_dataset("builtin", size=16, split="train", seed=0, image_size=32)
    cache = build_cache(teacher.model, data, teacher.spec, teacher.tokenizer, chunk=6)
    fp = fingerprint(checkpoint_folder(teacher_dir), {"train": "builtin", "train_size": 16}, 0, len(data),
                     teacher.spec.to_dict(), teacher.model.modalities)
    return teacher, data, cache, fp


def test_cached_embeddings_equal_the_live_teacher(built):
    teacher, data, cache, _ = built
    tagged = TaggedDataset(data)
    order = [5, 3, 11, 0, 15, 8]
    batch = DistillCollator(teacher.spec, teacher.tokenizer, teacher.model.modalities)([SafeDataset(tagged)[i] for i in order])
    live, cached = LiveTeacher(teacher.model, teacher.model.modalities)(batch), CachedTeacher(cache)(batch)
    assert set(live) == set(cached) == {"image", "text", "audio"}
    for m in live:
        assert torch.equal(live[m].idx, cached[m].idx)
        assert torch.allclose(live[m].emb, cached[m].emb, atol=1e-5)


def test_load_or_build_hits_refuses_and_rebuilds(built, tmp_path):
    _, _, cache, fp = built
    calls = []

    def build():
        calls.append(1)
        return cache

    folder = tmp_path / "cache"
    _, hit = load_or_build(folder, fp, build)
    assert not hit and len(calls) == 1
    assert json.loads((folder / "fingerprint.json").read_text()) == fp
    again, hit = load_or_build(folder, fp, build)
    assert hit and len(calls) == 1
    for m in cache.modalities:
        assert torch.equal(again.embeddings[m], cache.embeddings[m])
    other = {**fp, "preprocess": {**fp["preprocess"], "image": {**fp["preprocess"]["image"], "size": 48}}}
    with pytest.raises(ValueError, match=r"another distillation \(preprocess differ\).*--rebuild-cache"):
        load_or_build(folder, other, build)
    _, hit = load_or_build(folder, other, build, rebuild=True)
    assert not hit and len(calls) == 2
    assert load_or_build(folder, other, build)[1]


def test_fingerprint_follows_the_teacher_weights(built, tmp_path):
    _, _, _, fp = built
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"other weights")
    assert fingerprint(folder, fp["data"], 0, fp["n_items"], fp["preprocess"], fp["modalities"]) != fp


def test_corrupt_cache_and_foreign_positions(built, tmp_path):
    _, _, cache, fp = built
    folder = tmp_path / "cache"
    load_or_build(folder, fp, lambda: cache)
    (folder / "embeddings.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt"):
        load_cache(folder)
    with pytest.raises(ValueError, match="outside the cache"):
        cache.lookup("image", np.array([0, 99]))
    with pytest.raises(ValueError, match="outside the 4 training items"):
        TeacherCache({"image": torch.zeros(1, 2)}, {"image": torch.tensor([7])}, 4)
