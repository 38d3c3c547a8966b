"""Model FLOPs of a training step, and the GPU peak they are measured against (model FLOPs utilisation).

**Model FLOPs** (the MFU convention of PaLM, appendix B): the arithmetic the model needs, counted by
``torch.utils.flop_counter.FlopCounterMode`` over one forward and backward of the task — matrix
products, convolutions and attention at 2 FLOPs per multiply-add; elementwise ops, the optimizer and
any recomputation are not counted. For a linear layer ``(B, i) → (B, o)`` that is ``2·B·i·o``
forward and twice that backward (input and weight gradients): ``6·B·i·o`` per step.

**Utilisation** = FLOPs per sample × samples per second ÷ the device's dense bf16 peak. The peaks
are the vendor's dense (no 2:4 sparsity) bf16 tensor-core figures for the SXM/PCIe part named by
``torch.cuda.get_device_name`` (:data:`BF16_DENSE_TFLOPS`); ``HSSL_PEAK_BF16_TFLOPS`` overrides the
lookup, and an unknown device is a ValueError rather than a guess.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

#: (name fragment, dense bf16 TFLOP/s), first match wins: more specific names first
BF16_DENSE_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989.4),
    ("H200 NVL", 835.5),
    ("H200", 989.4),
    ("H100 NVL", 835.5),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),          # SXM5 / HBM3
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.05),
    ("L4", 121.0),
    ("A10", 125.0),
)
PEAK_ENV = "HSSL_PEAK_BF16_TFLOPS"


def bf16_peak_tflops(device_name: str) -> float:
    """The dense bf16 peak of ``device_name`` in TFLOP/s (``HSSL_PEAK_BF16_TFLOPS`` wins)."""
    if os.environ.get(PEAK_ENV):
        return float(os.environ[PEAK_ENV])
    for fragment, tflops in BF16_DENSE_TFLOPS:
        if fragment.lower() in device_name.lower():
            return tflops
    raise ValueError(f"no bf16 peak known for {device_name!r}: set {PEAK_ENV}=<dense bf16 TFLOP/s of the device>")


def count_flops(fn: Callable[[], Any]) -> int:
    """Model FLOPs of everything ``fn`` runs (forward and, if it calls it, backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def training_step_flops(trainer: Any, batch: dict[str, Any]) -> int:
    """Model FLOPs of one forward + backward of ``trainer``'s task on ``batch`` (a collated batch,
    on the CPU), under the trainer's autocast; the gradients are cleared afterwards."""

    def step() -> None:
        gen = torch.Generator().manual_seed(0)
        with trainer.autocast():
            out = trainer.task(trainer.to_device(batch), 0, gen)
        out.loss.backward()

    try:
        return count_flops(step)
    finally:
        trainer.optimizer.zero_grad(set_to_none=True)


def utilisation(flops_per_sample: float, samples_per_s: float, peak_tflops: float) -> float:
    """Achieved model FLOP/s as a fraction of the peak."""
    if peak_tflops <= 0:
        raise ValueError(f"the peak must be positive, got {peak_tflops}")
    return flops_per_sample * samples_per_s / (peak_tflops * 1e12)
