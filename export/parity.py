"""The parity gate: an exported artifact, run by its real back end, against the PyTorch model.

For every export step the same held-out items (the run's own validation split, preprocessed with
the run's spec and tokenizer) are embedded by PyTorch (the reference) and by the step's back end
(a :class:`export.backends.RunnerModel`), with ``hybridssl.evaluation.embed.extract_embeddings``;
then

* per tower m, the cosine similarity of matching rows,
  ``cos_i = ⟨r_i, c_i⟩ / (‖r_i‖‖c_i‖)`` over the n_m items carrying m → ``min`` and ``mean``;
* task metrics (``hybridssl.evaluation.heldout``): retrieval R@1 of every modality pair and
  direction, and zero-shot accuracy of every non-text tower from the dataset's class prompts
  (prompts embedded by the step's own text tower), in points (%);
* ``delta[k] = metric_step[k] − metric_torch[k]`` and the step's ``drop = max(0, max_k −delta[k])``.

Gates: an fp32 step must reach ``min cos ≥ 0.9999`` on every tower (:class:`ParityError`); any step
with ``drop > max_drop`` trips the accuracy guard (:class:`AccuracyGuardError`). Non-finite
embeddings fail both. Every step's record goes into ``report.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from export.data import batch_feeds
from export.towers import interface_args
from hybridssl.data.batching import Collator, SafeDataset, merge_batch_report
from hybridssl.data.sample import SkipReport
from hybridssl.evaluation.embed import Embeddings
from hybridssl.evaluation.heldout import class_prompts, retrieval_report, zero_shot_report
from hybridssl.preprocessing import PreprocessSpec
from hybridssl.tokenizer import TextTokenizer

FP32_MIN_COSINE = 0.9999


class ParityError(ValueError):
    """An fp32 artifact does not reproduce the PyTorch embeddings."""


class AccuracyGuardError(ValueError):
    """A quantized/converted artifact loses more than ``max_drop`` points of a task metric."""


@dataclass
class HeldOut:
    """The held-out items every step is evaluated on, preprocessed once into collated batches
    (``hybridssl.data.batching.Collator`` layout; the audio front end dominates the cost, so it is not
    repeated per step)."""

    batches: list[dict[str, Any]]
    tokenizer: TextTokenizer | None
    prompts: dict[str, list[str]] | None

    @classmethod
    def build(cls, dataset, spec: PreprocessSpec, tokenizer: TextTokenizer | None, modalities: tuple[str, ...],
              size: int, batch_size: int = 64) -> "HeldOut":
        if size < 2:
            raise ValueError(f"the held-out evaluation needs at least 2 items, got eval_size={size}")
        n = min(int(size), len(dataset))
        collate, safe = Collator(spec, tokenizer, modalities), SafeDataset(dataset)
        batches = [collate([safe[j] for j in range(i, min(n, i + batch_size))]) for i in range(0, n, batch_size)]
        return cls(batches, tokenizer, class_prompts(dataset, getattr(dataset, "label_names", None)))

    @property
    def size(self) -> int:
        return sum(b["n"] for b in self.batches)


@dataclass
class Evaluation:
    embeddings: Embeddings
    metrics: dict[str, float] = field(default_factory=dict)   # "R@1 image->text" / "zero-shot image" → %


@torch.inference_mode()
def embed_heldout(model: Any, held: HeldOut) -> Embeddings:
    """``hybridssl.evaluation.embed.extract_embeddings`` over the pre-collated held-out batches, through
    the tower interface's ``embed`` only (the PyTorch model and a :class:`RunnerModel` alike)."""
    keys: list[str] = []
    labels: list[np.ndarray] = []
    embs: dict[str, list[np.ndarray]] = {}
    pos: dict[str, list[np.ndarray]] = {}
    report = SkipReport()
    for batch in held.batches:
        merge_batch_report(report, batch)
        offset = len(keys)
        keys += batch["keys"]
        labels.append(batch["label"].numpy())
        for m in model.modalities:
            feeds = batch_feeds(batch, m)
            if feeds is None:
                continue
            e = model.embed(m, *interface_args(feeds))
            embs.setdefault(m, []).append(e.float().cpu().numpy())                  # (b, E)
            pos.setdefault(m, []).append(batch[f"{m}_idx"].numpy() + offset)
    return Embeddings(keys=keys, labels=np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64),
                      by_modality={m: np.concatenate(v) for m, v in embs.items()},
                      index={m: np.concatenate(v) for m, v in pos.items()}, report=report)


