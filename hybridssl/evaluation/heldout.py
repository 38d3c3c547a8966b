"""The held-out report printed at the end of ``hssl train``: cross-modal retrieval for every
modality pair (both directions) and zero-shot classification, each beside its chance level.

Zero-shot prompts: the dataset's own ``class_prompts()`` when it has one (the built-in data), else
``PROMPT_TEMPLATES`` filled with each label name; prompt embeddings of a class are averaged.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from edge_runtime.modalities import ordered_modalities
from hybridssl.evaluation.embed import Embeddings, embed_texts, extract_embeddings
from hybridssl.evaluation.retrieval import bidirectional_retrieval
from hybridssl.evaluation.zeroshot import class_embeddings, zero_shot_accuracy
from hybridssl.models.interface import TowerModel
from hybridssl.tokenizer import TextTokenizer

PROMPT_TEMPLATES = ("a {}", "a photo of a {}", "the sound of a {}", "{}")


def class_prompts(dataset, label_names: list[str] | None) -> dict[str, list[str]] | None:
    fn = getattr(dataset, "class_prompts", None)
    if callable(fn):
        return fn()
    if not label_names:
        return None
    return {name: [t.format(name) for t in PROMPT_TEMPLATES] for name in label_names}


def retrieval_report(emb: Embeddings, ks=(1, 5, 10)) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    present = list(ordered_modalities(emb.by_modality))
    for a, b in itertools.combinations(present, 2):
        ea, eb, keys = emb.paired(a, b)
        if len(keys) < 2:
            continue
        out.update(bidirectional_retrieval(ea, eb, keys, (a, b), ks=ks))
    return out


def _prompt_accuracy(model: TowerModel, tokenizer: TextTokenizer, emb: Embeddings, prompts: dict[str, list[str]],
                     labels: np.ndarray) -> dict[str, dict[str, float]]:
    """Zero-shot accuracy per non-text modality: classes are the prompt groups (in order), ``labels``
    (n_items,) the class index of every item, −1 = unlabeled (left out)."""
    _, cls_emb = class_embeddings({c: embed_texts(model, tokenizer, p) for c, p in prompts.items()})
    out: dict[str, dict[str, float]] = {}
    for m in ordered_modalities(emb.by_modality):
        if m == "text":
            continue
        y = labels[emb.index[m]]
        keep = y >= 0
        if keep.any():
            out[m] = zero_shot_accuracy(emb.by_modality[m][keep], y[keep], cls_emb)
    return out


def zero_shot_report(model: TowerModel, tokenizer: TextTokenizer | None, emb: Embeddings,
                     prompts: dict[str, list[str]] | None) -> dict[str, dict[str, float]]:
    if tokenizer is None or prompts is None or "text" not in model.modalities:
        return {}
    return _prompt_accuracy(model, tokenizer, emb, prompts, emb.labels)


def attribute_zero_shot_report(model: TowerModel, tokenizer: TextTokenizer | None, emb: Embeddings,
                               dataset) -> dict[str, dict[str, dict[str, float]]]:
    """Zero-shot classification of every scene attribute (datasets that describe items by attributes,
    such as the built-in scenes): ``{attribute: {modality: metrics}}``. The labels come from each
    item's scene key, the prompts from the dataset's caption vocabulary."""
    prompts_fn = getattr(dataset, "attribute_prompts", None)
    parse = getattr(dataset, "key_attributes", None)
    if tokenizer is None or not callable(prompts_fn) or not callable(parse) or "text" not in model.modalities:
        return {}
    attrs = [parse(k) for k in emb.keys]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for attribute, prompts in prompts_fn().items():
        values = list(prompts)
        labels = np.array([values.index(a[attribute]) for a in attrs], dtype=np.int64)
        out[attribute] = _prompt_accuracy(model, tokenizer, emb, prompts, labels)
    return out


def heldout_report(model: TowerModel, tokenizer: TextTokenizer | None, emb: Embeddings, dataset,
                   label_names: list[str] | None) -> dict[str, Any]:
    return {
        "retrieval": retrieval_report(emb),
        "zero_shot": zero_shot_report(model, tokenizer, emb, class_prompts(dataset, label_names)),
        "zero_shot_attributes": attribute_zero_shot_report(model, tokenizer, emb, dataset),
        "n_items": len(emb.keys),
        "skipped": emb.report.to_dict(),
    }


def evaluate_heldout(model: Any, tokenizer: Any, val_set: Any, cfg: Any) -> dict[str, Any]:
    """The held-out report (retrieval, zero-shot) of ``model`` on up to ``cfg.train.eval_size`` items
    of ``val_set`` — what every training run ends with."""
    emb = extract_embeddings(model, val_set, cfg.preprocess, tokenizer, limit=cfg.train.eval_size,
                             num_workers=cfg.data.num_workers)
    return heldout_report(model, tokenizer, emb, val_set, val_set.label_names)
