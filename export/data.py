"""Real data for export: calibration feeds from training items, and the run's held-out split.

* :func:`run_splits` — the run's own (train, held-out) datasets, exactly as training built them
  (``hybridssl.data.splits.build_datasets`` with the run's seed; nothing is written to the run).
* :func:`calibration_feeds` — bundle feeds (name → array, see :mod:`export.towers`) of one modality,
  built from real items with the run's preprocessing and tokenizer (``hybridssl.data.batching.Collator``):
  ``pixels`` (B, 3, S, S), ``input_ids``/``attention_mask`` (B, L) int64, ``log_mel`` (B, 1, M, T).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from export.towers import torch_to_feeds
from hybridssl.data.base import MultimodalDataset
from hybridssl.data.batching import Collator, SafeDataset, model_inputs
from hybridssl.data.splits import build_datasets
from hybridssl.preprocessing import PreprocessSpec
from hybridssl.tokenizer import TextTokenizer


def run_splits(cfg) -> tuple[MultimodalDataset, MultimodalDataset]:
    """(train, held-out) datasets of a run config (``RunConfig``), as training built them."""
    return build_datasets(cfg.data, cfg.train.seed, None)


def batch_feeds(batch: dict[str, Any], modality: str) -> dict[str, np.ndarray] | None:
    """A collated batch (``Collator`` layout) → bundle feeds of ``modality``, or None when absent."""
    if modality == "text":
        if "text_ids" not in batch:
            return None
        return {"input_ids": batch["text_ids"].numpy().astype(np.int64),
                "attention_mask": batch["text_attn"].numpy().astype(np.int64)}
    inputs = model_inputs(batch, modality)
    if inputs is None:
        return None
    return torch_to_feeds(modality, *inputs)


def calibration_feeds(dataset: MultimodalDataset, modality: str, spec: PreprocessSpec,
                      tokenizer: TextTokenizer | None, size: int, batch_size: int = 16) -> list[dict[str, np.ndarray]]:
    """Up to ``size`` preprocessed items of ``modality`` from ``dataset``, in batches of ``batch_size``.

    Items without the modality (or that fail to load) are passed over; an empty result is an error."""
    if size < 1 or batch_size < 1:
        raise ValueError(f"calibration size and batch size must be positive, got {size} and {batch_size}")
    collate = Collator(spec, tokenizer, (modality,))
    safe = SafeDataset(dataset)
    out: list[dict[str, np.ndarray]] = []
    taken, i, n = 0, 0, len(dataset)
    while taken < size and i < n:
        chunk = [safe[j] for j in range(i, min(n, i + batch_size))]
        i += len(chunk)
        feeds = batch_feeds(collate(chunk), modality)
        if feeds is None:
            continue
        keep = min(size - taken, len(next(iter(feeds.values()))))
        out.append({k: v[:keep] for k, v in feeds.items()})
        taken += keep
    if not out:
        raise ValueError(f"no usable {modality} items for calibration in {getattr(dataset, 'name', 'the dataset')} "
                         f"({n} items looked at)")
    return out


def split_feeds(feeds: list[dict[str, np.ndarray]], batch_size: int) -> list[dict[str, np.ndarray]]:
    """Re-batch a list of feed dicts into batches of at most ``batch_size`` rows."""
    merged = {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}
    n = len(next(iter(merged.values())))
    return [{k: v[i : i + batch_size] for k, v in merged.items()} for i in range(0, n, batch_size)]
