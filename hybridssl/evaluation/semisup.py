"""Semi-supervised fine-tuning (FixMatch, Sohn et al. 2020): the labelled split *and* the
unlabelled pool train the tower + head of :mod:`hybridssl.evaluation.finetune`.

At each step, with a labelled batch (x_b, y_b) of size B and an unlabelled batch u of μ·B items
(``unlabelled_ratio`` μ), a weak view α(·) and a strong view 𝒜(·):

    ℓ_s = (1/B)  Σ_b CE(f(α(x_b)), y_b)
    q   = softmax(f(α(u)))            (no gradient),   ŷ = argmax q,   m = 1[max q ≥ τ]
    ℓ_u = (1/μB) Σ_u m · CE(f(𝒜(u)), ŷ)
    L   = ℓ_s + λ_u ℓ_u

``threshold`` τ (0.95), ``weight`` λ_u (1). Views, on the preprocessed tensors, drawn from a
generator seeded by the run's seed: image — weak: random horizontal flip and a translation of up
to 1/8 of the side (reflection padding); strong: weak + per-item brightness/contrast jitter, Gaussian
noise and a cutout square of 1/4–1/2 the side. Audio (log-mel) — weak: a circular time shift of up to
1/10; strong: weak + two frequency and two time masks (SpecAugment) and noise. Text — weak: as is;
strong: 15 % of the tokens after the first hidden from attention.

The unlabelled pool is every pool item carrying the modality except the validation split (which
selects the checkpoint) — the test split is another dataset and never enters. Labels of the
unlabelled items are never read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hybridssl.evaluation.finetune import ModalityInputs

View = tuple[Tensor, Tensor | None]  # (x, text attention or None)


@dataclass
class FixMatchConfig:
    threshold: float = 0.95
    unlabelled_ratio: int = 3
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0 or self.unlabelled_ratio < 1 or self.weight < 0:
            raise ValueError(f"FixMatch needs 0 < threshold <= 1, unlabelled_ratio >= 1, weight >= 0; got {self}")


def unlabelled_positions(pool_positions: np.ndarray, val_positions: np.ndarray) -> np.ndarray:
    """The pool items FixMatch may use without labels: all but the validation split."""
    return np.setdiff1d(np.asarray(pool_positions, dtype=np.int64), np.asarray(val_positions, dtype=np.int64))


def _translate(x: Tensor, gen: torch.Generator, frac: float) -> Tensor:
    """Each image (B, 3, S, S) shifted by up to ``frac``·S pixels in x and y, reflection padded."""
    b, _, s, _ = x.shape
    pad = max(1, int(s * frac))
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    off = torch.randint(0, 2 * pad + 1, (b, 2), generator=gen)
    return torch.stack([padded[i, :, off[i, 0]:off[i, 0] + s, off[i, 1]:off[i, 1] + s] for i in range(b)])


def _flip(x: Tensor, gen: torch.Generator) -> Tensor:
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def _cutout(x: Tensor, gen: torch.Generator) -> Tensor:
    b, _, h, w = x.shape
    out = x.clone()
    for i in range(b):
        side = int(torch.randint(max(1, h // 4), max(2, h // 2 + 1), (1,), generator=gen))
        r, c = (int(v) for v in torch.randint(0, max(1, h - side + 1), (2,), generator=gen))
        out[i, :, r:r + side, c:c + side] = 0.0
    return out


def _masks(x: Tensor, gen: torch.Generator, n: int = 2) -> Tensor:
    """SpecAugment on (B, 1, M, T): ``n`` frequency and ``n`` time masks of up to 1/8 of the axis."""
    out = x.clone()
    b, _, m, t = x.shape
    for i in range(b):
        for axis, size in ((2, m), (3, t)):
            for _ in range(n):
                width = int(torch.randint(0, max(1, size // 8) + 1, (1,), generator=gen))
                start = int(torch.randint(0, max(1, size - width + 1), (1,), generator=gen))
                out[i].narrow(axis - 1, start, width).zero_()
    return out


def weak_view(modality: str, x: Tensor, attention: Tensor | None, gen: torch.Generator) -> View:
    if modality == "image":
        return _translate(_flip(x, gen), gen, 0.125), attention
    if modality == "audio":
        shift = int(torch.randint(-(x.shape[-1] // 10), x.shape[-1] // 10 + 1, (1,), generator=gen))
        return torch.roll(x, shift, dims=-1), attention
    return x, attention


def strong_view(modality: str, x: Tensor, attention: Tensor | None, gen: torch.Generator) -> View:
    x, attention = weak_view(modality, x, attention, gen)
    if modality == "image":
        b = x.shape[0]
        scale = 1.0 + 0.8 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)         # contrast ×[0.6, 1.4]
        shift = 0.8 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)                # brightness ±0.4
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * scale + mean + shift + 0.1 * torch.randn(x.shape, generator=gen)
        return _cutout(x, gen), attention
    if modality == "audio":
        return _masks(x, gen) + 0.1 * torch.randn(x.shape, generator=gen), attention
    assert attention is not None
    hide = torch.rand(attention.shape, generator=gen) < 0.15
    hide[:, 0] = False                                                             # keep the first token
    return x, attention & ~hide


class FixMatch:
    """The unsupervised half of a fine-tuning run: draws μ·B unlabelled items per step and returns ℓ_u."""

    def __init__(self, unlabelled: ModalityInputs, cfg: FixMatchConfig, seed: int) -> None:
        if len(unlabelled) == 0:
            raise ValueError("FixMatch needs unlabelled items")
        self.unlabelled, self.cfg = unlabelled, cfg
        self.gen = torch.Generator().manual_seed(int(seed) + 7919)
        self.masked = self.drawn = 0

    def weak(self, x: Tensor, attention: Tensor | None) -> View:
        return weak_view(self.unlabelled.modality, x, attention, self.gen)

    def batch(self, labelled_size: int) -> Tensor:
        """Row indices of the next unlabelled batch: μ·B of them (with replacement across steps)."""
        n = min(len(self.unlabelled), self.cfg.unlabelled_ratio * labelled_size)
        return torch.randperm(len(self.unlabelled), generator=self.gen)[:n]

    def loss(self, clf: torch.nn.Module, labelled_size: int, device: torch.device) -> Tensor:
        rows = self.batch(labelled_size)
        u = self.unlabelled
        x, attn = u.x[rows], None if u.attention is None else u.attention[rows]
        xw, aw = weak_view(u.modality, x, attn, self.gen)
        xs, as_ = strong_view(u.modality, x, attn, self.gen)
        with torch.no_grad():
            probs = torch.softmax(clf(xw.to(device), None if aw is None else aw.to(device)).float(), dim=1)
        loss, mask = pseudo_label_loss(clf(xs.to(device), None if as_ is None else as_.to(device)).float(), probs,
                                       self.cfg.threshold)
        self.masked += int(mask.sum())
        self.drawn += int(mask.numel())
        return self.cfg.weight * loss

    @property
    def pseudo_label_rate(self) -> float:
        """Share (%) of the unlabelled items drawn whose pseudo-label passed the threshold."""
        return 100.0 * self.masked / max(1, self.drawn)


def pseudo_label_loss(strong_logits: Tensor, weak_probs: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """ℓ_u = mean over the batch of 1[max q ≥ τ] · CE(strong logits, argmax q); returns (ℓ_u, mask)."""
    confidence, pseudo = weak_probs.max(dim=1)
    mask = (confidence >= threshold).float()
    return (F.cross_entropy(strong_logits, pseudo, reduction="none") * mask).mean(), mask
