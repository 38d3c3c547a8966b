"""``scripts/gpu_check.sh`` and ``benchmarks/gpu_check.py`` without a GPU: they stop with one line and a
non-zero status instead of reporting anything; the JUnit gate refuses skipped, failed or absent tests;
the targets are judged from the measured values."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the check would run for real")
def test_benchmark_without_a_gpu_is_one_line_and_exit_1(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == "gpu_check: no CUDA device visible to PyTorch"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="nvidia-smi is present")
def test_script_without_a_gpu_stops_before_installing(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "gpu_check: no NVIDIA GPU here (nvidia-smi is missing or sees no device)"
    assert not (ROOT / ".venv-gpu").exists() and not (tmp_path / "out").exists()


def _junit(tmp_path, **counts) -> Path:
    attrs = " ".join(f'{k}="{v}"' for k, v in {"tests": 2, "failures": 0, "errors": 0, "skipped": 0, **counts}.items())
    path = tmp_path / "t.xml"
    path.write_text(f'<?xml version="1.0"?><testsuites><testsuite name="pytest" {attrs}></testsuite></testsuites>')
    return path


def test_junit_gate(tmp_path):
    gc = _gpu_check()
    assert gc.junit_summary(_junit(tmp_path)) == {"tests": 2, "failures": 0, "errors": 0, "skipped": 0}
    for bad in ({"skipped": 1}, {"failures": 1}, {"errors": 1}, {"tests": 0}):
        with pytest.raises(gc.CheckFailed, match="every one must run and pass"):
            gc.junit_summary(_junit(tmp_path, **bad))


def test_targets_are_judged_from_the_measurements():
    gc = _gpu_check()

    def model(ort_ms: float, int8_ms: float, fp16_cos: float, drop: float) -> dict:
        lat = {"ort-cuda-fp32": {"32": {"p50_ms": ort_ms}}, "tensorrt-int8": {"32": {"p50_ms": int8_ms}}}
        return {"latency": lat, "engines": {"fp16": {"min_cosine": fp16_cos}, "int8": {"drop_points": drop}}}

    result = {"train_base": {"bf16_peak_fraction": 0.43, "resident_batch_bf16_peak_fraction": 0.5},
              "models": {"student": model(9.0, 2.0, 0.9995, 0.4), "base": model(30.0, 12.0, 0.9989, 2.0)}}
    targets = gc.judge(result)
    assert targets["base_bf16_peak_fraction"]["met"]
    assert targets["student_int8_speedup_vs_ort_cuda_b32"] == {"target": 3.0, "measured": 4.5, "met": True}
    assert targets["student_int8_drop_points"]["met"]
    assert targets["fp16_min_cosine"] == {"target": 0.999, "measured": 0.9989, "met": False}   # the base engine's


def test_training_and_distillation_stages_run_on_the_cpu(tmp_path):
    """The stages that need no TensorRT, on the tiny preset: what the GPU run calls works before it gets a GPU."""
    gc = _gpu_check()
    t = gc.train_base(tmp_path, steps=8, warmup=2, batch=8, workers=0, peak_tflops=1.0, config="tiny", device="cpu",
                      precision="fp32")
    assert t["samples_per_s"] > 0 and t["model_gflops_per_sample"] > 0 and t["peak_memory_gib"] is None
    assert t["resident_batch_samples_per_s"] > 0 and t["resident_batch_bf16_peak_fraction"] > 0
    assert t["bf16_peak_fraction"] == pytest.approx(t["achieved_tflops"], rel=0.01, abs=1e-3)   # peak 1 TFLOP/s
    student = gc.distill_student(tmp_path / "base", tmp_path, steps=2, image_size=64, batch=8, device="cpu")
    assert (student / "metrics.json").is_file()


def test_tables_print_every_measured_field(capsys):
    gc = _gpu_check()
    lat = {k: {str(b): {"p50_ms": 1.0, "p95_ms": 1.5, "p99_ms": 2.0, "items_per_s": b * 1e3} for b in gc.BATCHES}
           for k in ("pytorch-fp32", "pytorch-bf16", "ort-cuda-fp32", "tensorrt-fp16", "tensorrt-int8")}
    eng = {"fp16": {"min_cosine": 0.9996, "drop_points": 0.0}, "int8": {"min_cosine": 0.99, "drop_points": 0.5}}
    result = {"gpu": {"name": "NVIDIA H200", "torch": "2", "tensorrt": "10", "onnxruntime": "1", "bf16_dense_peak_tflops": 989.4},
              "train_base": {"samples_per_s": 900.0, "model_gflops_per_sample": 400.0, "achieved_tflops": 360.0,
                             "bf16_peak_fraction": 0.364, "resident_batch_samples_per_s": 1200.0,
                             "resident_batch_bf16_peak_fraction": 0.485},
              "models": {"student": {"latency": lat, "engines": eng}, "base": {"latency": lat, "engines": eng}}}
    result["targets"] = gc.judge(result)
    gc.print_tables(result)
    out = capsys.readouterr().out
    assert "36.4 % of 989.4" in out and "student image tower" in out and "base_bf16_peak_fraction" in out
