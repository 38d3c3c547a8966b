"""The GPU half, measured in one process on an NVIDIA GPU (``scripts/gpu_check.sh`` installs and calls it).

1. **gpu-marked tests**: the JUnit file of ``pytest -m gpu`` (``--tests``): every one must have run
   and passed (a skip is a failure here: it means something the GPU run needs is missing).
2. **`base` training**: ``train.steps`` steps of the ``base`` preset with bf16 autocast on the
   built-in data; steady-state samples/s (the steps after ``--warmup``), model FLOPs per sample
   (:func:`hybridssl.flops.training_step_flops`: one forward + backward counted by
   ``FlopCounterMode``) and the fraction of the device's dense bf16 peak (looked up from its name,
   :func:`hybridssl.flops.bf16_peak_tflops`).
3. **A distilled student** (``mobilevit_xxs`` + the default text/audio students) from that run.
4. **Engines**: for the student and the `base` teacher, ``export_run(..., "tensorrt")`` builds fp16 and
   int8 engines of the image tower and runs the export's parity gate on the held-out split (cosine vs
   PyTorch, accuracy change); ``export_run(..., "onnx")`` gives the fp32 graph for ONNX Runtime.
5. **Latency** of the image tower, host to host (numpy in, numpy out: the copies are part of every
   back end's time), p50/p95/p99 at batch 1 and 32: PyTorch eager fp32 and bf16 autocast, ONNX
   Runtime CUDA EP fp32, TensorRT fp16 and int8.

The step alone is timed as well (one batch resident on the GPU, ``resident_batch_*``), so the report
separates what the model achieves from what the data pipeline feeds it.

Targets: `base` training ≥ 40 % of the bf16 peak (end to end, and the step alone); the student's int8 engine ≥ 3× faster than ORT CUDA
fp32 at batch 32 with ≤ 1 point accuracy drop; fp16 engines at min cosine ≥ 0.999 vs PyTorch.
Anything missing (no GPU, no TensorRT, no CUDA EP, an unknown peak, a skipped test) stops the run with
one line and exit status 1; nothing is reported that was not measured here.

    python benchmarks/gpu_check.py --out benchmarks/results [--tests gpu_tests.xml] [--steps 60]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# this folder shares names with packages: the repository root must come first, this folder not at all
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]

from edge_runtime.bench import time_ms  # noqa: E402
from edge_runtime.machine import machine_info  # noqa: E402

TARGETS = {"base_bf16_peak_fraction": 0.40, "base_resident_batch_bf16_peak_fraction": 0.40, "student_int8_speedup_vs_ort_cuda_b32": 3.0,
           "student_int8_drop_points": 1.0, "fp16_min_cosine": 0.999}
BATCHES = (1, 32)


class CheckFailed(RuntimeError):
    """Something the GPU check needs is missing or broke (one line)."""


def junit_summary(path: Path) -> dict[str, int]:
    """Counts of a pytest JUnit file; CheckFailed unless ≥ 1 test ran and all passed, none skipped."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    if counts["tests"] == 0 or counts["failures"] or counts["errors"] or counts["skipped"]:
        raise CheckFailed(f"gpu-marked tests: {counts} (every one must run and pass; see {path})")
    return counts


def gpu_environment() -> dict[str, Any]:
    """Device, driver-side versions and back ends; CheckFailed when any of them is missing."""
    import torch

    if not torch.cuda.is_available():
        raise CheckFailed("no CUDA device visible to PyTorch")
    from export.tensorrt_backend import TensorRTUnavailable, require_tensorrt_gpu

    try:
        trt = require_tensorrt_gpu()
    except TensorRTUnavailable as e:
        raise CheckFailed(str(e)) from None
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise CheckFailed(f"ONNX Runtime {ort.__version__} has no CUDAExecutionProvider (pip install onnxruntime-gpu)")
    from hybridssl.flops import bf16_peak_tflops

    name = torch.cuda.get_device_name(0)
    try:
        peak = bf16_peak_tflops(name)
    except ValueError as e:
        raise CheckFailed(str(e)) from None
    props = torch.cuda.get_device_properties(0)
    return {"name": name, "capability": list(torch.cuda.get_device_capability(0)), "memory_gib": round(props.total_memory / 2**30, 1),
            "bf16_dense_peak_tflops": peak, "torch": torch.__version__, "cuda": torch.version.cuda,
            "tensorrt": trt.__version__, "onnxruntime": ort.__version__}


