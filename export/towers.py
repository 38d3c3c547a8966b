"""One exportable ``nn.Module`` per modality tower, and the tensor signature the bundle promises.

A tower maps the bundle inputs of one modality to the L2-normalised joint embedding, using only
the tower interface of a loaded run's model (``modalities``, ``embed(m, x, attention)``), so a
teacher and a distilled student export alike:

=========  ==============================================================  ====================
modality   inputs (name, shape, dtype)                                     output
=========  ==============================================================  ====================
image      ``pixels`` (B, 3, S, S) float32 — normalised pixels             ``embedding`` (B, E)
text       ``input_ids`` (B, L) int64, ``attention_mask`` (B, L) int64      float32, ‖e‖₂ = 1
audio      ``log_mel`` (B, 1, M, T) float32 — normalised log-mel
seq_<s>    ``frames`` (B, T, D) float32, ``frame_mask`` (B, T) int64
=========  ==============================================================  ====================

S = ``spec.image.size``, L = ``spec.text.max_length``, M = ``spec.audio.n_mels``,
T = ``spec.audio.num_frames``; B is dynamic (``"batch"``), and so is a sequence's T (``"time"``, a
multiple of the stream's patch). The masks are 1 on real tokens / frames.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from edge_runtime.modalities import MODALITIES, is_sequence, sequence_stream
from edge_runtime.schema import tower_io
from hybridssl.models.interface import TowerModel
from hybridssl.preprocessing import PreprocessSpec
from hybridssl.tokenizer import TextTokenizer

EXAMPLE_CAPTIONS = ("a red circle on the left", "a small blue square with stripes at the top of the picture")


class PatchTower(nn.Module):
    """Image ``pixels`` (B, 3, S, S) or audio ``log_mel`` (B, 1, M, T) → embedding (B, E)."""

    def __init__(self, model: TowerModel, modality: str) -> None:
        super().__init__()
        self.model = model
        self.modality = modality

    def forward(self, x: Tensor) -> Tensor:
        return self.model.embed(self.modality, x)


class MaskedTower(nn.Module):
    """Text ``input_ids`` (B, L) int64 + ``attention_mask`` (B, L), or a sequence's ``frames`` (B, T, D)
    float32 + ``frame_mask`` (B, T), int64 masks (1 = real) → embedding (B, E)."""

    def __init__(self, model: TowerModel, modality: str) -> None:
        super().__init__()
        self.model = model
        self.modality = modality

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.model.embed(self.modality, x, mask != 0)




def tower_module(model: TowerModel, modality: str) -> nn.Module:
    """The exportable wrapper of one tower of ``model`` (in eval mode)."""
    if modality not in getattr(model, "modalities", ()):
        raise ValueError(f"the model has no {modality!r} tower (it has {', '.join(model.modalities)})")
    masked = modality == "text" or is_sequence(modality)
    return (MaskedTower(model, modality) if masked else PatchTower(model, modality)).eval()


def example_feeds(modality: str, spec: PreprocessSpec, tokenizer: TextTokenizer | None,
                  batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic example inputs (bundle names → arrays) used to trace the export."""
    rng = np.random.default_rng(seed)
    if modality == "text":
        if tokenizer is None:
            raise ValueError("the run has a text tower but no tokenizer (tokenizer.json missing from its checkpoint)")
        captions = [EXAMPLE_CAPTIONS[i % len(EXAMPLE_CAPTIONS)] for i in range(batch)]
        ids, attn = tokenizer.encode(captions)                               # (B, L) int64, (B, L) bool
        return {"input_ids": ids.astype(np.int64), "attention_mask": attn.astype(np.int64)}
    if is_sequence(modality):                         # full-length items and one of half the length
        seq = spec.sequences[sequence_stream(modality)]
        t = seq.padded_frames
        mask = np.ones((batch, t), dtype=np.int64)
        mask[1::2, max(1, t // 2):] = 0
        return {"frames": (rng.standard_normal((batch, t, seq.dim)) * mask[..., None]).astype(np.float32),
                "frame_mask": mask}
    io = tower_io(modality, spec, 1)
    shape = (batch, *(int(d) for d in io.inputs[0].shape[1:]))
    return {io.inputs[0].name: rng.standard_normal(shape).astype(np.float32)}


def feeds_to_torch(feeds: dict[str, np.ndarray]) -> tuple[Tensor, ...]:
    """Bundle feeds (in signature order) → the tower module's positional arguments."""
    return tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values())


def interface_args(feeds: dict[str, np.ndarray]) -> tuple[Tensor, Tensor | None]:
    """Bundle feeds → ``(x, attention)`` of the tower interface's ``embed(m, x, attention)``
    (the text mask as bool, None for image/audio)."""
    args = feeds_to_torch(feeds)
    return args[0], (args[1] != 0 if len(args) > 1 else None)


def torch_to_feeds(modality: str, x: Tensor, attention: Tensor | None = None) -> dict[str, np.ndarray]:
    """The tower-interface arguments of ``embed(m, x, attention)`` → bundle feeds (numpy)."""
    if modality == "text":
        if attention is None:
            raise ValueError("text needs its attention mask")
        return {"input_ids": x.cpu().numpy().astype(np.int64), "attention_mask": attention.cpu().numpy().astype(np.int64)}
    if is_sequence(modality):
        if attention is None:
            raise ValueError(f"{modality} needs its frame mask")
        return {"frames": x.detach().cpu().numpy().astype(np.float32),
                "frame_mask": attention.cpu().numpy().astype(np.int64)}
    name = {"image": "pixels", "audio": "log_mel"}.get(modality)
    if name is None:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES} or seq_<stream>")
    return {name: x.detach().cpu().numpy().astype(np.float32)}


@torch.inference_mode()
def torch_embed(model: TowerModel, modality: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Run one tower of the PyTorch model on bundle feeds → (B, E) float32."""
    return tower_module(model, modality)(*feeds_to_torch(feeds)).float().cpu().numpy()


def embed_dim_of(model: TowerModel, modality: str, spec: PreprocessSpec, tokenizer: TextTokenizer | None) -> int:
    """E, measured by running the tower once (students and teachers alike)."""
    return int(torch_embed(model, modality, example_feeds(modality, spec, tokenizer, batch=1)).shape[1])
