"""What machine a benchmark ran on: CPU model, core count and the ISA extensions that decide which
kernels (and precisions) are fast — AVX2, AVX-512, VNNI, AMX on x86; NEON / dot-product / bf16 on Arm.
Torch-free; every benchmark writes :func:`machine_info` into its JSON."""

from __future__ import annotations

import os
import platform
from pathlib import Path

#: /proc/cpuinfo flags worth recording (x86 then Arm names)
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
             "asimd", "asimddp", "asimdhp", "sve", "sve2", "bf16", "i8mm")


def cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str, set[str]]:
    model, flags = "", set[str]()
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, flags


def machine_info() -> dict[str, object]:
    """``{"cpu": model, "cores": n, "isa": [flags present], "platform": ..., "machine": arch}``."""
    model, flags = cpuinfo()
    return {"cpu": model or platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "isa": [f for f in ISA_FLAGS if f in flags], "platform": platform.platform(),
            "machine": platform.machine()}