def train_base(work: Path, steps: int, warmup: int, batch: int, workers: int, peak_tflops: float,
               config: str = "base", device: str = "cuda", precision: str = "bf16") -> dict[str, Any]:
    """``config`` (`base`) on the built-in data for ``steps`` steps with ``precision`` autocast;
    steady-state throughput, model FLOPs per sample and the fraction of ``peak_tflops``."""
    import torch

    from hybridssl.app.train import train_run
    from hybridssl.config import load_config
    from hybridssl.flops import training_step_flops, utilisation

    cfg = load_config(config, [f"train.steps={steps}", f"train.batch_size={batch}", f"train.precision={precision}",
                               f"train.device={device}", "train.ckpt_every=0", f"train.warmup_steps={min(10, steps)}",
                               f"data.train_size={steps * batch}", "data.val_size=512", "train.eval_size=256",
                               f"data.num_workers={workers}"])
    rates: list[float] = []
    held: dict[str, Any] = {}
    t0 = time.perf_counter()
    metrics = train_run(cfg, work / "base", on_step=lambda log: rates.append(log.samples_per_s),
                        on_start=lambda trainer: held.update(trainer=trainer, batch=next(iter(trainer.loader()))))
    wall = time.perf_counter() - t0
    steady = rates[warmup:]
    if len(steady) < 5:
        raise CheckFailed(f"only {len(steady)} steps after the {warmup} warm-up steps: raise --steps")
    samples_per_s = len(steady) / sum(1.0 / r for r in steady)       # Σ samples / Σ seconds, equal batches
    trainer, first = held["trainer"], held["batch"]
    flops = training_step_flops(trainer, first) / first["n"]                      # the first step's batch
    compute = resident_batch_rate(trainer, first, max(5, warmup // 3), max(10, len(steady) // 2))
    memory = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    return {"run": str(work / "base"), "config": config, "precision": precision, "steps": steps,
            "warmup_steps_excluded": warmup, "batch_size": batch, "samples_per_s": round(samples_per_s, 1),
            "model_gflops_per_sample": round(flops / 1e9, 3), "achieved_tflops": round(flops * samples_per_s / 1e12, 3),
            "bf16_peak_fraction": round(utilisation(flops, samples_per_s, peak_tflops), 4),
            "resident_batch_samples_per_s": round(compute, 1),
            "resident_batch_bf16_peak_fraction": round(utilisation(flops, compute, peak_tflops), 4),
            "parameters": metrics["parameters"], "wall_s": round(wall, 1),
            "peak_memory_gib": None if memory is None else round(memory, 2)}


def resident_batch_rate(trainer: Any, batch: dict[str, Any], warmup: int, steps: int) -> float:
    """Samples/s of the training step alone: one batch kept on the device, ``steps`` timed optimisation
    steps (forward, backward, AdamW) after ``warmup`` — the data pipeline's share is what
    ``samples_per_s`` loses against it."""
    import torch

    on_device = trainer.to_device(batch)
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)

    def step(i: int) -> None:
        trainer.optimizer.zero_grad(set_to_none=True)
        with trainer.autocast():
            out = trainer.task(on_device, i, torch.Generator().manual_seed(i))
        out.loss.backward()
        trainer.optimizer.step()

    for i in range(warmup):
        step(i)
    sync()
    t0 = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    sync()
    return steps * batch["n"] / (time.perf_counter() - t0)


def distill_student(teacher: Path, work: Path, steps: int, image_size: int = 128, batch: int = 128,
                    device: str = "cuda") -> Path:
    """``mobilevit_xxs`` + the default text/audio students distilled from ``teacher``."""
    from distill.api import distill_run

    out = work / "student"
    distill_run(teacher, out, student="mobilevit", image_size=image_size,
                overrides=[f"train.steps={steps}", f"train.batch_size={batch}", f"train.device={device}",
                           "train.ckpt_every=0", f"train.warmup_steps={min(10, steps)}"])
    return out


def engines(run: Path, work: Path, name: str, eval_size: int) -> dict[str, Any]:
    """TensorRT fp16/int8 engines and the fp32 ONNX graph of the image tower, each through the parity gate."""
    from export.api import export_run
    from export.parity import min_cosine

    common = {"modalities": ["image"], "eval_size": eval_size, "max_drop": 100.0}  # every variant ships; targets judge
    trt = export_run(run, work / f"{name}-trt", "tensorrt", **common)
    export_run(run, work / f"{name}-onnx", "onnx", **common)
    steps = {s["step"]: s for s in trt["steps"]}
    out: dict[str, Any] = {"trt_dir": str(work / f"{name}-trt"), "onnx_dir": str(work / f"{name}-onnx")}
    for p in ("fp16", "int8"):
        s = steps.get(f"tensorrt-{p}")
        if s is None:
            raise CheckFailed(f"{name}: the export report has no tensorrt-{p} step ({sorted(steps)})")
        out[p] = {"min_cosine": round(min_cosine(s), 6), "drop_points": round(float(s["drop"]), 3),
                  "delta": s["delta"], "build": s.get("engines", {}).get("image", {})}
    return out


def latencies(run: Path, built: dict[str, Any], rounds: int) -> dict[str, dict[str, dict[str, float]]]:
    """{backend: {batch: {p50_ms, p95_ms, p99_ms, items_per_s}}} of the image tower."""
    import onnxruntime as ort
    import torch

    from export.tensorrt_backend import TensorRTRunner
    from export.towers import example_feeds, tower_module
    from hybridssl.runs import load_run

    loaded = load_run(run, device="cuda")
    tower = tower_module(loaded.model, "image").cuda()
    sess = ort.InferenceSession(str(Path(built["onnx_dir"]) / "image.onnx"),
                                providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    if sess.get_providers()[0] != "CUDAExecutionProvider":
        raise CheckFailed(f"ONNX Runtime did not place the graph on the GPU (providers {sess.get_providers()})")
    runners = {p: TensorRTRunner(Path(built["trt_dir"]) / f"image.{p}.plan", max(BATCHES)) for p in ("fp16", "int8")}

    def eager(x: np.ndarray, bf16: bool) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            return tower(torch.from_numpy(x).cuda()).float().cpu().numpy()

    out: dict[str, dict[str, dict[str, float]]] = {}
    for b in BATCHES:
        feeds = example_feeds("image", loaded.spec, loaded.tokenizer, batch=b)
        calls = {"pytorch-fp32": partial(eager, feeds["pixels"], False), "pytorch-bf16": partial(eager, feeds["pixels"], True),
                 "ort-cuda-fp32": partial(sess.run, None, feeds),
                 "tensorrt-fp16": partial(runners["fp16"], feeds), "tensorrt-int8": partial(runners["int8"], feeds)}
        for key, fn in calls.items():
            t = time_ms(fn, rounds, warmup=10)
            p50 = float(np.percentile(t, 50))
            out.setdefault(key, {})[str(b)] = {"p50_ms": round(p50, 3), "p95_ms": round(float(np.percentile(t, 95)), 3),
                                               "p99_ms": round(float(np.percentile(t, 99)), 3),
                                               "items_per_s": round(b / p50 * 1e3, 1)}
    return out


def judge(result: dict[str, Any]) -> dict[str, Any]:
    """Each target with the measured value and whether it is met."""
    s = result["models"]["student"]
    speedup = s["latency"]["ort-cuda-fp32"]["32"]["p50_ms"] / s["latency"]["tensorrt-int8"]["32"]["p50_ms"]
    fp16 = min(m["engines"]["fp16"]["min_cosine"] for m in result["models"].values())
    measured = {"base_bf16_peak_fraction": result["train_base"]["bf16_peak_fraction"],
                "base_resident_batch_bf16_peak_fraction": result["train_base"]["resident_batch_bf16_peak_fraction"],
                "student_int8_speedup_vs_ort_cuda_b32": round(speedup, 2),
                "student_int8_drop_points": s["engines"]["int8"]["drop_points"], "fp16_min_cosine": fp16}
    below = ("student_int8_drop_points",)
    return {k: {"target": TARGETS[k], "measured": v, "met": v <= TARGETS[k] if k in below else v >= TARGETS[k]}
            for k, v in measured.items()}


def print_tables(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    g, t = result["gpu"], result["train_base"]
    console.print(f"[bold]{g['name']}[/] · torch {g['torch']} · TensorRT {g['tensorrt']} · ORT {g['onnxruntime']}")
    console.print(f"base training: {t['samples_per_s']} samples/s × {t['model_gflops_per_sample']} GFLOP/sample = "
                  f"{t['achieved_tflops']} TFLOP/s = {100 * t['bf16_peak_fraction']:.1f} % of {g['bf16_dense_peak_tflops']}; "
                  f"the step alone (batch resident on the GPU): {t['resident_batch_samples_per_s']} samples/s = "
                  f"{100 * t['resident_batch_bf16_peak_fraction']:.1f} %")
    for name, m in result["models"].items():
        table = Table(title=f"{name} image tower: latency ms (p50 / p95 / p99), host to host")
        table.add_column("back end")
        for b in BATCHES:
            table.add_column(f"batch {b}", justify="right")
        for key, rows in m["latency"].items():
            table.add_row(key, *(f"{rows[str(b)]['p50_ms']} / {rows[str(b)]['p95_ms']} / {rows[str(b)]['p99_ms']}"
                                 for b in BATCHES))
        console.print(table)
        console.print(f"  fp16 min cosine {m['engines']['fp16']['min_cosine']}, int8 min cosine "
                      f"{m['engines']['int8']['min_cosine']}, int8 drop {m['engines']['int8']['drop_points']} points")
    table = Table(title="targets")
    for col in ("target", "threshold", "measured", "met"):
        table.add_column(col)
    for k, v in result["targets"].items():
        table.add_row(k, str(v["target"]), str(v["measured"]), "yes" if v["met"] else "[red]no[/]")
    console.print(table)


def run_check(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"machine": machine_info(), "gpu": gpu_environment()}
    result["tests"] = junit_summary(args.tests) if args.tests else None
    with tempfile.TemporaryDirectory(prefix="hssl-gpu-") as tmp:
        work = Path(tmp)
        result["train_base"] = train_base(work, args.steps, args.warmup, args.batch_size, args.workers,
                                          result["gpu"]["bf16_dense_peak_tflops"])
        student = distill_student(work / "base", work, args.distill_steps)
        result["models"] = {}
        for name, run in (("student", student), ("base", work / "base")):
            built = engines(run, work, name, args.eval_size)
            result["models"][name] = {"engines": {p: built[p] for p in ("fp16", "int8")},
                                      "latency": latencies(run, built, args.rounds)}
    result["targets"] = judge(result)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--tests", type=Path, help="JUnit XML of `pytest -m gpu` (checked: all ran and passed)")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--distill-steps", type=int, default=100)
    ap.add_argument("--eval-size", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=100)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        result = run_check(args)
    except CheckFailed as e:
        print(f"gpu_check: {e}", file=sys.stderr)
        return 1
    result["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", result["gpu"]["name"]).strip("-").lower()
    path = args.out / f"gpu_check_{slug}.json"
    path.write_text(json.dumps(result, indent=1))
    print_tables(result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
