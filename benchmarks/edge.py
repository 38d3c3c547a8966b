"""Edge runtime vs PyTorch eager, end to end (preprocessing included), side by side in one run.

For every tower of a bundle and every batch size, interleaved rounds of

- **torch**: the training-side preprocessing (``hybridssl.preprocessing`` / ``TextTokenizer``) of
  the raw items + ``model.embed`` of the source run (``hybridssl.runs.load_run``) in eager mode
  under ``torch.inference_mode`` with ``--threads`` intra-op threads;
- **runtime**: ``EdgeModel.embed`` on the same raw items (numpy preprocessing + the back end with
  ``--threads`` intra-op threads, one inter-op thread);
- **model only**: the back end's ``run`` on the already preprocessed feed,

reporting p10 / p50 latency (ms per call), the runtime's speed-up over torch and the runtime's own
overhead ``1 − model / runtime`` (preprocessing + Python; target < 20 % at batch 1), both from the
10th percentiles: on a shared, loaded machine the medians carry scheduling noise (see PERF.md).
Raw items: uint8 images 1.5× the crop size (resize + crop included), captions, waveforms at
1.5× the spec rate (resampling included).

    .venv/bin/python benchmarks/edge.py --bundle BUNDLE [--run RUN] [--threads 1] [--batch 1,8] [--rounds 50]
    .venv/bin/python benchmarks/edge.py --run RUN             # exports the bundle first (export.api)

Prints a rich table and writes benchmarks/results/edge.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from edge_runtime.machine import machine_info

# benchmarks/distill.py would shadow the distill package when this file runs as a script
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from edge_runtime.bench import sample_items, time_ms
from edge_runtime.model import EdgeModel
from hybridssl.preprocessing import preprocess_audio, preprocess_image
from hybridssl.runs import load_run

OUT = Path(__file__).parent / "results" / "edge.json"


def torch_embed_fn(loaded, modality: str, items: list[Any], rate: int | None):
    """A closure running the training-side preprocessing + eager embed on ``items``."""
    model, spec = loaded.model, loaded.spec

    def run() -> np.ndarray:
        with torch.inference_mode():
            if modality == "image":
                return model.embed("image", torch.stack([preprocess_image(x, spec.image) for x in items])).numpy()
            if modality == "text":
                ids, attn = loaded.tokenizer.encode(items)
                return model.embed("text", torch.from_numpy(ids), torch.from_numpy(attn)).numpy()
            x = torch.stack([preprocess_audio(w, rate, spec.audio)[0] for w in items])
            return model.embed("audio", x).numpy()

    return run


def interleaved(fns: dict[str, Any], rounds: int, chunk: int = 5) -> dict[str, np.ndarray]:
    """Time every fn in alternating chunks of ``chunk`` calls (fair under a noisy shared machine)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(1, rounds // chunk)):
        for k, fn in fns.items():
            times[k].extend(time_ms(fn, chunk, warmup=1))
    return {k: np.array(v) for k, v in times.items()}


def bench(bundle: Path, run_dir: Path, threads: int, batches: list[int], rounds: int, backend: str) -> dict[str, Any]:
    torch.set_num_threads(threads)  # a benchmark process: set once, for its whole life
    loaded = load_run(run_dir)
    edge = EdgeModel.load(bundle, backend=backend, threads=threads)
    rows = []
    for m in edge.modalities:
        for b in batches:
            items, rate = sample_items(edge, m, b)
            feed = edge.preprocess(items, m, rate)
            backend_run = edge.towers[m].backend.run
            ref = torch_embed_fn(loaded, m, items, rate)
            cos = float(np.min(np.sum(ref() * edge.embed(items, m, rate).reshape(b, -1), axis=1)))
            t = interleaved({"torch": ref, "runtime": partial(edge.embed, items, m, rate), "model": partial(backend_run, feed)},
                            rounds)
            p = {k: (float(np.percentile(v, 10)), float(np.percentile(v, 50))) for k, v in t.items()}
            rows.append({"modality": m, "batch": b, "backend": edge.backends[m], "precision": edge.precisions[m],
                         "torch_p10_ms": p["torch"][0], "torch_p50_ms": p["torch"][1],
                         "runtime_p10_ms": p["runtime"][0], "runtime_p50_ms": p["runtime"][1],
                         "model_p10_ms": p["model"][0], "model_p50_ms": p["model"][1],
                         "speedup": p["torch"][0] / p["runtime"][0],
                         "overhead": max(0.0, 1 - p["model"][0] / p["runtime"][0]), "min_cosine_to_torch": cos})
    return {"bundle": str(bundle), "run": str(run_dir), "threads": threads, "rounds": rounds,
            "machine": machine_info(), "rows": rows}


def table(result: dict[str, Any]) -> Table:
    t = Table(title=f"Edge runtime vs PyTorch eager, end to end (ms per call, {result['threads']} thread(s))")
    for col in ("tower", "batch", "backend", "torch p10/p50", "runtime p10/p50", "model p10/p50", "speed-up",
                "overhead", "min cos"):
        t.add_column(col, justify="left" if col in ("tower", "backend") else "right", no_wrap=True)
    for r in result["rows"]:
        t.add_row(r["modality"], str(r["batch"]), f"{r['backend']}/{r['precision']}",
                  f"{r['torch_p10_ms']:.2f} / {r['torch_p50_ms']:.2f}", f"{r['runtime_p10_ms']:.2f} / {r['runtime_p50_ms']:.2f}",
                  f"{r['model_p10_ms']:.2f} / {r['model_p50_ms']:.2f}", f"{r['speedup']:.1f}×",
                  f"{100 * r['overhead']:.0f}%", f"{r['min_cosine_to_torch']:.5f}")
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--run", type=Path, default=None, help="the source run (default: the manifest's source.run_dir)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    batches = [int(b) for b in args.batch.split(",") if b.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle
        if bundle is None:
            if args.run is None:
                ap.error("pass --bundle, or --run to export one first")
            from export.api import export_run

            bundle = Path(tmp) / "bundle"
            export_run(args.run, bundle, target="onnx")
        run_dir = args.run or Path(json.loads((bundle / "manifest.json").read_text())["source"]["run_dir"])
        result = bench(bundle, run_dir, args.threads, batches, args.rounds, args.backend)
    Console(width=160).print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