def evaluate(model: Any, held: HeldOut) -> Evaluation:
    """Embed the held-out items with ``model`` (tower interface) and compute the task metrics."""
    was_training = model.training
    model.eval()
    try:
        emb = embed_heldout(model, held)
    finally:
        model.train(was_training)
    if not emb.by_modality:
        raise ValueError(f"no held-out item could be embedded (every item was skipped): {emb.report.to_dict()}")
    metrics = {f"R@1 {k}": float(v["R@1"]) for k, v in retrieval_report(emb).items()}
    zs = zero_shot_report(model, held.tokenizer, emb, held.prompts) if _finite(emb) else {}
    metrics.update({f"zero-shot {m}": float(v["accuracy"]) for m, v in zs.items()})
    return Evaluation(emb, metrics)


def _finite(emb: Embeddings) -> bool:
    return all(np.isfinite(x).all() for x in emb.by_modality.values())


def row_cosines(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of two (n, E) arrays → (n,); non-finite rows give NaN."""
    if ref.shape != got.shape:
        raise ValueError(f"embeddings to compare have different shapes: {ref.shape} vs {got.shape}")
    num = np.einsum("ne,ne->n", ref.astype(np.float64), got.astype(np.float64))            # (n,)
    den = np.linalg.norm(ref.astype(np.float64), axis=1) * np.linalg.norm(got.astype(np.float64), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def cosine_stats(ref: Embeddings, got: Embeddings) -> dict[str, dict[str, float]]:
    """Per tower {min, mean, n, nonfinite} of the row cosines (module docstring)."""
    out: dict[str, dict[str, float]] = {}
    for m, r in ref.by_modality.items():
        if m not in got.by_modality:
            raise ValueError(f"the exported model produced no {m!r} embeddings")
        if not np.array_equal(ref.index[m], got.index[m]):
            raise ValueError(f"{m}: reference and exported embeddings cover different items")
        cos = row_cosines(r, got.by_modality[m])
        bad = int((~np.isfinite(cos)).sum())
        out[m] = {"min": float(np.nanmin(cos)) if bad < len(cos) else float("nan"),
                  "mean": float(np.nanmean(cos)) if bad < len(cos) else float("nan"),
                  "n": int(len(cos)), "nonfinite": bad}
    return out


def compare(reference: Evaluation, candidate: Evaluation) -> dict[str, Any]:
    """Cosines, metrics, deltas and the worst drop of ``candidate`` against ``reference``."""
    cosine = cosine_stats(reference.embeddings, candidate.embeddings)
    delta = {k: candidate.metrics.get(k, float("nan")) - v for k, v in reference.metrics.items()}
    drops = [-d if math.isfinite(d) else math.inf for d in delta.values()]
    return {
        "cosine": cosine,
        "metrics": dict(candidate.metrics),
        "delta": delta,
        "drop": max([0.0, *drops]),
    }


def min_cosine(comparison: dict[str, Any]) -> float:
    """The smallest per-tower minimum cosine (NaN/non-finite rows count as −1)."""
    worst = 1.0
    for c in comparison["cosine"].values():
        worst = min(worst, -1.0 if c["nonfinite"] or not math.isfinite(c["min"]) else c["min"])
    return worst


def check_parity(step: str, comparison: dict[str, Any], threshold: float = FP32_MIN_COSINE) -> None:
    """Raise :class:`ParityError` unless every tower's min cosine ≥ ``threshold``."""
    bad = {m: c for m, c in comparison["cosine"].items()
           if c["nonfinite"] or not math.isfinite(c["min"]) or c["min"] < threshold}
    if bad:
        detail = ", ".join(f"{m} min cosine {c['min']:.6f}" + (f" ({c['nonfinite']} non-finite)" if c["nonfinite"] else "")
                           for m, c in bad.items())
        raise ParityError(f"{step}: the exported graph does not match PyTorch ({detail}; need ≥ {threshold})")


def check_drop(step: str, comparison: dict[str, Any], max_drop: float) -> None:
    """Raise :class:`AccuracyGuardError` when the step loses more than ``max_drop`` points."""
    if any(c["nonfinite"] for c in comparison["cosine"].values()):
        raise AccuracyGuardError(f"{step}: the exported model produces non-finite embeddings")
    if comparison["drop"] > max_drop:
        worst = min(comparison["delta"].items(), key=lambda kv: kv[1] if math.isfinite(kv[1]) else -math.inf)
        raise AccuracyGuardError(
            f"{step}: accuracy guard tripped — {worst[0]} dropped {-worst[1]:.2f} points "
            f"(max allowed {max_drop:g})")
