"""EmbeddingIndex: cosine top-k against a brute-force reference, deterministic ties, editing,
the save/load round trip (no pickle, atomic), and cross-modal search with a real bundle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_runtime.index import EmbeddingIndex, index_files, scan_media, sync_folder
from edge_runtime.items import AUDIO_SUFFIXES, IMAGE_SUFFIXES
from edge_runtime.validate import InputError


def _random_index(n=50, d=8, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    idx = EmbeddingIndex(d)
    idx.add([f"id{i}" for i in range(n)], x, [{"i": i} for i in range(n)])
    return idx, x


def test_search_matches_brute_force_cosine():
    idx, x = _random_index()
    q = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    hits = idx.search_batch(q, k=5)
    for qi, row in zip(q, hits):
        cos = [(float(qi @ xi / np.linalg.norm(qi) / np.linalg.norm(xi)), f"id{i}") for i, xi in enumerate(x)]
        ref = sorted(cos, key=lambda t: -t[0])[:5]
        assert [h.id for h in row] == [r[1] for r in ref]
        assert [h.score for h in row] == pytest.approx([r[0] for r in ref], abs=1e-5)
        assert row[0].metadata == {"i": int(row[0].id[2:])}
    single = idx.search(q[0], k=100)
    assert len(single) == 50 and single[0].id == hits[0][0].id


def test_ties_are_broken_by_insertion_order_even_at_the_kth_place():
    idx = EmbeddingIndex(2)
    v = np.array([[1.0, 0.0]], np.float32)
    idx.add(["z", "a", "m", "b"], np.concatenate([v, v, v, [[0.0, 1.0]]]))
    assert [h.id for h in idx.search(np.array([1.0, 0.0]), k=2)] == ["z", "a"]
    assert [h.id for h in idx.search(np.array([1.0, 0.0]), k=3)] == ["z", "a", "m"]
    idx.remove("a")
    assert [h.id for h in idx.search(np.array([1.0, 0.0]), k=2)] == ["z", "m"]


def test_editing_and_validation():
    idx, _ = _random_index(5, 4)
    with pytest.raises(InputError, match="duplicate ids"):
        idx.add(["id1"], np.ones(4, np.float32))
    with pytest.raises(InputError, match="duplicate ids"):
        idx.add(["new", "new"], np.ones((2, 4), np.float32))
    with pytest.raises(InputError, match="dimension 3, expected 4"):
        idx.add(["x"], np.ones(3, np.float32))
    with pytest.raises(InputError, match="non-finite"):
        idx.add(["x"], np.array([1, np.nan, 0, 0], np.float32))
    with pytest.raises(InputError, match="2 ids for 1 embeddings"):
        idx.add(["x", "y"], np.ones(4, np.float32))
    with pytest.raises(InputError, match="dtype"):
        idx.add(["x"], np.array(["a", "b", "c", "d"]))
    with pytest.raises(InputError, match="all-zero"):
        idx.add(["x"], np.zeros(4, np.float32))
    with pytest.raises(InputError, match="JSON-serialisable"):
        idx.add(["x"], np.ones(4, np.float32), [{"f": object()}])
    with pytest.raises(InputError, match="unknown ids"):
        idx.remove(["nope"])
    with pytest.raises(InputError, match="k must be a positive integer"):
        idx.search(np.ones(4, np.float32), k=0)
    with pytest.raises(InputError, match="query"):
        idx.search(np.ones(5, np.float32))
    assert len(idx) == 5  # nothing half-added
    idx.add("x", np.ones(4, np.float64), {"tag": "float64 is accepted"})
    assert idx.metadata("x") == {"tag": "float64 is accepted"} and "x" in idx
    assert EmbeddingIndex(4).search(np.ones(4, np.float32)) == []


def test_save_load_round_trip_without_pickle(tmp_path):
    idx, x = _random_index(20, 6)
    idx.bundle = "f" * 64
    path = idx.save(tmp_path / "gallery")
    assert sorted(p.name for p in path.iterdir()) == ["ids.txt", "index.json", "keys.npy", "metadata.jsonl",
                                                     "metadata.offsets.npy", "vectors.npy"]
    assert np.load(path / "vectors.npy", allow_pickle=False).dtype == np.float32
    back = EmbeddingIndex.load(path)
    assert back.ids == idx.ids and back.bundle == idx.bundle and back.dim == 6
    np.testing.assert_array_equal(back.embeddings, idx.embeddings)
    assert back.metadata("id3") == {"i": 3}
    q = x[:2]
    assert [[h.id for h in r] for r in back.search_batch(q, 3)] == [[h.id for h in r] for r in idx.search_batch(q, 3)]
    # saving again replaces the gallery atomically; no temporary folders are left behind
    back.remove("id0")
    back.save(path)
    assert len(EmbeddingIndex.load(path)) == 19
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery"]
    EmbeddingIndex(3).save(tmp_path / "empty")
    assert len(EmbeddingIndex.load(tmp_path / "empty")) == 0


def test_corrupt_galleries_and_foreign_folders(tmp_path):
    idx, _ = _random_index(3, 4)
    path = idx.save(tmp_path / "g")
    info = json.loads((path / "index.json").read_text())
    (path / "index.json").write_text(json.dumps({**info, "count": 4}))
    with pytest.raises(InputError, match="disagree"):
        EmbeddingIndex.load(path)
    (path / "index.json").write_text(json.dumps(info))
    (path / "vectors.npy").write_bytes(b"garbage")
    with pytest.raises(InputError, match="unreadable gallery"):
        EmbeddingIndex.load(path)
    with pytest.raises(InputError, match="not a gallery"):
        EmbeddingIndex.load(tmp_path / "missing")
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("precious")
    with pytest.raises(InputError, match="refusing to replace"):
        idx.save(foreign)
    assert (foreign / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g", "photos"]


def test_cross_modal_search_with_the_bundle(edge_model, media, tmp_path):
    """Index files of both modalities, then query the gallery with a sound, an image and a text."""
    folder = tmp_path / "media"
    folder.mkdir()
    for key in ("rgb_png", "rgba_png", "exif_jpg", "mono_wav", "stereo_flac", "corrupt_png"):
        (folder / media[key].name).write_bytes(media[key].read_bytes())
    paths = scan_media(folder, IMAGE_SUFFIXES | AUDIO_SUFFIXES)
    gallery, skipped = index_files(edge_model, paths, folder, batch_size=2)
    assert list(skipped) == ["corrupt.png"] and "cannot decode" in skipped["corrupt.png"]
    assert len(gallery) == 5 and gallery.bundle == edge_model.fingerprint
    images = EmbeddingIndex(edge_model.embed_dim)
    for pid in gallery.ids:
        if gallery.metadata(pid)["modality"] == "image":
            images.add(pid, gallery.embeddings[gallery.ids.index(pid)], gallery.metadata(pid))
    sound = edge_model.embed_audio(media["mono_wav"])
    hits = images.search(sound, k=2)  # "find the images that match this sound"
    ref = sorted(((float(images.embeddings[i] @ sound), pid) for i, pid in enumerate(images.ids)), reverse=True)[:2]
    assert [h.id for h in hits] == [r[1] for r in ref]
    assert gallery.search(edge_model.embed_image(media["rgb_png"]), k=1)[0].id == "rgb.png"
    assert len(gallery.search(edge_model.embed_text("a red circle"), k=3)) == 3
    again, _ = index_files(edge_model, paths, folder, index=gallery)  # already indexed files are kept
    assert len(again) == 5


def test_sync_keeps_a_changed_file_that_is_now_refused_and_checks_the_bundle(edge_model, media, tmp_path):
    folder = tmp_path / "media"
    folder.mkdir()
    (folder / "a.png").write_bytes(media["rgb_png"].read_bytes())
    gallery, _ = index_files(edge_model, scan_media(folder, IMAGE_SUFFIXES), folder)
    old = gallery.embeddings[0].copy()
    (folder / "a.png").write_bytes(media["corrupt_png"].read_bytes())   # overwritten by a broken copy
    report = sync_folder(edge_model, folder, gallery, scan_media(folder, IMAGE_SUFFIXES))
    assert list(report.skipped) == ["a.png"] and not report.changed
    np.testing.assert_array_equal(gallery.embeddings[0], old)            # the last good embedding is kept
    unchanged = sync_folder(edge_model, folder, gallery, [])
    assert unchanged.removed == ["a.png"] and len(gallery) == 0
    gallery.bundle = "0" * 64
    with pytest.raises(InputError, match="built with another bundle"):
        sync_folder(edge_model, folder, gallery, [])
