"""On-device gallery search at scale: ``EmbeddingIndex`` exact (brute force, the reference) vs
HNSW (usearch) at 10 k, 100 k and 1 M items of D = 128.

Data: clustered synthetic embeddings, N / 1000 cluster centres on the unit sphere (at least 10),
each item ``normalize(c + σ g / √D)`` with σ = 0.6 (an item's cosine to its own centre ≈ 0.86, to
another item of its cluster ≈ 0.73: many near-ties, which is what makes recall@10 hard); queries
are fresh draws from the same mixture. Per size and store: build time and add throughput (batch
adds), p50 / p95 latency of a single add into the full gallery, recall@10 against exact search,
p50 / p95 query latency on ONE core (one query at a time), load time (open the saved folder and
answer one query), bytes on disk. Each ``--ef`` value adds an HNSW query row.

    .venv/bin/python benchmarks/index.py [--sizes 10000,100000,1000000] [--queries 1000] [--dtype f16]
                                         [--ef 64,128,256] [--threads 2]

``--threads`` is for building only; queries and single adds run on one thread (BLAS included).
Prints a rich table and writes benchmarks/results/index.json (with the CPU model and ISA flags).
"""

from __future__ import annotations

import os

os.environ.update({v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})  # one core

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from edge_runtime.index import EmbeddingIndex, HnswParams  # noqa: E402
from edge_runtime.machine import machine_info  # noqa: E402

OUT = Path(__file__).parent / "results" / "index.json"
D, SIGMA, K = 128, 0.6, 10


def clustered(n: int, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = centres[rng.integers(0, len(centres), n)] + SIGMA * rng.standard_normal((n, D)).astype(np.float32) / np.sqrt(D)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_top_k(gallery: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    out = []
    for start in range(0, len(queries), 100):                       # (100, N) score blocks
        s = queries[start : start + 100] @ gallery.T
        out.append(np.argpartition(-s, k, axis=1)[:, :k])
    return np.concatenate(out)


def percentiles_ms(times: list[float]) -> tuple[float, float]:
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 95) * 1e3)


def timed_queries(index: EmbeddingIndex, queries: np.ndarray, exact: bool = False) -> tuple[list[list[int]], list[float]]:
    found, times = [], []
    for q in queries:
        t = time.perf_counter()
        hits = index.search(q, K, exact=exact)
        times.append(time.perf_counter() - t)
        found.append([int(h.id) for h in hits])
    return found, times


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir())


def bench_store(kind: str, x: np.ndarray, queries: np.ndarray, truth: np.ndarray, args, tmp: Path) -> list[dict]:
    n = len(x)
    index = EmbeddingIndex(D, kind=kind, dtype=args.dtype)
    index.tune(threads=args.threads)                              # building may use every core
    t = time.perf_counter()
    for start in range(0, n, 100_000):
        index.add([str(i) for i in range(start, min(n, start + 100_000))], x[start : start + 100_000])
    build_s = time.perf_counter() - t
    index.tune(threads=1)
    path = index.save(tmp / f"{kind}-{n}")
    t = time.perf_counter()
    loaded = EmbeddingIndex.load(path)
    loaded.tune(threads=1)
    loaded.search(queries[0], K)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    loaded.add("first-edit", queries[0])                          # copies the mapped store into memory
    first_edit_s = time.perf_counter() - t
    adds = []
    for j, q in enumerate(queries[1:201]):
        t = time.perf_counter()
        loaded.add(f"new{j}", q)
        adds.append(time.perf_counter() - t)
    common = {"n": n, "store": kind, "dtype": args.dtype if kind == "hnsw" else "f32", "build_s": build_s,
              "add_per_s": n / build_s, "load_s": load_s, "first_edit_s": first_edit_s, "disk_mb": folder_bytes(path) / 1e6}
    common["add_p50_ms"], common["add_p95_ms"] = percentiles_ms(adds)
    rows = []
    for ef in (args.ef if kind == "hnsw" else [None]):
        if ef is not None:
            index.tune(expansion_search=ef)
        found, times = timed_queries(index, queries)
        recall = float(np.mean([len(set(f) & set(t.tolist())) / K for f, t in zip(found, truth)]))
        p50, p95 = percentiles_ms(times)
        rows.append({**common, "ef": ef, "recall_at_10": recall, "query_p50_ms": p50, "query_p95_ms": p95})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--dtype", default="f16", choices=["f32", "f16", "i8"])
    ap.add_argument("--ef", default=None, help="HNSW expansion_search values to measure (default: the library's)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--exact-up-to", type=int, default=1_000_000, help="largest size to also time the exact store at")
    args = ap.parse_args()
    args.ef = [int(e) for e in args.ef.split(",")] if args.ef else [HnswParams().expansion_search]
    console, rows = Console(width=200), []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            rng = np.random.default_rng(n)
            centres = rng.standard_normal((max(n // 1000, 10), D)).astype(np.float32)
            centres /= np.linalg.norm(centres, axis=1, keepdims=True)
            x, queries = clustered(n, centres, rng), clustered(args.queries, centres, rng)
            truth = exact_top_k(x, queries, K)
            for kind in ("exact", "hnsw") if n <= args.exact_up_to else ("hnsw",):
                with console.status(f"{kind} store, {n} items…"):
                    rows += bench_store(kind, x, queries, truth, args, Path(tmp))
                console.print(f"{kind} {n}: {rows[-1]}")
    table = Table(title=f"EmbeddingIndex, D = {D}, clustered σ = {SIGMA}, recall@{K} vs exact, queries on one core")
    cols = ("items", "store", "dtype", "ef", "recall@10", "query p50 ms", "query p95 ms", "add/s (batch)",
            "add p50 ms", "add p95 ms", "load s", "first edit s", "disk MB")
    for c in cols:
        table.add_column(c, justify="left" if c in ("store", "dtype") else "right")
    for r in rows:
        table.add_row(f"{r['n']:,}", r["store"], r["dtype"], str(r["ef"] or "-"), f"{r['recall_at_10']:.4f}",
                      f"{r['query_p50_ms']:.3f}", f"{r['query_p95_ms']:.3f}", f"{r['add_per_s']:,.0f}",
                      f"{r['add_p50_ms']:.3f}", f"{r['add_p95_ms']:.3f}", f"{r['load_s']:.3f}", f"{r['first_edit_s']:.2f}",
                      f"{r['disk_mb']:.1f}")
    console.print(table)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"machine": machine_info(), "dim": D, "sigma": SIGMA, "k": K, "queries": args.queries,
                               "hnsw_defaults": asdict(HnswParams()), "build_threads": args.threads, "rows": rows},
                              indent=1))
    console.print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
