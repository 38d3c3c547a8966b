"""From samples to model-ready batches: safe item access, preprocessing, collation, and a
step-indexed sampler that makes resuming exact.

Batch layout (only present modalities are stored; ``*_idx`` map rows back to batch positions)::

    n            int                          items in the batch (after skips)
    image        (Bi, 3, S, S) float32        image_idx (Bi,) long
    audio        (Ba, 1, M, T) float32        audio_idx (Ba,) long
    text_ids     (Bt, L) long, text_attn (Bt, L) bool, text_idx (Bt,) long
    label        (n,) long, −1 = unlabeled
    captions     list[str | None] (n)         uids list[str] (n)    keys list[str] (n)
    positions    (n,) long: each item's Sample.position (−1 when not read through PositionTagged)
    text_neg_ids / text_neg_attn (Bt·S, L): with ``caption_negatives`` = S, S word-replaced negatives of each caption
    text_para_ids / text_para_attn (Bt, K, L), text_para_count (Bt,) long: when some item has paraphrases,
                 each caption's paraphrases (K: the most in the batch; rows past a caption's count repeat it)
    seq_<s>      (Bs, T, D) float32, seq_<s>_attn (Bs, T) bool (real frames), seq_<s>_idx (Bs,) long: each
                 feature stream s, normalised, zero-padded to a multiple of its patch (edge_runtime.sequence)
    skipped      list[(uid, reason, detail)]  repairs list[str]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from edge_runtime.modalities import is_sequence, sequence_stream
from edge_runtime.sequence import pad_sequences
from hybridssl.data.caption_negatives import caption_negatives
from hybridssl.data.sample import BadItem, Sample, SkipReport
from hybridssl.preprocessing import PreprocessSpec, preprocess_audio, preprocess_image, preprocess_sequence
from hybridssl.tokenizer import TextTokenizer


@dataclass
class Skipped:
    uid: str
    reason: str
    detail: str = ""


class SafeDataset(Dataset):
    """Wraps a dataset so that a bad item becomes a :class:`Skipped` record instead of an exception."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset  # any map-style dataset with __len__

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Sample | Skipped:
        try:
            return self.dataset[i]
        except BadItem as e:
            return Skipped(e.uid, e.reason, e.detail)
        except (OSError, ValueError, RuntimeError) as e:  # a loader bug must not kill the epoch either
            return Skipped(f"item-{i}", "load_error", f"{type(e).__name__}: {e}")


