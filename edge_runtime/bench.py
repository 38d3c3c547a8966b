"""Latency, throughput and memory of a bundle on every available back end and precision.

For each (back end, precision, modality, batch size): ``rounds`` timed calls after ``warmup``
calls of

- end to end: ``EdgeModel.embed`` on raw in-memory items (uint8 images 1.5× the crop size,
  captions, waveforms at 1.5× the spec rate: so resizing and resampling are included);
- model only: ``Backend.run`` on the already preprocessed feed;

reporting latency p50/p95/p99 (ms per call), throughput (items/s at the p50 latency), the
runtime's overhead ``1 − model_p50 / e2e_p50`` (preprocessing + Python), the Python-side peak
allocation of one end-to-end call (``tracemalloc``: numpy and Python objects, not the back end's
own buffers) and the process's peak resident set (``resource.getrusage``, monotonic over the run).
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.backends import READS, is_installed
from edge_runtime.bundle import read_bundle
from edge_runtime.model import EdgeModel
from edge_runtime.validate import InputError

CAPTIONS = ("a red circle on a blue background", "a small green square", "the sound of a bell",
            "a large yellow star with stripes")


def sample_items(model: EdgeModel, modality: str, n: int, seed: int = 0) -> tuple[list[Any], int | None]:
    """(n raw items, sample rate or None) for ``modality``."""
    rng = np.random.default_rng(seed)
    if modality == "image":
        side = int(model.loaded_spec(model.image_spec, "image").resize * 1.5)
        return [rng.integers(0, 256, (side, side + 7, 3), dtype=np.uint8) for _ in range(n)], None
    if modality == "text":
        return [CAPTIONS[i % len(CAPTIONS)] for i in range(n)], None
    spec = model.loaded_spec(model.audio_spec, "audio")
    rate = int(spec.sample_rate * 1.5)
    t = np.arange(int(rate * spec.clip_seconds)) / rate
    return [(0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype(np.float32) for i in range(n)], rate


def time_ms(fn: Callable[[], Any], rounds: int, warmup: int = 3) -> np.ndarray:
    """Wall-clock milliseconds of ``rounds`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = np.empty(rounds)
    for i in range(rounds):
        t0 = time.perf_counter()
        fn()
        out[i] = (time.perf_counter() - t0) * 1e3
    return out


def peak_rss_mb() -> float:
    """Peak resident set of this process (MB); ru_maxrss is KiB on Linux, bytes on macOS."""
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024


def python_peak_mb(fn: Callable[[], Any]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / (1 << 20)
    finally:
        tracemalloc.stop()


def bench_model(model: EdgeModel, batches: Sequence[int], rounds: int = 30,
                on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """One row per (modality, batch) of an already loaded model."""
    rows = []
    for m in model.modalities:
        for b in batches:
            items, rate = sample_items(model, m, b)
            feed = model.preprocess(items, m, rate)
            backend = model.towers[m].backend
            e2e = time_ms(partial(model.embed, items, m, rate), rounds)
            core = time_ms(partial(backend.run, feed), rounds)
            p50 = float(np.percentile(e2e, 50))
            row = {
                "backend": backend.name, "precision": model.precisions[m], "modality": m, "batch": b,
                "p50_ms": p50, "p95_ms": float(np.percentile(e2e, 95)), "p99_ms": float(np.percentile(e2e, 99)),
                "items_per_s": b / p50 * 1e3, "model_p50_ms": float(np.percentile(core, 50)),
                "overhead": max(0.0, 1.0 - float(np.percentile(core, 50)) / p50),
                "python_peak_mb": python_peak_mb(partial(model.embed, items, m, rate)), "peak_rss_mb": peak_rss_mb(),
            }
            rows.append(row)
            if on_row:
                on_row(row)
    return rows


def bench_plan(bundle_dir: str | Path, backends: Sequence[str] | None = None,
               precisions: Sequence[str] | None = None) -> list[tuple[str, str, dict[str, str]]]:
    """(back end, precision, {modality: precision}) for every installed back end that reads the
    bundle's files and every precision it ships (modalities lacking a precision are left out)."""
    bundle = read_bundle(bundle_dir, verify=False)
    shipped = sorted({p for m in bundle.modalities for p in bundle.precisions(m)})
    want = list(precisions) if precisions else shipped
    unknown = [p for p in want if p not in shipped]
    if unknown:
        raise InputError(f"the bundle ships no {', '.join(unknown)} models (it has {', '.join(shipped)})")
    plan = []
    for p in want:
        per = {m: p for m in bundle.modalities if p in bundle.precisions(m)}
        suffixes = {bundle.tower(m, p).model.suffix.lower() for m in per}
        readers = set.intersection(*(set(READS.get(s, ())) for s in suffixes))
        for b in backends or ("onnxruntime", "openvino", "tensorrt"):
            if b in readers and is_installed(b):
                plan.append((b, p, per))
    if not plan:
        raise InputError(f"no installed back end can run this bundle (requested {list(backends or ['auto'])})")
    return plan


def bench_bundle(bundle_dir: str | Path, backends: Sequence[str] | None = None, precisions: Sequence[str] | None = None,
                 batches: Sequence[int] = (1, 8), threads: int | None = None, rounds: int = 30,
                 on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Benchmark every planned (back end, precision); returns {"bundle", "threads", "rows"}."""
    if not batches or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in batches):
        raise InputError(f"batch sizes must be positive integers, got {list(batches)}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise InputError(f"rounds must be a positive integer, got {rounds!r}")
    rows: list[dict[str, Any]] = []
    for backend, _, per in bench_plan(bundle_dir, backends, precisions):
        model = EdgeModel.load(bundle_dir, backend=backend, threads=threads, precision=per, modalities=list(per))
        rows += bench_model(model, batches, rounds, on_row)
    return {"bundle": str(bundle_dir), "threads": threads, "rounds": rounds, "rows": rows}
