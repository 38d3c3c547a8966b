"""The loss terms a configuration trains: every contrastive modality pair, the generative terms,
the intra-modal NT-Xent terms (their names key the weighting and the logs). A feature-sequence tower's
generative term is ``mfm/seq_<stream>`` (masked-frame modelling) whenever ``model.generative`` is not
``none``."""

from __future__ import annotations

import itertools

from edge_runtime.modalities import is_sequence, ordered_modalities
from hybridssl.config import RunConfig


def resolve_pairs(modalities: tuple[str, ...], requested: tuple[str, ...]) -> list[tuple[str, str]]:
    present = list(ordered_modalities(modalities))
    every = list(itertools.combinations(present, 2))
    if not requested:
        return every
    out = []
    for p in requested:
        a, _, b = p.partition("-")
        if (a, b) in every:
            out.append((a, b))
        elif (b, a) in every:
            out.append((b, a))
        else:
            raise ValueError(f"contrastive pair {p!r} needs two of the model's modalities {present}")
    return out


def loss_names(cfg: RunConfig, modalities: tuple[str, ...]) -> list[str]:
    names = []
    if cfg.loss.contrastive:
        names += [f"contrastive/{a}-{b}" for a, b in resolve_pairs(modalities, cfg.loss.pairs)]
    if cfg.model.generative != "none":
        names += [f"{cfg.model.generative}/{m}" for m in ("image", "audio") if m in modalities]
        if cfg.model.sequence_mask_ratio > 0:
            names += [f"mfm/{m}" for m in ordered_modalities(modalities) if is_sequence(m)]
    if cfg.model.text_generative == "mlm" and "text" in modalities:
        names.append("mlm/text")
    if cfg.loss.ntxent_weight > 0 and "image" in modalities:
        names.append("ntxent/image")
    if cfg.loss.text_ntxent_weight > 0 and "text" in modalities:
        names.append("ntxent/text")
    if cfg.loss.caption_words_weight > 0 and "text" in modalities:
        names += [f"words/{m}" for m in ordered_modalities(modalities)]
    if cfg.loss.subcaption_weight > 0 and "text" in modalities:
        names += [f"subcaption/{m}" for m in ordered_modalities(modalities) if m != "text"]
    if not names:
        raise ValueError("the configuration enables no loss at all")
    return names
