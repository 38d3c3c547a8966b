"""The edge-runtime commands: ``hssl embed | classify | index | search | bench | serve BUNDLE ...``.

Thin layers over :mod:`edge_runtime`: parse, call the library, render with rich, write JSON/npy.
Bad input (a tampered bundle, a corrupt file, a missing back end) raises InputError / BundleError /
BackendError — all ``ValueError`` — which ``hssl`` prints as one red line with exit code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer
from rich.table import Table

from cli.console import console, kv_table, progress_bar, warn
from cli.options import parse_list, parse_positive_ints

BundleArg = Annotated[Path, typer.Argument(help="a bundle folder written by hssl export")]
BackendOpt = Annotated[str, typer.Option("--backend", help="auto | onnxruntime | openvino | tensorrt")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", help="intra-op threads of the back end")]
PrecisionOpt = Annotated[Optional[str], typer.Option("--precision", help="fp32 | fp16 | int8 (default: the bundle's)")]


def _load(bundle: Path, backend: str, threads: int | None, precision: str | None = None):
    from edge_runtime.model import EdgeModel

    return EdgeModel.load(bundle, backend=backend, threads=threads, precision=precision)


def embed(bundle: BundleArg,
          files: Annotated[Optional[list[Path]], typer.Argument(help="image / audio files, .npy (T, D) feature sequences")] = None,
          text: Annotated[Optional[list[str]], typer.Option("--text", help="a text to embed (repeatable)")] = None,
          out: Annotated[Path, typer.Option("--out", help="where to write the (N, E) float32 .npy")] = Path("emb.npy"),
          backend: BackendOpt = "auto", threads: ThreadsOpt = None, precision: PrecisionOpt = None) -> None:
    """Embed files (and --text strings) into the joint space; rows follow the argument order."""

    items: list[tuple[str, Any, str]] = [(str(f), *_file_item(f)) for f in files or []]
    items += [(t, t, "text") for t in text or []]
    if not items:
        raise ValueError("nothing to embed: pass files and/or --text")
    model = _load(bundle, backend, threads, precision)
    if any(m == "sequence" for _, _, m in items):
        tower = model.sequence_tower()
        items = [(name, x, tower if m == "sequence" else m) for name, x, m in items]
    rows = np.zeros((len(items), model.embed_dim), dtype=np.float32)
    for modality in model.modalities:
        idx = [i for i, it in enumerate(items) if it[2] == modality]
        if idx:
            rows[idx] = model.embed([items[i][1] for i in idx], modality)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, rows)
    sidecar = out.with_suffix(".json")
    sidecar.write_text(json.dumps({"bundle": str(bundle), "fingerprint": model.fingerprint, "embed_dim": model.embed_dim,
                                   "items": [{"item": name, "modality": m} for name, _, m in items]}, indent=1))
    t = Table(title=f"Embeddings ({len(items)} × {model.embed_dim}) → {out}")
    for col in ("#", "item", "modality", "first values"):
        t.add_column(col)
    for i, (name, _, m) in enumerate(items):
        t.add_row(str(i), name, m, " ".join(f"{v:+.3f}" for v in rows[i, :4]))
    console.print(t)
    console.print(f"wrote {out} and {sidecar}")


def _file_item(path: Path) -> tuple[Any, str]:
    """(item, modality) of a file argument: a ``.npy`` is a (T, D) feature sequence for the bundle's
    sequence tower (read without pickle), anything else an image or audio file."""
    from edge_runtime.model import infer_modality

    if path.suffix.lower() == ".npy":
        try:
            return np.load(path, allow_pickle=False), "sequence"
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: not a readable .npy array without pickle ({e})") from None
    return path, infer_modality(path)


def classify(bundle: BundleArg,
             file: Annotated[Path, typer.Argument(help="an image or audio file")],
             labels: Annotated[Optional[str], typer.Option("--labels", help="comma-separated labels (default: the bundle's head or label names)")] = None,
             top_k: Annotated[int, typer.Option("--top-k", "-k", min=1)] = 5,
             backend: BackendOpt = "auto", threads: ThreadsOpt = None, precision: PrecisionOpt = None,
             json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the scores as JSON")] = None) -> None:
    """Zero-shot (or trained-head) classification of one file."""
    model = _load(bundle, backend, threads, precision)
    ranked = model.classify(file, labels=list(parse_list(labels, "--labels", required=True)) if labels else None, top_k=top_k)
    t = Table(title=f"{file.name}: top {len(ranked)}")
    t.add_column("label")
    t.add_column("score", justify="right")
    for name, score in ranked:
        t.add_row(name, f"{score:.3f}")
    console.print(t)
    if json_out:
        json_out.write_text(json.dumps({"file": str(file), "labels": [[n, s] for n, s in ranked]}, indent=1))


def index(bundle: BundleArg,
          folder: Annotated[Path, typer.Argument(help="a folder of images and/or audio files (searched recursively)")],
          out: Annotated[Path, typer.Option("--out", help="the gallery folder (updated in place if it exists)")] = Path("gallery"),
          rebuild: Annotated[bool, typer.Option("--rebuild", help="start the gallery afresh instead of updating it")] = False,
          kind: Annotated[str, typer.Option("--kind", help="auto (exact, then HNSW from 20k items) | exact | hnsw")] = "auto",
          dtype: Annotated[str, typer.Option("--dtype", help="HNSW vector storage: f32 | f16 | i8")] = "f16",
          batch: Annotated[int, typer.Option("--batch", min=1)] = 16,
          backend: BackendOpt = "auto", threads: ThreadsOpt = None, precision: PrecisionOpt = None,
          progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True) -> None:
    """Embed a folder's image/audio files into a searchable gallery; run again to pick up what changed
    (new files added, deleted ones removed, modified ones re-embedded)."""
    from edge_runtime.index import EmbeddingIndex, scan_media, sync_folder
    from edge_runtime.items import AUDIO_SUFFIXES, IMAGE_SUFFIXES

    paths = scan_media(folder, IMAGE_SUFFIXES | AUDIO_SUFFIXES)
    if not paths:
        raise ValueError(f"{folder} holds no image or audio files")
    model = _load(bundle, backend, threads, precision)
    update = (out / "index.json").is_file() and not rebuild
    gallery = EmbeddingIndex.load(out) if update else EmbeddingIndex(model.embed_dim, model.fingerprint, kind, dtype)
    bar = progress_bar("index", enabled=progress, text=None)
    with bar:
        task = bar.add_task("index", total=None)
        report = sync_folder(model, folder, gallery, paths, batch, lambda n, total: bar.update(task, completed=n, total=total))
    if report.changed or not update:
        gallery.save(out)
    counts = {m: sum(1 for i in gallery.ids if gallery.metadata(i)["modality"] == m) for m in model.modalities}
    console.print(kv_table(f"Gallery {out} ({gallery.store})", {
        "items": len(gallery), **{f"{m} items": n for m, n in counts.items() if n}, "added": len(report.added),
        "re-embedded": len(report.updated), "removed": len(report.removed), "unchanged": report.unchanged,
        "skipped": len(report.skipped), "bundle": model.fingerprint[:16]}))
    for pid, reason in list(report.skipped.items())[:10]:
        warn("skipped", f"{pid}: {reason}")


def search(bundle: BundleArg,
           gallery: Annotated[Path, typer.Argument(help="a gallery folder written by hssl index")],
           text: Annotated[Optional[str], typer.Option("--text", help="query text")] = None,
           image: Annotated[Optional[Path], typer.Option("--image", help="query image file")] = None,
           audio: Annotated[Optional[Path], typer.Option("--audio", help="query audio file")] = None,
           k: Annotated[int, typer.Option("-k", "--k", min=1)] = 5,
           backend: BackendOpt = "auto", threads: ThreadsOpt = None,
           json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the hits as JSON")] = None) -> None:
    """Cross-modal search of a gallery with a text, image or audio query."""
    from edge_runtime.index import EmbeddingIndex

    queries = [(v, m) for v, m in ((text, "text"), (image, "image"), (audio, "audio")) if v is not None]
    if len(queries) != 1:
        raise ValueError("pass exactly one of --text, --image, --audio")
    (query, modality), = queries
    index_ = EmbeddingIndex.load(gallery)
    model = _load(bundle, backend, threads)
    if index_.bundle and index_.bundle != model.fingerprint:
        raise ValueError(f"{gallery} was built with another bundle (fingerprint {index_.bundle[:12]}…, this one "
                         f"{model.fingerprint[:12]}…); rebuild it with hssl index")
    hits = index_.search(model.embed(query, modality), k)
    t = Table(title=f"Top {len(hits)} for {modality} query {str(query)!r}")
    for col in ("rank", "id", "modality", "score"):
        t.add_column(col, justify="right" if col in ("rank", "score") else "left")
    for r, h in enumerate(hits, 1):
        t.add_row(str(r), h.id, str(h.metadata.get("modality", "")), f"{h.score:.3f}")
    console.print(t)
    if json_out:
        json_out.write_text(json.dumps({"query": str(query), "modality": modality,
                                        "hits": [{"id": h.id, "score": h.score, "metadata": h.metadata} for h in hits]}, indent=1))


def bench_table(result: dict[str, Any]) -> Table:
    t = Table(title=f"Edge runtime latency (ms per call, threads {result.get('threads') or 'default'})")
    for col in ("backend", "precision", "modality", "batch", "p50", "p95", "p99", "items/s", "model p50",
                "overhead", "py peak MB", "rss MB"):
        t.add_column(col, justify="left" if col in ("backend", "precision", "modality") else "right")
    for r in result["rows"]:
        t.add_row(r["backend"], r["precision"], r["modality"], str(r["batch"]), f"{r['p50_ms']:.2f}", f"{r['p95_ms']:.2f}",
                  f"{r['p99_ms']:.2f}", f"{r['items_per_s']:.0f}", f"{r['model_p50_ms']:.2f}", f"{100 * r['overhead']:.0f}%",
                  f"{r['python_peak_mb']:.1f}", f"{r['peak_rss_mb']:.0f}")
    return t


def bench(bundle: BundleArg,
          backend: Annotated[str, typer.Option("--backend", help="'all' or comma-separated back ends")] = "all",
          precision: Annotated[Optional[str], typer.Option("--precision", help="comma-separated (default: every one shipped)")] = None,
          batch: Annotated[str, typer.Option("--batch", help="comma-separated batch sizes")] = "1,8",
          rounds: Annotated[int, typer.Option("--rounds", min=1)] = 30,
          threads: ThreadsOpt = None,
          out: Annotated[Path, typer.Option("--out", help="JSON results")] = Path("edge_bench.json")) -> None:
    """Latency p50/p95/p99, throughput and memory per back end, precision, modality and batch."""
    from edge_runtime.bench import bench_bundle

    backends = None if backend == "all" else list(parse_list(backend, "--backend", required=True))
    with console.status("benchmarking…"):
        result = bench_bundle(bundle, backends, list(parse_list(precision, "--precision", required=True)) if precision else None,
                              list(parse_positive_ints(batch, "--batch")), threads, rounds)
    console.print(bench_table(result))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    console.print(f"wrote {out}")


def serve(bundle: BundleArg,
          port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8080,
          host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
          gallery: Annotated[Optional[Path], typer.Option("--gallery", help="a gallery for /search")] = None,
          max_bytes: Annotated[int, typer.Option("--max-bytes", min=1024, help="largest request body")] = 8 << 20,
          backend: BackendOpt = "auto", threads: ThreadsOpt = None) -> None:
    """A small local JSON API: GET /health, POST /embed, /classify, /search."""
    from edge_runtime.index import EmbeddingIndex
    from edge_runtime.serve import make_server

    model = _load(bundle, backend, threads)
    server = make_server(model, EmbeddingIndex.load(gallery) if gallery else None, host, port, max_bytes)
    console.print(f"serving {bundle} on http://{host}:{server.server_address[1]} (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
