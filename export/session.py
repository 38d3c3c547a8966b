"""One export in progress (:class:`ExportSession`): the loaded run, the held-out evaluation, the
bundle being written and the report's step records; steps 1–2 (ONNX export and optimisation) and
the parity gate every step passes through (:meth:`ExportSession.evaluate_step`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.schema import model_file_name, tower_io
from export.backends import OrtRunner, Runner, RunnerModel
from export.bundle import BundleWriter
from export.data import calibration_feeds, run_splits
from export.onnx_graph import check_onnx, export_onnx, optimize_onnx
from export.options import ExportOptions
from export.parity import FP32_MIN_COSINE, Evaluation, HeldOut, check_drop, check_parity, compare, evaluate
from export.towers import embed_dim_of, example_feeds, torch_embed, tower_module

Progress = Callable[[str, int, int], None]            # (what is running, steps done, steps total)


def file_sizes(paths: dict[str, dict[str, Path]]) -> dict[str, dict[str, Any]]:
    """{modality: {"files": {role: name}, "bytes": total}}."""
    return {m: {"files": {role: p.name for role, p in files.items()}, "bytes": sum(p.stat().st_size for p in files.values())}
            for m, files in paths.items()}


class ExportSession:
    """One export in progress: the loaded run, held-out evaluation, the bundle being written, the report."""

    def __init__(self, loaded, modalities: tuple[str, ...], held: HeldOut, writer: BundleWriter, scratch: Path,
                 opts: ExportOptions, progress: Progress | None, total_steps: int) -> None:
        self.loaded, self.modalities, self.held = loaded, modalities, held
        self.writer, self.scratch, self.opts = writer, scratch, opts
        self.progress, self.total, self.done = progress, total_steps, 0
        self.spec, self.tokenizer = loaded.spec, loaded.tokenizer
        self.embed_dim = embed_dim_of(loaded.model, modalities[0], self.spec, self.tokenizer)
        self.io = {m: tower_io(m, self.spec, self.embed_dim) for m in modalities}
        self.steps: list[dict[str, Any]] = []
        self.trt_checks: dict[str, Any] = {}                 # TensorRT graph checks, when that target ran
        self.reference: Evaluation | None = None
        self._calibration: dict[str, list[dict[str, np.ndarray]]] = {}

    # ---------------------------------------------------------------- bookkeeping
    def tick(self, what: str) -> None:
        if self.progress:
            self.progress(what, self.done, self.total)

    def advance(self) -> None:
        self.done += 1
        if self.progress:
            self.progress("", self.done, self.total)

    def torch_reference(self) -> Evaluation:
        self.tick("PyTorch reference")
        model = self.loaded.model
        runners: dict[str, Runner] = {m: partial(torch_embed, model, m) for m in self.modalities}
        ref = evaluate(RunnerModel(runners), self.held)
        for m, e in ref.embeddings.by_modality.items():
            if not np.isfinite(e).all():
                raise ValueError(f"{self.loaded.run_dir}: the PyTorch {m} tower produces non-finite embeddings "
                                 "(corrupt or diverged weights)")
        self.reference = ref
        self.advance()
        return ref

    def calibration(self, modality: str) -> list[dict[str, np.ndarray]]:
        if modality not in self._calibration:
            data = self.opts.calibration_data
            if data is None:
                data = run_splits(self.loaded.cfg)[0]
            self._calibration[modality] = calibration_feeds(data, modality, self.spec, self.tokenizer,
                                                            self.opts.calibration_size, batch_size=16)
        return self._calibration[modality]

    def evaluate_step(self, step: str, backend: str, precision: str, runners: dict[str, Runner],
                      files: dict[str, dict[str, Path]], t0: float, extra: dict[str, Any] | None = None,
                      strict: bool = True) -> dict[str, Any]:
        """Run the parity gate of one step and record it: fp32 steps must reach the cosine gate (their
        metric changes are recorded, not gated: they are the baseline), other precisions the accuracy
        guard (raised only when ``strict``; else the record says ``passed: False``)."""
        self.tick(f"{step}: parity")
        assert self.reference is not None
        result = compare(self.reference, evaluate(RunnerModel(runners), self.held))
        record = {"step": step, "backend": backend, "precision": precision, "files": file_sizes(files), **result,
                  "seconds": round(time.perf_counter() - t0, 2), **(extra or {})}
        record["gate"] = f"min cosine ≥ {FP32_MIN_COSINE}" if precision == "fp32" else \
            f"drop ≤ {self.opts.max_drop:g} points"
        try:
            if precision == "fp32":
                check_parity(step, result)
            else:
                check_drop(step, result, self.opts.max_drop)
            record["passed"] = True
        except ValueError as e:
            record["passed"], record["error"] = False, str(e)
            self.steps.append(record)
            if strict or precision == "fp32":
                raise
        else:
            self.steps.append(record)
        self.advance()
        return record

    # ---------------------------------------------------------------- ONNX
    def onnx_fp32(self, final_dir: Path) -> dict[str, Path]:
        """Steps 1–2: export and optimise every tower; the optimised graphs land in ``final_dir``."""
        t0 = time.perf_counter()
        raw: dict[str, Path] = {}
        for m in self.modalities:
            self.tick(f"export {m} tower")
            feeds = example_feeds(m, self.spec, self.tokenizer)
            raw[m] = export_onnx(tower_module(self.loaded.model, m), self.io[m], feeds, self.scratch / f"{m}.raw.onnx",
                                 exporter=self.opts.exporter, opset=self.opts.opset)
            check_onnx(raw[m], self.io[m])
        threads = self.opts.threads
        self.evaluate_step("export", "onnxruntime", "fp32", {m: OrtRunner(p, threads) for m, p in raw.items()},
                           {m: {"model": p} for m, p in raw.items()}, t0,
                           {"exporter": self.opts.exporter, "opset": self.opts.opset})
        t0 = time.perf_counter()
        final: dict[str, Path] = {}
        for m in self.modalities:
            self.tick(f"optimise {m} graph")
            final[m] = optimize_onnx(raw[m], final_dir / model_file_name(m, "onnx", "fp32")["model"])
            check_onnx(final[m], self.io[m])
        self.evaluate_step("optimize", "onnxruntime", "fp32", {m: OrtRunner(p, threads) for m, p in final.items()},
                           {m: {"model": p} for m, p in final.items()}, t0, {"optimizer": "onnxscript"})
        return final
