"""Training throughput: samples/s of the hybrid train step for the `tiny` and `small` presets, and
the one-pass hybrid step (encode the visible tokens once; contrastive + reconstruction share it)
against the naive two-pass step (an extra unmasked pass for the contrastive embedding), measured
side by side in one run (interleaved rounds; the median of each is reported).

    .venv/bin/python benchmarks/train_throughput.py [--presets tiny,small] [--rounds 5] [--steps 4]

Prints a rich table and writes benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from edge_runtime.machine import machine_info
from hybridssl.app.train import prepare
from hybridssl.config import load_config
from hybridssl.data.batching import Collator, SafeDataset, StepBatchSampler
from hybridssl.losses.mlm import TextMasking
from hybridssl.runs import build_model
from hybridssl.task import HybridTask
from hybridssl.trainer import param_groups

OUT = Path(__file__).parent / "results" / "train_throughput.json"


def make_step(cfg, model, tokenizer):
    task = HybridTask(cfg, model, TextMasking(tokenizer.mask_id, tokenizer.vocab_size, tokenizer.special_ids, tokenizer.pad_id))
    opt = torch.optim.AdamW(param_groups(task, 0.05), lr=1e-4)

    def step(batch, i):
        out = task(batch, i, torch.Generator().manual_seed(i))
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()

    return step


def bench_preset(preset: str, rounds: int, steps: int, tmp: Path) -> dict:
    cfg = load_config(preset, ["data.train_size=512"])
    cfg, train_set, _, tokenizer = prepare(cfg, tmp)
    sampler = StepBatchSampler(len(train_set), cfg.train.batch_size, 0, steps)
    collate = Collator(cfg.preprocess, tokenizer, cfg.model.modalities)
    safe = SafeDataset(train_set)
    batches = [collate([safe[i] for i in sampler.batch(s)]) for s in range(steps)]
    steps_by_mode = {}
    for mode, two_pass in (("one-pass", False), ("two-pass", True)):
        c = load_config(preset, [f"loss.two_pass={two_pass}"])
        c.preprocess = cfg.preprocess
        torch.manual_seed(0)
        steps_by_mode[mode] = make_step(c, build_model(c, tokenizer.vocab_size), tokenizer)
    for fn in steps_by_mode.values():  # warm-up
        fn(batches[0], 0)
    rates: dict[str, list[float]] = {m: [] for m in steps_by_mode}
    for _ in range(rounds):
        for mode, fn in steps_by_mode.items():
            t0 = time.perf_counter()
            for i, b in enumerate(batches):
                fn(b, i)
            rates[mode].append(sum(b["n"] for b in batches) / (time.perf_counter() - t0))
    one, two = statistics.median(rates["one-pass"]), statistics.median(rates["two-pass"])
    params = sum(p.numel() for p in build_model(cfg, tokenizer.vocab_size).parameters())
    return {"preset": preset, "batch_size": cfg.train.batch_size, "parameters": params,
            "one_pass_samples_per_s": round(one, 2), "two_pass_samples_per_s": round(two, 2),
            "speedup_one_vs_two_pass": round(one / two, 3), "rounds": rates}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="tiny,small")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    import tempfile

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for p in args.presets.split(","):
            results.append(bench_preset(p, args.rounds, args.steps, Path(tmp)))
    table = Table(title=f"Train step throughput ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})")
    for col in ("preset", "params (M)", "batch", "one-pass samples/s", "two-pass samples/s", "one-pass speed-up"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(r["preset"], f"{r['parameters'] / 1e6:.2f}", str(r["batch_size"]), f"{r['one_pass_samples_per_s']:.1f}",
                      f"{r['two_pass_samples_per_s']:.1f}", f"{r['speedup_one_vs_two_pass']:.2f}×")
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine_info(), "threads": torch.get_num_threads(), "torch": torch.__version__, "results": results}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
