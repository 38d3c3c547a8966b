"""Caption-word prediction: every tower's joint embedding predicts the words of the item's caption
through ONE linear head shared by all modalities (the bag-of-words objective of SuperClass, Huang et
al. 2024, "Classification Done Right for Vision-Language Pre-Training", and of Joulin et al. 2016).

For an item with caption c and the unit embedding ê_m of modality m (image, audio, a sequence, or
the caption itself, encoded from its MLM corruption):

    y_v   = idf_v · 1[v ∈ c] / Σ_u idf_u · 1[u ∈ c]          (the caption's distinct non-special
                                                               tokens; idf_v = log((1 + N) / (1 + n_v)))
    p_m   = softmax(cos(w_v, ê_m) / τ_w)                       w_v: (E,) the word's row of W (V, E),
                                                               shared by every m
    L_m   = KL(y ‖ p_m) = Σ_v y_v (log y_v − log p_m,v)        mean over the items with a caption

n_v counts the captions containing token v among the N seen so far in training (buffers of the
module, so a resume continues them); the current batch is counted before it is scored. An item with
paraphrases (other captions of it, ``Sample.paraphrases``) gets the mean of its captions' y. The head is a
cosine classifier (unit rows; τ_w fixed, ``loss.caption_words_temperature``): the logits' scale does
not have to be learnt from a small init first, and each word is a unit vector of the joint space, so
an embedding predicting several words sits near the normalised sum of theirs. The KL is the
cross-entropy of SuperClass less the entropy of y, so 0 is a perfect prediction. Why: InfoNCE is
minimised by whatever attributes already tell a batch's pairs apart ("feature suppression"); a
word-prediction term has a gradient for EVERY word the caption names, and because W is shared, the
word "star" is one direction of the joint space for the image, the audio and the text embedding
alike — which is what zero-shot from text prompts reads.

Shapes: ``embeddings`` (B, E), ``token_ids`` / ``attention`` (B, L) → loss (). Under torchrun each
rank counts its own captions (the idf estimate is per rank; the term is a per-item mean, globalised
like the others).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridssl.losses.positives import common_rows


def word_targets(token_ids: Tensor, attention: Tensor, vocab_size: int, special_ids: Sequence[int],
                 idf: Tensor | None = None) -> Tensor:
    """(B, V) rows summing to 1: the idf-weighted distinct non-special tokens of each caption
    (uniform without ``idf``); an all-special caption gives a zero row."""
    present = torch.zeros(token_ids.shape[0], vocab_size, device=token_ids.device)
    present.scatter_(1, token_ids.masked_fill(~attention.bool(), 0), attention.float())
    present = present.clamp(max=1.0)
    if special_ids:
        present[:, torch.as_tensor(list(special_ids), device=present.device)] = 0.0
    weighted = present * idf if idf is not None else present
    total = weighted.sum(-1, keepdim=True)
    return weighted / total.clamp_min(1e-12)


def word_kl(logits: Tensor, targets: Tensor) -> Tensor:
    """mean over rows with a target of KL(y ‖ softmax(logits)); logits, targets (B, V) → ()."""
    keep = targets.sum(-1) > 0
    if not bool(keep.any()):
        return logits.sum() * 0.0
    y, logp = targets[keep], F.log_softmax(logits[keep].float(), dim=-1)
    entropy_term = torch.where(y > 0, y * torch.log(y.clamp_min(1e-12)), torch.zeros_like(y))
    return (entropy_term - y * logp).sum(-1).mean()


class CaptionWords(nn.Module):
    """The shared word head and the running document frequencies of the caption tokens."""

    doc_freq: Tensor
    n_docs: Tensor

    def __init__(self, embed_dim: int, vocab_size: int, special_ids: Sequence[int], temperature: float = 0.1,
                 feature_dims: dict[str, int] | None = None) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"the word head's temperature must be > 0, got {temperature!r}")
        self.vocab_size, self.special_ids = int(vocab_size), [int(i) for i in special_ids]
        self.temperature = float(temperature)
        self.words = nn.Parameter(torch.randn(vocab_size, embed_dim) * embed_dim ** -0.5)   # (V, E) w_v
        # on="features" (SuperClass as published): one linear classifier W_m f + b_m per tower on its
        # pooled features f instead of the shared cosine head on the joint embedding
        self.feature_heads = nn.ModuleDict({m: nn.Linear(d, vocab_size) for m, d in (feature_dims or {}).items()})
        self.register_buffer("doc_freq", torch.zeros(vocab_size))   # (V,) n_v
        self.register_buffer("n_docs", torch.zeros(()))             # () N

    def targets(self, token_ids: Tensor, attention: Tensor, paraphrases: tuple[Tensor, Tensor, Tensor] | None = None,
                ) -> Tensor:
        """(B, V) targets y; in training mode the batch's captions are counted first. With
        ``paraphrases = (ids (B, K, L), attention (B, K, L), count (B,))`` an item's target is the mean
        of the targets of its caption and its first ``count`` paraphrases: what the item says, less the
        wording any one caption happened to pick (the variance of that noise shrinks 1 + count times)."""
        uniform = word_targets(token_ids, attention, self.vocab_size, self.special_ids)
        if self.training:
            self.doc_freq += (uniform > 0).float().sum(0)
            self.n_docs += float(token_ids.shape[0])
        idf = torch.log((1.0 + self.n_docs) / (1.0 + self.doc_freq))
        y = word_targets(token_ids, attention, self.vocab_size, self.special_ids, idf=idf)
        if paraphrases is None:
            return y
        ids, attn, count = paraphrases
        b, k, _ = ids.shape
        y_para = word_targets(ids.flatten(0, 1), attn.flatten(0, 1), self.vocab_size, self.special_ids, idf=idf)
        real = (torch.arange(k, device=ids.device)[None, :] < count.to(ids.device)[:, None]).float()   # (B, K)
        return (y + (y_para.view(b, k, -1) * real[..., None]).sum(1)) / (1.0 + real.sum(1, keepdim=True))

    def logits(self, embeddings: Tensor, modality: str | None = None) -> Tensor:
        """(B, V): W_m f + b_m for the pooled features (B, W) of a tower with a feature head, else
        cos(w_v, ê) / τ_w for embeddings (B, E) (normalised here)."""
        if modality is not None and modality in self.feature_heads:
            return self.feature_heads[modality](embeddings)
        return F.normalize(embeddings, dim=-1) @ F.normalize(self.words, dim=-1).T / self.temperature

    def loss(self, embeddings: Tensor, targets: Tensor, modality: str | None = None) -> Tensor:
        """KL(y ‖ softmax(logits)) for embeddings or features (B, ·) and targets (B, V)."""
        return word_kl(self.logits(embeddings, modality), targets)


def caption_word_losses(words: CaptionWords, batch: dict, embeddings: dict[str, Tensor],
                        rows: dict[str, Tensor], weight: float) -> tuple[dict[str, Tensor], dict[str, int]]:
    """``{"words/<m>": weight · L_m}`` and item counts for every modality embedded on items that
    carry a caption; ``rows[m]`` are the batch items of ``embeddings[m]``'s rows (the pooled features
    for the towers that have a feature head)."""
    if "text_ids" not in batch or "text" not in rows:
        return {}, {}
    paraphrases = (batch["text_para_ids"], batch["text_para_attn"], batch["text_para_count"]) \
        if "text_para_ids" in batch else None
    targets = words.targets(batch["text_ids"], batch["text_attn"], paraphrases)   # (Bt, V), the clean captions
    losses, counts = {}, {}
    for m, e in embeddings.items():
        im, it = common_rows(rows[m], rows["text"])
        if im.numel():
            losses[f"words/{m}"] = weight * words.loss(e[im], targets[it], m)
            counts[f"words/{m}"] = int(im.numel())
    return losses, counts
