"""The bundle's manifest (:class:`edge_runtime.schema.Manifest`) of a finished export: towers and
variants with their files, the preprocessing spec, tokenizer, labels, the learned logit scale and
the provenance of the checkpoint."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from edge_runtime.schema import (
    DEFAULT_INFERENCE_PRECISION,
    PRECISIONS,
    TOKENIZER_FILE,
    Manifest,
    TokenizerEntry,
    TowerEntry,
)
from export.bundle import labels_entry
from export.session import ExportSession


def source_entry(loaded, run_dir: Path) -> dict[str, Any]:
    """Provenance for the manifest: run, kind, model, step, held-out metrics of the run."""
    state = loaded.state
    kind = "student" if state.get("model_kind") == "student" else "teacher"
    metrics = None
    path = Path(run_dir) / "metrics.json"
    if path.is_file():
        held = json.loads(path.read_text()).get("heldout", {})
        metrics = {"retrieval_R@1": {k: v["R@1"] for k, v in held.get("retrieval", {}).items()},
                   "zero_shot_accuracy": {k: v["accuracy"] for k, v in held.get("zero_shot", {}).items()}}
    model = state.get("student") if kind == "student" else "hybrid"
    return {"run_dir": str(Path(run_dir).absolute()), "kind": kind, "model": model, "step": state.get("step"),
            "metrics": metrics}


def learned_logit_scale(run_dir: Path, checkpoint: str | None, cfg) -> float | None:
    """The contrastive logit scale 1/T of the exported checkpoint, as the run's
    :class:`hybridssl.losses.temperature.LearnableTemperature` computes it (``exp(log_scale)``
    clamped to its range); None for a checkpoint without one (a student run). Only that one tensor is
    read from the file."""
    from safetensors import safe_open

    from hybridssl.checkpoint import latest_checkpoint
    from hybridssl.losses.temperature import LearnableTemperature

    folder = Path(run_dir) / "checkpoints" / checkpoint if checkpoint else latest_checkpoint(Path(run_dir))
    if folder is None or not (folder / "model.safetensors").is_file():
        return None
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        if "temperature.log_scale" not in f.keys():
            return None
        log_scale = f.get_tensor("temperature.log_scale")
    temperature = LearnableTemperature(min_temperature=cfg.loss.min_temperature, learnable=False)
    temperature.log_scale.copy_(log_scale)
    return round(float(temperature()), 4)



def static_entry(static: dict, precision: str, m: str) -> dict[str, dict[str, str]] | None:
    per = static.get(precision, {}).get(m)
    return {str(b): {"model": p.name} for b, p in sorted(per.items())} if per else None


def hssl_version() -> str:
    import importlib.metadata as md

    try:
        return md.version("hssl")
    except md.PackageNotFoundError:
        return "0.1.0"


def build_manifest(ex: ExportSession, run_dir: Path, target: str, default: str, shipped: dict,
                   static: dict | None = None) -> Manifest:
    """The manifest of the bundle ``ex`` is writing (``files`` is filled in by the writer)."""
    from export.targets import TARGET_STEPS

    loaded, static = ex.loaded, static or {}
    backend = TARGET_STEPS[target].backend
    # OpenVINO: the inference precision the parity gate measured, so no CPU picks another (bf16 on AMX)
    hint = DEFAULT_INFERENCE_PRECISION if backend == "openvino" else None

    def entry(m: str, p: str, signature: bool) -> TowerEntry:
        io = ex.io[m]
        return TowerEntry({r: path.name for r, path in shipped[p][m].items()}, backend,
                          precision=p if signature else None, inference_precision=hint,
                          static=static_entry(static, p, m), inputs=io.inputs if signature else None,
                          outputs=io.outputs if signature else None)

    variants = {m: {p: entry(m, p, False) for p in PRECISIONS if p in shipped and p != default} for m in ex.modalities}
    return Manifest(
        target=target, precision=default, embed_dim=ex.embed_dim,
        modalities={m: entry(m, default, True) for m in ex.modalities},
        variants={m: v for m, v in variants.items() if v} or None,
        preprocessing=loaded.spec.to_dict(),
        tokenizer=TokenizerEntry(TOKENIZER_FILE, loaded.spec.text.max_length) if "text" in ex.modalities else None,
        labels=labels_entry(ex.held.prompts), head=None,
        logit_scale=learned_logit_scale(run_dir, ex.opts.checkpoint, loaded.cfg),
        source=source_entry(loaded, run_dir),
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), hssl_version=hssl_version())