class Collator:
    """Preprocesses a list of samples into a batch (runs inside DataLoader workers)."""

    def __init__(self, spec: PreprocessSpec, tokenizer: TextTokenizer | None, modalities: Sequence[str],
                 caption_negatives: int = 0) -> None:
        self.spec = spec
        self.tokenizer = tokenizer
        self.modalities = tuple(modalities)
        self.caption_negatives = caption_negatives  # S word-replaced negatives per caption

    def __call__(self, items: list[Sample | Skipped]) -> dict[str, Any]:
        skipped: list[tuple[str, str, str]] = []
        repairs: list[str] = []
        kept: list[Sample] = []
        images: list[torch.Tensor | None] = []
        audios: list[torch.Tensor | None] = []
        sequences: list[dict[str, np.ndarray]] = []
        for it in items:
            if isinstance(it, Skipped):
                skipped.append((it.uid, it.reason, it.detail))
                continue
            try:
                img, aud = self._media(it, repairs)
                seqs = self._sequences(it, repairs)
            except ValueError as e:
                skipped.append((it.uid, "preprocessing_failed", str(e)))
                continue
            if img is None and aud is None and not seqs and not (it.caption and "text" in self.modalities):
                skipped.append((it.uid, "no_usable_modality", f"has {it.modalities}, model uses {self.modalities}"))
                continue
            repairs.extend(it.meta.get("repairs", []))
            kept.append(it)
            images.append(img)
            audios.append(aud)
            sequences.append(seqs)
        batch = self._collate(kept, images, audios, skipped, repairs)
        self._collate_sequences(batch, sequences)
        return batch

    def _sequences(self, s: Sample, repairs: list[str]) -> dict[str, np.ndarray]:
        """The item's feature streams the model has a tower for, normalised (modality → (T, D))."""
        out = {}
        for m in filter(is_sequence, self.modalities):
            x = (s.features or {}).get(sequence_stream(m))
            if x is None:
                continue
            out[m], cut = preprocess_sequence(x, self.spec.sequences[sequence_stream(m)])
            if cut:
                repairs.append("sequence_cropped")
        return out

    def _collate_sequences(self, batch: dict[str, Any], sequences: list[dict[str, np.ndarray]]) -> None:
        for m in filter(is_sequence, self.modalities):
            idx = [i for i, seqs in enumerate(sequences) if m in seqs]
            if idx:
                frames, mask = pad_sequences([sequences[i][m] for i in idx], self.spec.sequences[sequence_stream(m)])
                batch[m] = torch.from_numpy(frames)                     # (Bs, T, D)
                batch[f"{m}_attn"] = torch.from_numpy(mask).bool()      # (Bs, T)
                batch[f"{m}_idx"] = torch.tensor(idx, dtype=torch.long)

    def _media(self, s: Sample, repairs: list[str]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        img = aud = None
        if s.image is not None and "image" in self.modalities:
            img = preprocess_image(s.image, self.spec.image)
        if s.audio is not None and "audio" in self.modalities:
            if s.sample_rate is None:
                raise ValueError("audio without a sample rate")
            aud, resampled = preprocess_audio(s.audio, s.sample_rate, self.spec.audio)
            if resampled:
                repairs.append("resampled")
        return img, aud

    def _collate(self, kept: list[Sample], images: list, audios: list, skipped: list, repairs: list) -> dict[str, Any]:
        batch: dict[str, Any] = {
            "n": len(kept),
            "uids": [s.uid for s in kept],
            "keys": [str(s.meta.get("key", s.uid)) for s in kept],
            "positions": torch.tensor([-1 if s.position is None else int(s.position) for s in kept], dtype=torch.long),
            "captions": [s.caption for s in kept],
            "label": torch.tensor([-1 if s.label is None else int(s.label) for s in kept], dtype=torch.long),
            "skipped": skipped,
            "repairs": repairs,
        }
        for name, tensors in (("image", images), ("audio", audios)):
            idx = [i for i, t in enumerate(tensors) if t is not None]
            if idx:
                batch[name] = torch.stack([tensors[i] for i in idx])
                batch[f"{name}_idx"] = torch.tensor(idx, dtype=torch.long)
        if self.tokenizer is not None and "text" in self.modalities:
            idx = [i for i, s in enumerate(kept) if s.caption]
            if idx:
                captions = [kept[i].caption or "" for i in idx]
                ids, attn = self.tokenizer.encode(captions)
                batch["text_ids"] = torch.from_numpy(ids)
                batch["text_attn"] = torch.from_numpy(attn)
                batch["text_idx"] = torch.tensor(idx, dtype=torch.long)
                counts = [len(kept[i].paraphrases) for i in idx]
                if any(counts):   # K = the most any caption has; the shorter lists padded with the caption
                    k = max(counts)
                    padded = [c2 for i, c in zip(idx, captions) for c2 in (*kept[i].paraphrases, *[c] * k)[:k]]
                    p_ids, p_attn = self.tokenizer.encode(padded)
                    batch["text_para_ids"] = torch.from_numpy(p_ids).view(len(idx), k, -1)     # (Bt, K, L)
                    batch["text_para_attn"] = torch.from_numpy(p_attn).view(len(idx), k, -1)
                    batch["text_para_count"] = torch.tensor(counts, dtype=torch.long)          # (Bt,)
                if self.caption_negatives:
                    negatives = caption_negatives(captions, self.caption_negatives)
                    n_ids, n_attn = self.tokenizer.encode([c for per in negatives for c in per])
                    batch["text_neg_ids"] = torch.from_numpy(n_ids)      # (Bt·S, L), caption-major
                    batch["text_neg_attn"] = torch.from_numpy(n_attn)
        return batch


class StepBatchSampler(Sampler[list[int]]):
    """Yields the index batches of steps ``start_step, start_step+1, …, total_steps−1``.

    Step s reads positions [s·B mod n …] of epoch ⌊s·B / n⌋'s permutation, which is
    ``np.random.default_rng([seed, epoch]).permutation(n)``: the batch of a step depends only on
    (seed, step), so resuming at step k replays exactly what an uninterrupted run would have read.
    Batches never straddle epochs (the last partial batch of an epoch is completed from the next).
    """

    def __init__(self, n: int, batch_size: int, seed: int, total_steps: int, start_step: int = 0) -> None:
        if n <= 0:
            raise ValueError("the dataset is empty")
        self.n, self.b, self.seed = n, batch_size, seed
        self.total, self.start = total_steps, start_step

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def batch(self, step: int) -> list[int]:
        first = step * self.b
        out: list[int] = []
        while len(out) < self.b:
            pos = first + len(out)
            epoch, offset = divmod(pos, self.n)
            perm = self._perm(epoch)
            take = min(self.b - len(out), self.n - offset)
            out.extend(perm[offset : offset + take].tolist())
        return out

    def _perm(self, epoch: int) -> np.ndarray:
        cache = getattr(self, "_cache", None)
        if cache is None or cache[0] != epoch:
            self._cache = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n))
        return self._cache[1]

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.total):
            yield self.batch(step)


def model_inputs(batch: dict[str, Any], modality: str) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The tower-interface arguments ``(x, attention)`` of ``modality`` in a collated batch, or None
    when no item carries it: text (ids, attention), a sequence (frames, frame mask), image / audio (x, None)."""
    key = "text_ids" if modality == "text" else modality
    if key not in batch:
        return None
    return batch[key], batch.get("text_attn" if modality == "text" else f"{modality}_attn")


def merge_batch_report(report: SkipReport, batch: dict[str, Any]) -> None:
    for uid, reason, detail in batch.get("skipped", []):
        report.skip_drawn(uid, reason, detail)
    for r in batch.get("repairs", []):
        report.repair(r)
