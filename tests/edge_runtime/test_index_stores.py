"""The gallery's stores and catalog: HNSW (usearch) against the exact reference, auto promotion,
the memory-mapped load, tombstoned keys, version-1 galleries, tampered files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from blocking import ROOT, blocker

import edge_runtime.index.gallery as gallery_mod
from edge_runtime.index import EmbeddingIndex, HnswParams
from edge_runtime.validate import InputError


def _clustered(n, d=32, clusters=20, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _filled(kind, n=2000, d=32, dtype="f32", **kw):
    x = _clustered(n, d)
    idx = EmbeddingIndex(d, kind=kind, dtype=dtype, **kw)
    idx.add([f"i{j}" for j in range(n)], x, [{"j": j} for j in range(n)])
    return idx, x


def _ids(rows):
    return [[h.id for h in r] for r in rows]


@pytest.mark.parametrize("dtype", ["f32", "f16", "i8"])
def test_hnsw_recall_against_exact(dtype):
    idx, x = _filled("hnsw", dtype=dtype)
    ref, _ = _filled("exact")
    q = _clustered(50, seed=1)
    got, want = idx.search_batch(q, 10), ref.search_batch(q, 10)
    recall = np.mean([len({h.id for h in g} & {h.id for h in w}) / 10 for g, w in zip(got, want)])
    assert recall >= {"f32": 0.95, "f16": 0.95, "i8": 0.85}[dtype], (dtype, recall)  # measured 0.99 / 0.99 / 0.95
    err = max(abs(g.score - w.score) for gs, ws in zip(got, want) for g, w in zip(gs, ws) if g.id == w.id)
    assert err < {"f32": 1e-4, "f16": 5e-3, "i8": 5e-2}[dtype]
    assert got[0][0].metadata == {"j": int(got[0][0].id[1:])}
    assert idx.store == "hnsw" and len(idx) == 2000


def test_exact_search_on_an_hnsw_store_is_the_reference():
    idx, _ = _filled("hnsw", n=500)
    ref, _ = _filled("exact", n=500)
    q = _clustered(20, seed=3)
    assert _ids(idx.search_batch(q, 7, exact=True)) == _ids(ref.search_batch(q, 7))


def test_auto_moves_into_a_graph_at_the_threshold(monkeypatch):
    monkeypatch.setattr(gallery_mod, "HNSW_FROM", 300)
    x = _clustered(400)
    idx = EmbeddingIndex(32)
    idx.add([f"i{j}" for j in range(299)], x[:299])
    assert idx.store == "exact"
    before = _ids(idx.search_batch(x[:5], 3))
    idx.add([f"i{j}" for j in range(299, 400)], x[299:])
    assert idx.store == "hnsw" and len(idx) == 400 and idx.ids == [f"i{j}" for j in range(400)]
    after = _ids(idx.search_batch(x[:5], 3))
    assert [r[0] for r in after] == [r[0] for r in before]  # each item is still its own nearest neighbour
    np.testing.assert_allclose(idx.embeddings, x, atol=2e-3)  # f16 storage


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_round_trip_then_edit_the_mapped_gallery(tmp_path, kind):
    idx, x = _filled(kind, n=300)
    idx.remove(["i0", "i5"])
    path = idx.save(tmp_path / "g")
    back = EmbeddingIndex.load(path)
    assert back.store == kind and back.ids == idx.ids and len(back) == 298
    q = _clustered(10, seed=2)
    assert _ids(back.search_batch(q, 5)) == _ids(idx.search_batch(q, 5))
    assert "i0" not in back and back.metadata("i7") == {"j": 7}
    back.add("new", x[0], {"j": -1})                   # the first edit copies the mapped store into memory
    back.remove("i7")
    assert back.search(x[0], 1)[0].id == "new"
    back.save(path)                                    # replaces the folder it was mapped from
    again = EmbeddingIndex.load(path)
    assert len(again) == 298 and "new" in again and "i7" not in again
    assert again.metadata("new") == {"j": -1} and again.search(x[0], 1)[0].id == "new"
    again.save(path)                                   # an unedited HNSW view saves by copying its file
    assert len(EmbeddingIndex.load(path)) == 298


def test_keys_are_never_reused_so_ties_keep_insertion_order():
    idx = EmbeddingIndex(2, kind="exact")
    v = np.array([1.0, 0.0], np.float32)
    idx.add(["a", "b"], np.stack([v, v]))
    idx.remove("a")
    idx.add("a", v)                                    # re-added: now the newest
    assert [h.id for h in idx.search(v, 2)] == ["b", "a"]


def test_ids_with_line_breaks_are_refused():
    with pytest.raises(InputError, match="line breaks"):
        EmbeddingIndex(2).add("a\nb", np.ones(2, np.float32))


def test_version_1_galleries_still_load(tmp_path):
    path = tmp_path / "v1"
    path.mkdir()
    emb = np.eye(3, dtype=np.float32)
    np.savez(path / "embeddings.npz", embeddings=emb, ids=np.array(["a", "b", "c"]))
    (path / "index.json").write_text(json.dumps({"format": "hssl-gallery", "version": 1, "dim": 3, "count": 3,
                                                 "bundle": "f" * 64, "metadata": [{"n": 1}, {}, {}]}))
    idx = EmbeddingIndex.load(path)
    assert idx.ids == ["a", "b", "c"] and idx.bundle == "f" * 64 and idx.metadata("a") == {"n": 1}
    assert idx.search(np.array([0, 1, 0], np.float32), 1)[0].id == "b"
    idx.save(path)                                     # rewritten as version 2
    assert json.loads((path / "index.json").read_text())["version"] == 2 and len(EmbeddingIndex.load(path)) == 3


def test_tampered_galleries_are_refused(tmp_path):
    idx, _ = _filled("hnsw", n=50)
    path = idx.save(tmp_path / "g")
    data = (path / "vectors.usearch").read_bytes()
    (path / "vectors.usearch").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="unreadable HNSW index"):
        EmbeddingIndex.load(path)
    idx.save(path)
    (path / "ids.txt").write_text("\n".join(f"x{j}" for j in range(49)))
    with pytest.raises(InputError, match="disagree"):
        EmbeddingIndex.load(path)
    idx.save(path)
    info = json.loads((path / "index.json").read_text())
    (path / "index.json").write_text(json.dumps({**info, "store": "faiss"}))
    with pytest.raises(InputError, match="unknown store"):
        EmbeddingIndex.load(path)
    (path / "index.json").write_text(json.dumps({k: v for k, v in info.items() if k != "next_key"}))
    with pytest.raises(InputError, match="bad field"):
        EmbeddingIndex.load(path)
    with pytest.raises(InputError, match="kind must be one of"):
        EmbeddingIndex(4, kind="faiss")


def test_exact_galleries_need_no_usearch(tmp_path):
    """A device without usearch keeps exact galleries; asking for a graph says what to install."""
    script = blocker("usearch") + f"""
import numpy as np
from edge_runtime.index import EmbeddingIndex
from edge_runtime.validate import InputError
idx = EmbeddingIndex(3, kind="exact")
idx.add(["a", "b"], np.eye(3, dtype=np.float32)[:2])
EmbeddingIndex.load(idx.save({str(tmp_path / 'g')!r}))
try:
    EmbeddingIndex(3, kind="hnsw")
except InputError as e:
    print(e)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)},
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "an HNSW gallery needs usearch: pip install 'hssl[runtime]'" in out.stdout


def test_hnsw_parameters_are_kept(tmp_path):
    idx, _ = _filled("hnsw", n=100, hnsw=HnswParams(connectivity=8, expansion_add=32, expansion_search=40))
    back = EmbeddingIndex.load(idx.save(tmp_path / "g"))
    assert back.hnsw == HnswParams(8, 32, 40) and back.dtype == "f32"
    assert isinstance(Path(tmp_path / "g" / "vectors.usearch").stat().st_size, int)
