"""Batched embedding extraction under inference mode: extract once, evaluate many.

``extract_embeddings`` walks a dataset (bad items skipped and counted, as in training) and returns
per-modality L2-normalised joint embeddings ``forward_head(forward_features(x))`` (n_m, E) and the
pooled tower features ``forward_features(x)`` (n_m, W) they come from — the input of frozen probes,
as in CLIP's and MAE's linear-probe protocols — with the batch positions they belong to, plus keys
and labels for every kept item.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader

from hybridssl.data.batching import Collator, SafeDataset, merge_batch_report, model_inputs
from hybridssl.data.sample import SkipReport
from hybridssl.models.interface import TowerModel
from hybridssl.preprocessing import PreprocessSpec
from hybridssl.tokenizer import TextTokenizer


@dataclass
class Embeddings:
    keys: list[str]
    labels: np.ndarray                                            # (n,) −1 = unlabeled
    by_modality: dict[str, np.ndarray] = field(default_factory=dict)  # m → (n_m, E)
    index: dict[str, np.ndarray] = field(default_factory=dict)        # m → (n_m,) item positions
    features: dict[str, np.ndarray] = field(default_factory=dict)     # m → (n_m, W) pooled tower features
    report: SkipReport = field(default_factory=SkipReport)
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (n,) dataset positions, −1 untagged

    def paired(self, a: str, b: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Embeddings of the items that carry both a and b, row-aligned, with their keys."""
        if a not in self.index or b not in self.index:
            return np.zeros((0, 0)), np.zeros((0, 0)), []
        pos_b = {int(p): j for j, p in enumerate(self.index[b])}
        rows = [(i, pos_b[int(p)]) for i, p in enumerate(self.index[a]) if int(p) in pos_b]
        ia = np.array([r[0] for r in rows], dtype=np.int64)
        ib = np.array([r[1] for r in rows], dtype=np.int64)
        keys = [self.keys[int(self.index[a][i])] for i in ia]
        return self.by_modality[a][ia], self.by_modality[b][ib], keys


@torch.inference_mode()
def embed_texts(model: TowerModel, tokenizer: TextTokenizer, texts: list[str], batch_size: int = 256) -> np.ndarray:
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(texts), batch_size):
        ids, attn = tokenizer.encode(texts[i : i + batch_size])
        out.append(model.embed("text", torch.from_numpy(ids).to(device), torch.from_numpy(attn).to(device)).float().cpu())
    return torch.cat(out).numpy()


@torch.inference_mode()
def extract_embeddings(model: TowerModel, dataset, spec: PreprocessSpec, tokenizer: TextTokenizer | None,
                       limit: int | None = None, batch_size: int = 128, num_workers: int = 0) -> Embeddings:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n = len(dataset) if limit is None else min(limit, len(dataset))
    idx = list(range(n))
    batches = [idx[i : i + batch_size] for i in range(0, n, batch_size)]
    loader = DataLoader(SafeDataset(dataset), batch_sampler=batches,
                        collate_fn=Collator(spec, tokenizer, model.modalities), num_workers=num_workers)
    keys: list[str] = []
    labels: list[np.ndarray] = []
    positions: list[np.ndarray] = []
    embs: dict[str, list[np.ndarray]] = {}
    feats: dict[str, list[np.ndarray]] = {}
    pos: dict[str, list[np.ndarray]] = {}
    report = SkipReport()
    for batch in loader:
        merge_batch_report(report, batch)
        offset = len(keys)
        keys += batch["keys"]
        labels.append(batch["label"].numpy())
        positions.append(batch["positions"].numpy())
        for m in model.modalities:
            inputs = model_inputs(batch, m)
            if inputs is None:
                continue
            x, attention = inputs
            pooled = model.forward_features(m, x.to(device), None if attention is None else attention.to(device))  # (b, W)
            e = model.forward_head(m, pooled)                                      # (b, E)
            embs.setdefault(m, []).append(e.float().cpu().numpy())
            feats.setdefault(m, []).append(pooled.float().cpu().numpy())
            pos.setdefault(m, []).append(batch[f"{m}_idx"].numpy() + offset)
    model.train(was_training)
    return Embeddings(
        keys=keys,
        labels=np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64),
        by_modality={m: np.concatenate(v) for m, v in embs.items()},
        index={m: np.concatenate(v) for m, v in pos.items()},
        features={m: np.concatenate(v) for m, v in feats.items()},
        report=report,
        positions=np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64),
    )
