"""Fine-tuning protocol ("unfrozen" low-label evaluation): one modality tower plus a linear head,
trained end to end on a labelled split, the checkpoint chosen on validation accuracy.

Model. For modality m, the tower is what ``HybridModel.forward_features(m, ·)`` runs: the modality
encoder, the shared trunk (with m's modality embedding) and m's final LayerNorm, mean-pooled to
h ∈ R^W. A linear head gives the logits

    z = h Wᵀ + b,   W (K, W), b (K,)          h (B, W) → z (B, K)

trained with the mean cross-entropy  L = (1/B) Σ_i −log softmax(z_i)[y_i]  by AdamW with two
parameter groups: the tower at ``lr_encoder`` (1e-4) and the head at ``lr_head`` (1e-3), constant
learning rates, for exactly ``steps`` optimizer steps of ``min(batch_size, n_train)`` items. Batches
walk seeded epoch permutations (``np.random.default_rng([seed, epoch])``), so a (data, seed) pair
always sees the same batches. Every ``eval_every`` steps and at the last step the validation
accuracy is measured; the parameters of the best evaluation (ties → the earlier step) are restored
and reported on the test split (the test split is never used for selection).

The model passed in is never modified: the tower is trained on a deep copy. Training runs under
``torch.random.fork_rng`` with ``torch.manual_seed(seed)`` (head init, drop-path), so it neither
depends on nor disturbs the caller's global RNG state.

Inputs are preprocessed once (:func:`load_inputs`) and reused by every (fraction, seed) run:
image (N, 3, S, S), audio log-mel (N, 1, M, T) or text ids (N, L) with attention (N, L).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from edge_runtime.modalities import is_sequence
from hybridssl.data.batching import Collator, SafeDataset, merge_batch_report, model_inputs
from hybridssl.data.sample import SkipReport
from hybridssl.data.tagged import PositionTagged
from hybridssl.evaluation.zeroshot import f1_report
from hybridssl.models.interface import TowerModel
from hybridssl.preprocessing import PreprocessSpec
from hybridssl.tokenizer import TextTokenizer

#: the order in which a tower is chosen when none is requested
TOWER_PREFERENCE = ("image", "audio", "text")


# ----------------------------------------------------------------------------- cached inputs
@dataclass
class ModalityInputs:
    """Preprocessed inputs of one modality for the items that carry it."""

    modality: str
    x: Tensor                     # image (N, 3, S, S) | audio (N, 1, M, T) | text ids (N, L)
    attention: Tensor | None      # text only: (N, L) bool
    labels: np.ndarray            # (N,) int64, −1 = unlabelled
    positions: np.ndarray         # (N,) int64 dataset positions
    report: SkipReport = dataclasses.field(default_factory=SkipReport)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def select(self, positions: Sequence[int] | np.ndarray) -> "ModalityInputs":
        """The rows of the given dataset positions, in that order (ValueError for an absent one)."""
        row_of = {int(p): r for r, p in enumerate(self.positions)}
        missing = [int(p) for p in positions if int(p) not in row_of]
        if missing:
            raise ValueError(f"positions {missing[:5]} have no {self.modality} input "
                             f"({len(missing)} missing); they were skipped or lack the modality")
        rows = torch.as_tensor([row_of[int(p)] for p in positions], dtype=torch.long)
        return ModalityInputs(self.modality, self.x[rows], None if self.attention is None else self.attention[rows],
                              self.labels[rows.numpy()], np.asarray(positions, dtype=np.int64).reshape(-1))


def load_inputs(dataset: Dataset, spec: PreprocessSpec, tokenizer: TextTokenizer | None, modality: str,
                positions: Sequence[int] | None = None, batch_size: int = 128,
                num_workers: int = 0) -> ModalityInputs:
    """Preprocess ``modality`` of the items at ``positions`` (default: all) once, on the CPU."""
    if modality == "text" and tokenizer is None:
        raise ValueError("fine-tuning the text tower needs the run's tokenizer")
    tagged = PositionTagged(dataset, positions)
    n = len(tagged)
    batches = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
    loader = DataLoader(SafeDataset(tagged), batch_sampler=batches, collate_fn=Collator(spec, tokenizer, (modality,)),
                        num_workers=num_workers)
    xs, attns, labels, pos = [], [], [], []
    report = SkipReport()
    for batch in loader:
        merge_batch_report(report, batch)
        inputs = model_inputs(batch, modality)
        if inputs is None:
            continue
        rows = batch[f"{modality}_idx"]                              # (b,) batch rows carrying it
        xs.append(inputs[0])
        if inputs[1] is not None:
            attns.append(inputs[1])
        labels.append(batch["label"][rows].numpy())
        pos.append(batch["positions"][rows].numpy())
    if not xs:
        raise ValueError(f"no item of the dataset carries a usable {modality!r} input")
    return ModalityInputs(modality, torch.cat(xs), torch.cat(attns) if attns else None,
                          np.concatenate(labels).astype(np.int64), np.concatenate(pos), report)


def pick_modality(model_modalities: Sequence[str], data_modalities: Sequence[str], preferred: str | None = None) -> str:
    """The tower to evaluate: ``preferred`` if given (must be in both), else the first of image/audio/text,
    then the sequence towers by name."""
    shared = set(model_modalities) & set(data_modalities)
    both = [m for m in TOWER_PREFERENCE if m in shared] + sorted(m for m in shared if is_sequence(m))
    if preferred is not None:
        if preferred not in both:
            raise ValueError(f"modality {preferred!r} is not available: the model has {tuple(model_modalities)}, "
                             f"the data {tuple(data_modalities)}")
        return preferred
    if not both:
        raise ValueError(f"the model ({tuple(model_modalities)}) and the data ({tuple(data_modalities)}) "
                         "share no modality")
    return both[0]


# ----------------------------------------------------------------------------- the classifier
class TowerClassifier(nn.Module):
    """``head(model.forward_features(modality, x))``: (B, …) → logits (B, K)."""

    def __init__(self, model: TowerModel, modality: str, n_classes: int) -> None:
        super().__init__()
        if modality not in model.modalities:
            raise ValueError(f"the model has no {modality!r} tower (it has {model.modalities})")
        if n_classes < 2:
            raise ValueError(f"fine-tuning needs at least 2 classes, got {n_classes}")
        self.model = model
        self.modality = modality
        self.head = nn.Linear(model.feature_dim(modality), n_classes)

    def tower_parameters(self) -> list[nn.Parameter]:
        """Everything forward_features(modality) runs through (not the projection head or decoders)."""
        return self.model.tower_parameters(self.modality)

    def forward(self, x: Tensor, attention: Tensor | None = None) -> Tensor:
        pooled = self.model.forward_features(self.modality, x, attention)   # (B, W)
        return self.head(pooled)                                              # (B, K)


@dataclass
class FinetuneConfig:
    steps: int = 100
    batch_size: int = 32
    lr_encoder: float = 1e-4
    lr_head: float = 1e-3
    weight_decay: float = 0.05
    eval_every: int = 0           # 0: max(1, steps // 10)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.eval_every < 0:
            raise ValueError(f"steps and batch_size must be >= 1 and eval_every >= 0, got {self}")
        if not (self.lr_encoder >= 0 and self.lr_head > 0 and self.weight_decay >= 0):
            raise ValueError(f"learning rates must be >= 0 (head > 0) and weight_decay >= 0, got {self}")


def shuffled_batches(n: int, batch_size: int, steps: int, seed: int):
    """``steps`` index batches (B,) walking seeded epoch permutations of range(n)."""
    b = min(batch_size, n)
    epoch, perm, offset = 0, np.random.default_rng([seed, 0]).permutation(n), 0
    for _ in range(steps):
        if offset + b > n:
            epoch += 1
            perm, offset = np.random.default_rng([seed, epoch]).permutation(n), 0
        yield torch.from_numpy(perm[offset : offset + b])
        offset += b


@torch.inference_mode()
def predict_logits(clf: TowerClassifier, inputs: ModalityInputs, batch_size: int = 256) -> Tensor:
    """Logits (N, K) in eval mode (the module's training flag is restored)."""
    was = clf.training
    clf.eval()
    device = next(clf.parameters()).device
    out = []
    for i in range(0, len(inputs), batch_size):
        attn = None if inputs.attention is None else inputs.attention[i : i + batch_size].to(device)
        out.append(clf(inputs.x[i : i + batch_size].to(device), attn).float().cpu())
    clf.train(was)
    return torch.cat(out)


def _accuracy(clf: TowerClassifier, inputs: ModalityInputs) -> tuple[float, np.ndarray]:
    pred = predict_logits(clf, inputs).argmax(dim=1).numpy()               # (N,)
    return float(100.0 * np.mean(pred == inputs.labels)), pred


def _check_split(name: str, inputs: ModalityInputs, n_classes: int) -> None:
    if len(inputs) == 0:
        raise ValueError(f"the {name} split is empty")
    if inputs.labels.min() < 0 or inputs.labels.max() >= n_classes:
        raise ValueError(f"{name} labels must lie in [0, {n_classes}) (unlabelled items filtered out first)")


def finetune_classifier(model: TowerModel, modality: str, train: ModalityInputs, val: ModalityInputs,
                        test: ModalityInputs, n_classes: int, cfg: FinetuneConfig | None = None,
                        seed: int = 0, semi: Any = None) -> dict:
    """Fine-tune a copy of ``model``'s ``modality`` tower + a linear head (module docstring).

    ``semi``: a :class:`~hybridssl.evaluation.semisup.FixMatch` — the labelled batch is then seen
    through its weak view and its unlabelled term is added to every step's loss.
    Returns {"accuracy", "macro_f1" (test, %), "val_accuracy" (%, best), "best_step", "steps",
    "n_train", "seconds"} (+ "pseudo_label_rate", "n_unlabelled" with ``semi``).
    """
    cfg = cfg or FinetuneConfig()
    for name, split in (("train", train), ("val", val), ("test", test)):
        _check_split(name, split, n_classes)
        if split.modality != modality:
            raise ValueError(f"{name} inputs are {split.modality!r}, the tower is {modality!r}")
    eval_every = cfg.eval_every or max(1, cfg.steps // 10)
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clf = TowerClassifier(copy.deepcopy(model), modality, n_classes)
        device = next(model.parameters()).device
        clf.to(device)
        for p in clf.model.parameters():
            p.requires_grad_(False)
        tower = clf.tower_parameters()
        for p in tower:
            p.requires_grad_(True)
        opt = torch.optim.AdamW([{"params": tower, "lr": cfg.lr_encoder},
                                 {"params": list(clf.head.parameters()), "lr": cfg.lr_head}],
                                weight_decay=cfg.weight_decay)
        trainable = {n: p for n, p in clf.named_parameters() if p.requires_grad}
        y_train = torch.from_numpy(train.labels)
        best: tuple[float, int, dict[str, Tensor]] | None = None
        clf.train()
        for step, rows in enumerate(shuffled_batches(len(train), cfg.batch_size, cfg.steps, seed), start=1):
            x, attn = train.x[rows], None if train.attention is None else train.attention[rows]
            if semi is not None:
                x, attn = semi.weak(x, attn)
            logits = clf(x.to(device), None if attn is None else attn.to(device))   # (B, K)
            loss = F.cross_entropy(logits.float(), y_train[rows].to(device))
            if semi is not None:
                loss = loss + semi.loss(clf, len(rows), device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % eval_every == 0 or step == cfg.steps:
                acc, _ = _accuracy(clf, val)
                if best is None or acc > best[0]:
                    best = (acc, step, {n: p.detach().clone() for n, p in trainable.items()})
        assert best is not None
        with torch.no_grad():
            for n, p in trainable.items():
                p.copy_(best[2][n])
        acc, pred = _accuracy(clf, test)
    return {
        "accuracy": acc,
        **f1_report(test.labels, pred, n_classes),
        "val_accuracy": best[0],
        "best_step": best[1],
        "steps": cfg.steps,
        "n_train": len(train),
        "seconds": round(time.perf_counter() - t0, 3),
        **({"pseudo_label_rate": semi.pseudo_label_rate, "n_unlabelled": len(semi.unlabelled)} if semi else {}),
    }
