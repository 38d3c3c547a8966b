"""The edge commands in-process on the tiny bundle (embed, classify, index, search, bench), their
one-line errors, and the small HTTP API (bounded request sizes)."""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import typer

from cli import edge
from cli.console import console
from edge_runtime.index import EmbeddingIndex
from edge_runtime.serve import make_server


def run_cli(argv: list[str]) -> int:
    """Like cli.main.main for the edge commands (registered there by the lead): user errors → exit 2."""
    app = typer.Typer(pretty_exceptions_enable=False)
    for fn in (edge.embed, edge.classify, edge.index, edge.search, edge.bench, edge.serve):
        app.command()(fn)
    try:
        app(args=argv, standalone_mode=False)
    except ValueError as e:
        console.print(f"[red]error:[/] {e}")
        return 2
    return 0


def test_embed_classify_index_search(edge_bundle, edge_model, media, tmp_path, capsys):
    out = tmp_path / "emb.npy"
    assert run_cli(["embed", str(edge_bundle), str(media["rgb_png"]), str(media["mono_wav"]), "--text", "a red circle",
                    "--out", str(out), "--threads", "1"]) == 0
    emb = np.load(out)
    assert emb.shape == (3, 16)
    np.testing.assert_allclose(emb[0], edge_model.embed_image(media["rgb_png"]), atol=1e-6)
    np.testing.assert_allclose(emb[1], edge_model.embed_audio(media["mono_wav"]), atol=1e-6)
    np.testing.assert_allclose(emb[2], edge_model.embed_text("a red circle"), atol=1e-6)
    assert [i["modality"] for i in json.loads(out.with_suffix(".json").read_text())["items"]] == ["image", "audio", "text"]

    scores = tmp_path / "scores.json"
    assert run_cli(["classify", str(edge_bundle), str(media["rgb_png"]), "--labels", "circle,square", "--json", str(scores)]) == 0
    assert "circle" in capsys.readouterr().out
    assert dict(json.loads(scores.read_text())["labels"]) == pytest.approx(
        dict(edge_model.classify(media["rgb_png"], labels=["circle", "square"])), abs=1e-6)

    folder = tmp_path / "media"
    folder.mkdir()
    for key in ("rgb_png", "exif_jpg", "mono_wav", "corrupt_png"):
        (folder / media[key].name).write_bytes(media[key].read_bytes())
    gallery = tmp_path / "gallery"
    assert run_cli(["index", str(edge_bundle), str(folder), "--out", str(gallery), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "skipped" in text and "corrupt.png" in text
    assert len(EmbeddingIndex.load(gallery)) == 3
    # run again after the folder changed: only the difference is embedded
    (folder / "exif.jpg").unlink()
    (folder / "new.flac").write_bytes(media["stereo_flac"].read_bytes())
    (folder / "rgb.png").write_bytes(media["rgba_png"].read_bytes())
    before = EmbeddingIndex.load(gallery)
    assert run_cli(["index", str(edge_bundle), str(folder), "--out", str(gallery), "--no-progress"]) == 0
    table = " ".join(capsys.readouterr().out.split())
    for row in ("added │ 1", "re-embedded │ 1", "removed │ 1", "unchanged │ 1", "skipped │ 1"):
        assert row in table, row
    after = EmbeddingIndex.load(gallery)
    assert sorted(after.ids) == ["mono16k.wav", "new.flac", "rgb.png"]
    np.testing.assert_array_equal(after.embeddings[after.ids.index("mono16k.wav")],
                                  before.embeddings[before.ids.index("mono16k.wav")])
    np.testing.assert_allclose(after.embeddings[after.ids.index("rgb.png")],
                               edge_model.embed_image(media["rgba_png"]), atol=1e-5)

    hits = tmp_path / "hits.json"
    assert run_cli(["search", str(edge_bundle), str(gallery), "--image", str(media["rgb_png"]), "-k", "2", "--json", str(hits)]) == 0
    assert json.loads(hits.read_text())["hits"][0]["id"] == "rgb.png"
    assert run_cli(["search", str(edge_bundle), str(gallery), "--audio", str(media["mono_wav"])]) == 0
    assert run_cli(["search", str(edge_bundle), str(gallery), "--text", "a red circle"]) == 0


def test_command_errors_are_one_line(edge_bundle, bundle_copy, media, tmp_path, capsys):
    assert run_cli(["embed", str(edge_bundle), "--out", str(tmp_path / "e.npy")]) == 2
    assert "nothing to embed" in capsys.readouterr().out
    assert run_cli(["embed", str(edge_bundle), str(media["corrupt_png"]), "--out", str(tmp_path / "e.npy")]) == 2
    assert "cannot decode" in capsys.readouterr().out
    (bundle_copy / "audio.onnx").write_bytes(b"tampered")
    assert run_cli(["classify", str(bundle_copy), str(media["rgb_png"])]) == 2
    assert "audio.onnx was modified" in capsys.readouterr().out
    assert run_cli(["search", str(edge_bundle), str(tmp_path), "--text", "x", "--image", "y.png"]) == 2
    assert "exactly one of" in capsys.readouterr().out
    assert run_cli(["bench", str(edge_bundle), "--batch", "1,x"]) == 2
    assert "--batch" in capsys.readouterr().out
    assert run_cli(["bench", str(edge_bundle), "--precision", "fp16"]) == 2
    assert "ships no fp16" in capsys.readouterr().out
    other = EmbeddingIndex(16, "0" * 64)
    other.add("x", np.ones(16, np.float32))
    other.save(tmp_path / "foreign")
    assert run_cli(["search", str(edge_bundle), str(tmp_path / "foreign"), "--text", "x"]) == 2
    assert "built with another bundle" in capsys.readouterr().out


def test_bench_writes_rows_per_backend_and_precision(edge_bundle, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert run_cli(["bench", str(edge_bundle), "--backend", "onnxruntime", "--batch", "1,2", "--rounds", "2",
                    "--threads", "1", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    keys = {(r["precision"], r["modality"], r["batch"]) for r in rows}
    assert keys == {(p, m, b) for p, m in [("fp32", "image"), ("fp32", "text"), ("fp32", "audio"), ("int8", "image")] for b in (1, 2)}
    for r in rows:
        assert r["backend"] == "onnxruntime" and 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        assert r["items_per_s"] > 0 and 0 <= r["overhead"] < 1 and r["peak_rss_mb"] > 0 and r["python_peak_mb"] > 0
    assert "Edge runtime latency" in capsys.readouterr().out


@pytest.fixture
def server(edge_model, media, tmp_path):
    gallery = EmbeddingIndex(edge_model.embed_dim, edge_model.fingerprint)
    gallery.add(["rgb"], edge_model.embed_image(media["rgb_png"]), {"modality": "image"})
    srv = make_server(edge_model, gallery, port=0, max_bytes=200_000, timeout=5)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _post(url: str, body, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_http_api(server, edge_model, media):
    with urllib.request.urlopen(server + "/health", timeout=10) as r:
        assert json.loads(r.read())["embed_dim"] == 16
    code, out = _post(server + "/embed", {"text": "a red circle"})
    assert code == 200
    np.testing.assert_allclose(out["embedding"], edge_model.embed_text("a red circle"), atol=1e-6)
    png = base64.b64encode(media["rgb_png"].read_bytes()).decode()
    code, out = _post(server + "/classify", {"image": png, "labels": ["circle", "square"]})
    assert code == 200 and {n for n, _ in out["labels"]} == {"circle", "square"}
    wav = base64.b64encode(media["mono_wav"].read_bytes()).decode()
    code, out = _post(server + "/search", {"audio": wav, "k": 1})
    assert code == 200 and out["hits"][0]["id"] == "rgb"
    assert _post(server + "/embed", {"text": ""}) == (400, {"error": "cannot embed an empty text"})
    assert _post(server + "/embed", {"image": "%%%"})[0] == 400
    assert _post(server + "/embed", None, raw=b"{bad json")[0] == 400
    assert _post(server + "/embed", {"text": "a", "image": png})[0] == 400
    assert _post(server + "/nope", {"text": "a"})[0] == 404
    code, out = _post(server + "/embed", {"text": "x" * 300_000})
    assert code == 413 and "over 200000 bytes" in out["error"]


def test_folder_watcher_example(edge_bundle, media, tmp_path):
    """examples/folder_watcher.py indexes a folder and answers text queries from stdin."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    folder = tmp_path / "photos"
    folder.mkdir()
    for key in ("rgb_png", "exif_jpg", "corrupt_png"):
        (folder / media[key].name).write_bytes(media[key].read_bytes())
    proc = subprocess.run([sys.executable, str(root / "examples" / "folder_watcher.py"), str(edge_bundle), str(folder),
                           "--gallery", str(tmp_path / "g"), "--threads", "1", "-k", "2"],
                          input="a red circle\n\n \n", capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("indexed 2 files")
    assert sorted(line.split()[-1] for line in lines[1:]) == ["exif.jpg", "rgb.png"]
    assert "skipped corrupt.png" in proc.stderr
    assert len(EmbeddingIndex.load(tmp_path / "g")) == 2
