"""The loss section of a run's configuration (``loss.*``): which terms the hybrid task computes and how.

Part of :class:`hybridssl.config.RunConfig`; every value is checked when the config is built, so a run
that cannot train is refused before any data is read (``ValueError`` naming the key).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class LossConfig:
    contrastive: bool = True
    pairs: tuple[str, ...] = ()       # e.g. ("image-text", "audio-image"); () = every available pair
    temperature: float = 0.07
    learnable_temperature: bool = True
    min_temperature: float = 0.01
    ntxent_weight: float = 0.0        # > 0: intra-modal NT-Xent on two views of each image, times this weight
    ntxent_view: str = "mask"         # image views: "mask" (two maskings) | "colour" (the second one colour-permuted)
    text_ntxent_weight: float = 0.0   # > 0: NT-Xent on two MLM corruptions of each caption, times this weight
    text_ntxent_mask_ratio: float = 0.15  # share of the tokens masked in the second text view
    text_ntxent_view: str = "mask"    # second text view: "mask" | "paraphrase" (another caption of the item, if it has one)
    paraphrase_target: bool = False   # with text_ntxent_view=paraphrase: a pair's text embedding is the normalised
                                      # mean of its caption's and its paraphrase's (half the wording noise)
    ntxent_temperature: float = 0.2
    queue_size: int = 0               # > 0 enables a MoCo momentum queue of negatives
    momentum: float = 0.995           # momentum encoder for the queued keys
    hard_negative_beta: float = 0.0   # > 0: negatives re-weighted by exp(β·logit) (Robinson et al. 2021)
    caption_words_weight: float = 0.0  # > 0: every embedding predicts its caption's words (hybridssl.losses.caption_words)
    caption_words_temperature: float = 0.1  # τ_w of the cosine word head
    caption_words_on: str = "embedding"  # "embedding": one cosine head on the joint space | "features": a linear head per tower
    subcaption_weight: float = 0.0    # > 0: each embedding also matched to a random span of its caption (hybridssl.losses.subcaptions)
    subcaption_tokens: int = 3        # K: the longest span, in tokens
    caption_negatives: int = 0        # > 0: word-replaced negatives of every caption (hybridssl.data.caption_negatives)
    hard_negatives: int = 0           # > 0 enables MoCHi mixing: number of hard negatives considered
    mixed_negatives: int = 16
    query_mixed_negatives: int = 8
    two_pass: bool = False            # naive baseline (benchmarks): contrastive on a separate unmasked pass
    gather: str = "global"            # torchrun: "global" = InfoNCE over the negatives of every rank, "local" = own rank
    kl_beta: float = 1.0              # VAE
    kl_warmup_steps: int = 200

    def __post_init__(self) -> None:
        for key in ("temperature", "min_temperature", "ntxent_temperature", "caption_words_temperature"):
            v = float(getattr(self, key))
            if not math.isfinite(v) or v <= 0:
                raise ValueError(f"loss.{key} must be a finite number > 0, got {v}")
        for key in ("ntxent_weight", "text_ntxent_weight", "hard_negative_beta", "caption_words_weight",
                    "subcaption_weight"):
            v = float(getattr(self, key))
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"loss.{key} must be a finite number >= 0, got {v}")
        if not 0.0 <= float(self.text_ntxent_mask_ratio) < 1.0:
            raise ValueError(f"loss.text_ntxent_mask_ratio must lie in [0, 1), got {self.text_ntxent_mask_ratio}")
        if isinstance(self.caption_negatives, bool) or not isinstance(self.caption_negatives, int) \
                or not 0 <= self.caption_negatives <= 16:
            raise ValueError(f"loss.caption_negatives must be an integer in [0, 16], got {self.caption_negatives!r}")
        if isinstance(self.subcaption_tokens, bool) or not isinstance(self.subcaption_tokens, int) \
                or self.subcaption_tokens < 1:
            raise ValueError(f"loss.subcaption_tokens must be an integer >= 1, got {self.subcaption_tokens!r}")
        if self.paraphrase_target and (self.text_ntxent_view != "paraphrase" or self.text_ntxent_weight <= 0):
            raise ValueError("loss.paraphrase_target needs the paraphrase view: loss.text_ntxent_view=paraphrase and "
                             "loss.text_ntxent_weight > 0")
        for key, choices in (("caption_words_on", ("embedding", "features")), ("ntxent_view", ("mask", "colour")),
                             ("text_ntxent_view", ("mask", "paraphrase"))):
            if getattr(self, key) not in choices:
                raise ValueError(f"loss.{key} must be one of {choices}, got {getattr(self, key)!r}")
