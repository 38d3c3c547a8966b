"""Does data loading keep up with the model? Samples/s of the data loader ALONE (reading, decoding,
preprocessing, collating a preset's batches) next to samples/s of the TRAIN STEP alone (the real
``Trainer`` step on batches prepared beforehand), for:

* ``builtin``        — the built-in generator through the step-indexed sampler (map-style),
* ``shards (map)``   — the same samples written to tar shards, read by random access (``shards:DIR``),
* ``shards (stream)``— the tar shards streamed (``data.streaming``: shuffle buffer, per-worker split),

each with 0 and N DataLoader worker processes. "× step" > 1 means the loader outruns the model.
The step's FLOPs (forward + backward, ``torch.utils.flop_counter``) give the achieved TFLOP/s and,
on a GPU with a known (or ``--peak-tflops``) bf16 peak, the fraction of that peak.

    .venv/bin/python benchmarks/dataloader.py [--preset small] [--workers 0,2] [--batches 6] [--steps 3]
                                              [--device cpu|cuda] [--peak-tflops 989] [--threads N]

Prints a rich table and writes benchmarks/results/dataloader.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader

from edge_runtime.machine import machine_info
from hybridssl.app.train import prepare
from hybridssl.config import load_config
from hybridssl.data.batching import Collator, SafeDataset, StepBatchSampler
from hybridssl.data.shards import ShardDataset, write_shards
from hybridssl.runs import build_model
from hybridssl.trainer import Trainer

OUT = Path(__file__).parent / "results" / "dataloader.json"
#: dense bf16 tensor-core peaks (TFLOP/s) by device-name fragment
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0}


def loader_rate(loader: DataLoader, batches: int) -> float:
    """Samples/s of ``batches`` batches, timed from the iterator's creation (worker start-up included:
    timing only later batches would count batches the workers prefetched meanwhile)."""
    t0, n = time.perf_counter(), 0
    for batch in itertools.islice(iter(loader), batches):
        n += batch["n"]
    return n / (time.perf_counter() - t0)


def loaders(cfg, train_set, shards: ShardDataset, collate: Collator, workers: int, batches: int) -> dict[str, DataLoader]:
    b, seed = cfg.train.batch_size, cfg.train.seed
    common = dict(collate_fn=collate, num_workers=workers, persistent_workers=False)
    sampler = StepBatchSampler(len(train_set), b, seed, batches)
    shard_sampler = StepBatchSampler(len(shards), b, seed, batches)
    stream = shards.stream(seed=seed, epochs=None, shuffle_buffer=cfg.data.shuffle_buffer, batch_size=b)
    return {"builtin": DataLoader(SafeDataset(train_set), batch_sampler=sampler, **common),
            "shards (map)": DataLoader(SafeDataset(shards), batch_sampler=shard_sampler, **common),
            "shards (stream)": DataLoader(stream, batch_size=b, **common)}


def step_rate(trainer: Trainer, batches: list[dict], steps: int) -> tuple[float, float]:
    """(samples/s, FLOPs per step) of the real train step on prepared batches."""
    from torch.utils.flop_counter import FlopCounterMode

    source = itertools.cycle(batches)
    trainer._one_step(source)  # warm-up
    with FlopCounterMode(display=False) as counter:
        trainer._one_step(source)
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    sync()
    t0, seen = time.perf_counter(), trainer.state.samples_seen
    for _ in range(steps):
        trainer._one_step(source)
    sync()
    return (trainer.state.samples_seen - seen) / (time.perf_counter() - t0), float(counter.get_total_flops())


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    if given:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--workers", default="0,2", help="DataLoader worker counts to try")
    ap.add_argument("--batches", type=int, default=8, help="batches timed per loader")
    ap.add_argument("--steps", type=int, default=3, help="train steps timed")
    ap.add_argument("--samples", type=int, default=512, help="dataset size (built-in data)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="bf16 peak of the device (default: a lookup)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(args.preset, [f"data.train_size={args.samples}", f"train.device={args.device}"])
        cfg, train_set, _, tok = prepare(cfg, Path(tmp))
        write_shards(train_set, Path(tmp) / "shards", shard_size=max(1, args.samples // 8))
        shards = ShardDataset(Path(tmp) / "shards")
        collate = Collator(cfg.preprocess, tok, cfg.model.modalities)
        for workers in (int(w) for w in args.workers.split(",")):
            for name, loader in loaders(cfg, train_set, shards, collate, workers, args.batches).items():
                rows.append({"stage": f"loader: {name}", "workers": workers,
                             "samples_per_s": round(loader_rate(loader, args.batches), 1)})
        torch.manual_seed(0)
        trainer = Trainer(cfg, Path(tmp), train_set, tok, build_model(cfg, tok.vocab_size, train_set.modalities))
        safe = SafeDataset(train_set)
        sampler = StepBatchSampler(len(train_set), cfg.train.batch_size, 0, 2)
        batches = [collate([safe[i] for i in sampler.batch(s)]) for s in range(2)]
        step, flops = step_rate(trainer, batches, args.steps)
    peak = peak_tflops(trainer.device, args.peak_tflops)
    achieved = flops * step / cfg.train.batch_size / 1e12
    result = {"machine": machine_info(), "preset": args.preset, "batch_size": cfg.train.batch_size, "device": str(trainer.device),
              "precision": str(trainer.amp_dtype or torch.float32), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "train_step_samples_per_s": round(step, 1),
              "step_tflop": round(flops / 1e12, 4), "achieved_tflops": round(achieved, 3),
              "peak_bf16_tflops": peak, "fraction_of_peak": round(achieved / peak, 4) if peak else None,
              "loaders": [{**r, "x_step": round(r["samples_per_s"] / step, 2)} for r in rows]}
    table = Table(title=f"Data loading vs train step, preset {args.preset} (batch {cfg.train.batch_size}, "
                        f"{result['device']}, {platform.processor() or platform.machine()})")
    for col in ("stage", "workers", "samples/s", "× step"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    for r in result["loaders"]:
        table.add_row(r["stage"], str(r["workers"]), f"{r['samples_per_s']:.1f}", f"{r['x_step']:.2f}")
    frac = f", {100 * result['fraction_of_peak']:.1f} % of bf16 peak" if peak else ""
    table.add_row("train step", "-", f"{step:.1f}", f"1.00 ({achieved:.3g} TFLOP/s{frac})")
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
