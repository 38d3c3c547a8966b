"""One OpenVINO ``Core`` per process, and a guard for the signal stack OpenVINO swaps.

Why: when a ``Core`` first loads its CPU plugin it replaces the calling thread's alternate signal
stack (``sigaltstack``) with one of its own, and when the Core is destroyed it "restores" the stack
it found. Two Cores destroyed in creation order therefore leave the thread pointing at the first
Core's stack, already freed. The next signal that is delivered on the alternate stack — every
Python-level handler is installed with ``SA_ONSTACK``: SIGINT (Ctrl-C), the SIGCHLD handler that
``DataLoader(num_workers>0)`` installs, faulthandler — then kills the process with SIGSEGV (exit
139, ``si_addr=0``), long after the Cores are gone.

The fix at the root: everything in hssl compiles through :func:`core`, a single Core that is never
freed, so its stack stays valid for the life of the process. Code that cannot be told which Core
to use (NNCF makes and drops its own) runs inside :func:`preserve_signal_stack`, which puts back,
afterwards, the alternate stack that was in force before it (the shared Core's own).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from edge_runtime.schema import DEFAULT_INFERENCE_PRECISION, INFERENCE_PRECISIONS


def compile_config(threads: int | None, inference_precision: str | None = None) -> dict[str, str]:
    """The CPU ``compile_model`` config hssl uses everywhere: latency hint, one stream, ``threads``
    inference threads (None/0: OpenVINO's choice) and the inference precision, always explicit
    (None: :data:`DEFAULT_INFERENCE_PRECISION`)."""
    inference_precision = inference_precision or DEFAULT_INFERENCE_PRECISION
    if inference_precision not in INFERENCE_PRECISIONS:
        raise ValueError(f"unknown OpenVINO inference precision {inference_precision!r}; valid: {INFERENCE_PRECISIONS}")
    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "INFERENCE_PRECISION_HINT": inference_precision}
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(int(threads))
    return config


@lru_cache(maxsize=None)
def core() -> Any:
    """The process's one ``openvino.Core`` (created on first use, never freed)."""
    import openvino as ov

    shared = ov.Core()
    shared.get_versions("CPU")  # load the CPU plugin now: its signal stack is installed once, here
    return shared


class _StackT(ctypes.Structure):
    """``stack_t`` of <signal.h> (Linux and macOS share this field order)."""

    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@lru_cache(maxsize=None)
def _sigaltstack() -> Any | None:
    """libc's ``sigaltstack`` or None where there is none (Windows)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.sigaltstack
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.POINTER(_StackT), ctypes.POINTER(_StackT)]
    fn.restype = ctypes.c_int
    return fn


def signal_stack() -> tuple[int, int, int] | None:
    """The calling thread's alternate signal stack as (address, flags, size); None if unknown."""
    fn = _sigaltstack()
    if fn is None:
        return None
    current = _StackT()
    if fn(None, ctypes.byref(current)) != 0:
        return None
    return int(current.ss_sp or 0), int(current.ss_flags), int(current.ss_size)


@contextlib.contextmanager
def preserve_signal_stack() -> Iterator[None]:
    """Run a block that may create and destroy OpenVINO Cores, then restore the alternate signal
    stack that was in force before it (after collecting the Cores the block dropped)."""
    core()  # the stack saved below is then the shared Core's, valid for the life of the process
    fn = _sigaltstack()
    before = _StackT()
    saved = fn is not None and fn(None, ctypes.byref(before)) == 0
    try:
        yield
    finally:
        if saved:
            gc.collect()  # Cores the block dropped "restore" their stacks now, not after ours
            # flags as read, less SS_ONSTACK (1: "running on it now", reported but never set)
            assert fn is not None
            fn(ctypes.byref(_StackT(before.ss_sp, before.ss_flags & ~1, before.ss_size)), None)
