"""The floors a low-label figure is read against, on the very splits the run's probes use.

* ``raw_input`` — a linear probe on the tower's preprocessed input reduced to a small fixed vector:
  image pixels average-pooled to 16×16 per channel (768 values), an audio log-mel pooled to 16×16,
  a feature sequence's per-channel mean and std over its real frames, a caption's bag of token ids
  (counts over the vocabulary, special tokens dropped, L1-normalised). What a user gets with no
  representation learning at all.
* ``random_init`` — a linear probe on the pooled features of the same architecture, initialised
  and never trained (a hybrid run: :func:`hybridssl.runs.build_model` under ``torch.manual_seed(seed)``;
  another model kind: its own modules' ``reset_parameters``). What the architecture gives for free.

The probe is :func:`hybridssl.evaluation.probes.linear_probe`, as for the run's features; a run
that does not beat both floors by a clear margin has learned little.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from edge_runtime.modalities import is_sequence
from hybridssl.evaluation.finetune import ModalityInputs
from hybridssl.evaluation.probes import linear_probe, summarize

RAW_SIDE = 16
FLOORS = ("raw_input", "random_init")


def raw_vectors(inputs: ModalityInputs, vocab_size: int = 0, special_ids: Sequence[int] = ()) -> np.ndarray:
    """(N, D) float32 raw-input vectors of ``inputs`` (module docstring)."""
    x, m = inputs.x, inputs.modality
    if m in ("image", "audio"):
        return F.adaptive_avg_pool2d(x.float(), RAW_SIDE).flatten(1).numpy()
    if m == "text":
        if vocab_size <= 0:
            raise ValueError("the bag-of-tokens floor needs the tokenizer's vocabulary size")
        ids = x.long().clamp(0, vocab_size - 1)
        keep = inputs.attention if inputs.attention is not None else torch.ones_like(ids, dtype=torch.bool)
        keep = keep & ~torch.isin(ids, torch.as_tensor(list(special_ids), dtype=torch.long))
        bags = torch.zeros(ids.shape[0], vocab_size).scatter_add_(1, ids, keep.float())
        return (bags / bags.sum(1, keepdim=True).clamp_min(1.0)).numpy()
    if is_sequence(m):
        mask = (inputs.attention if inputs.attention is not None else torch.ones(x.shape[:2], dtype=torch.bool)).float()
        n = mask.sum(1, keepdim=True).clamp_min(1.0)                                   # (N, 1)
        mean = (x * mask[..., None]).sum(1) / n                                          # (N, D)
        var = ((x - mean[:, None]) ** 2 * mask[..., None]).sum(1) / n
        return torch.cat([mean, var.sqrt()], 1).numpy()
    raise ValueError(f"no raw-input floor for modality {m!r}")


def untrained_copy(run: Any, seed: int) -> Any:
    """The run's architecture with initial weights (module docstring), in eval mode."""
    torch.manual_seed(seed)
    if str(run.state.get("model_kind", "hybrid")) == "hybrid":
        from hybridssl.runs import build_model

        model = build_model(run.cfg, int(run.state.get("vocab_size", 0)), tuple(run.state["modalities"]))
    else:
        model = copy.deepcopy(run.model)
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return model.eval()


@torch.no_grad()
def pooled_features(model: Any, inputs: ModalityInputs, batch_size: int = 256) -> np.ndarray:
    """(N, W) pooled tower features of ``model`` on ``inputs``."""
    parts = []
    for i in range(0, len(inputs), batch_size):
        attn = None if inputs.attention is None else inputs.attention[i:i + batch_size]
        parts.append(model.forward_features(inputs.modality, inputs.x[i:i + batch_size], attn).float().numpy())
    return np.concatenate(parts)


def floor_report(run: Any, pool: ModalityInputs, test: ModalityInputs,
                 splits: dict[str, list[dict[str, np.ndarray]]], n_classes: int) -> dict[str, Any]:
    """``{"raw_input"|"random_init": {fraction: accuracy / macro-F1 summaries}, "features": {...}}``:
    the floors' linear probes on ``splits`` (fraction → one train/val split of pool dataset positions
    per seed), tested on ``test``."""
    tok = run.tokenizer
    vocab, special = (tok.vocab_size, tok.special_ids) if tok is not None else (0, ())
    random_model = untrained_copy(run, int(run.cfg.train.seed))
    vectors = {"raw_input": (raw_vectors(pool, vocab, special), raw_vectors(test, vocab, special)),
               "random_init": (pooled_features(random_model, pool), pooled_features(random_model, test))}
    row_of = {int(p): r for r, p in enumerate(pool.positions)}
    out: dict[str, Any] = {name: {} for name in FLOORS}
    for name, (px, tx) in vectors.items():
        for fraction, per_seed in splits.items():
            runs = []
            for sp in per_seed:
                if sp["train"].size == 0 or sp["val"].size == 0:
                    continue
                tr = np.array([row_of[int(p)] for p in sp["train"]], dtype=np.int64)
                va = np.array([row_of[int(p)] for p in sp["val"]], dtype=np.int64)
                runs.append(linear_probe(px[tr], pool.labels[tr], px[va], pool.labels[va], tx, test.labels, n_classes))
            out[name][fraction] = ({k: summarize([r[k] for r in runs]) for k in ("accuracy", "macro_f1")}
                                   if runs else {"skipped": "no split could be evaluated"})
    out["features"] = {"raw_input": f"{pool.modality} input reduced to {vectors['raw_input'][0].shape[1]} values",
                       "random_init": f"untrained {pool.modality} tower, pooled features "
                                      f"(W={vectors['random_init'][0].shape[1]})"}
    return out
