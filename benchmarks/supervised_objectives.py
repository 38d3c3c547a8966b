"""What can the `small` image tower learn in the default budget under supervised pressure?

Same built-in train / val splits, preprocessing and budget as `hssl train` (train.steps ×
train.batch_size samples, AdamW, the warm-up + cosine lr schedule, grad clip), the tower's pooled
features into one linear head per attribute, held-out val accuracy per attribute. Objectives:

* ``shape``       cross-entropy on shape only (the ceiling of ``benchmarks/ceiling.py``);
* ``all``         Σ of the five attributes' cross-entropies (does learning colour, size, position and
                  texture at once crowd shape out?);
* ``mask_shape``  shape only, with the pretraining's input masking (``model.image_mask_ratio``);
* ``synonyms``    cross-entropy on the shape *phrase* the caption used (20 classes: is the synonym
                  noise of the captions what stops shape?);
* ``words``       the caption's bag of words as the target, ``KL(y ‖ softmax(W f + b))`` with
                  idf-weighted ``y`` (SuperClass's objective on the pooled features);
* ``words_bce``   the same words as independent binary targets, ``Σ_v BCE(σ(W f + b)_v, 1[v ∈ c])``
                  (CatLIP's multi-label objective);
* ``shape_words_bce`` / ``attribute_words_bce``  the same, restricted to the words of the shape
                  phrases / of every attribute's phrases (which of the caption's words crowd shape out?).

Besides the heads' own accuracy, every objective's frozen features get a linear probe per attribute
on 10 % of the train split (λ on a disjoint 1000-item slice), scored on the val split — the protocol of
``benchmarks/ceiling.py``, so caption targets and attribute labels are compared on one scale.

    .venv/bin/python benchmarks/supervised_objectives.py            # every objective, ~50 CPU-minutes
    .venv/bin/python benchmarks/supervised_objectives.py --objectives all --threads 1
    .venv/bin/python benchmarks/supervised_objectives.py --objectives attribute_words_bce --grad-clip 0
    .venv/bin/python benchmarks/supervised_objectives.py --objectives attribute_words_bce --sgd-lr 0.05

Prints a rich table and writes benchmarks/results/supervised_objectives.json (with the CPU model and ISA).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from ceiling import Inputs, probes, split_inputs, tower_features  # noqa: E402

from edge_runtime.machine import machine_info  # noqa: E402
from hybridssl.config import RunConfig, load_config  # noqa: E402
from hybridssl.data.splits import build_datasets  # noqa: E402
from hybridssl.data.synthetic_text import ATTRIBUTES, N_CAPTION_DRAWS, SYNONYMS, make_caption  # noqa: E402
from hybridssl.losses.caption_words import word_kl  # noqa: E402
from hybridssl.runs import build_model  # noqa: E402
from hybridssl.schedule import clip_norm, warmup_cosine  # noqa: E402

OUT = Path(__file__).parent / "results" / "supervised_objectives.json"
OBJECTIVES = ("shape", "all", "mask_shape", "synonyms", "words", "words_bce", "shape_words_bce", "attribute_words_bce")
SHAPE_PHRASES = [p for v in ATTRIBUTES["shape"] for p in SYNONYMS["shape"][v]]


def shape_phrase(caption: str, shape: str) -> int:
    """Index in SHAPE_PHRASES of the (longest) phrase of ``shape`` that ``caption`` uses."""
    used = [p for p in SYNONYMS["shape"][shape] if re.search(rf"\b{re.escape(p)}\b", caption)]
    if not used:
        raise ValueError(f"no phrase of {shape!r} in {caption!r}")
    return SHAPE_PHRASES.index(max(used, key=len))


#: the attributes whose phrases' words a restricted word objective keeps (all caption words otherwise)
WORDS_OF = {"shape_words_bce": ("shape",), "attribute_words_bce": tuple(ATTRIBUTES)}


def words_of(text: str) -> set[str]:
    """The distinct lower-case words of ``text`` ("five-pointed star" → five, pointed, star)."""
    return set(re.findall(r"[a-z]+", text.lower()))


def phrase_words(attributes: tuple[str, ...]) -> set[str]:
    """The words of every synonym phrase of ``attributes``."""
    return {w for a in attributes for phrases in SYNONYMS[a].values() for p in phrases for w in words_of(p)}


def word_bags(captions: list[str], keep: set[str] | None = None) -> torch.Tensor:
    """(N, V) 0/1: which words of the captions' vocabulary (only those in ``keep`` if given) each has."""
    words = [{w for w in words_of(c) if keep is None or w in keep} for c in captions]
    index = {w: i for i, w in enumerate(sorted(set().union(*words)))}
    bags = torch.zeros(len(captions), len(index))
    for row, ws in enumerate(words):
        bags[row, [index[w] for w in ws]] = 1.0
    return bags


def paraphrased(train: Inputs, k: int, seed: int = 0) -> list[list[str]]:
    """Every item's caption followed by ``k`` fresh captions of its scene (the grammar drawn again)."""
    rng = np.random.default_rng(seed)
    out = []
    for caption, y in zip(train.captions or [], train.y):
        values = {a: vals[v] for (a, vals), v in zip(ATTRIBUTES.items(), y)}
        out.append([caption, *(make_caption(values, rng.random(N_CAPTION_DRAWS)) for _ in range(k))])
    return out


def objective_targets(objective: str, train: Inputs, paraphrases: int = 0) -> tuple[torch.Tensor, int]:
    """The per-item targets of ``objective`` and the width of its head. With ``paraphrases`` = K > 0 a
    word objective's target is the mean word bag of the caption and K paraphrases of its scene: the
    wording noise of the target shrinks K + 1 times in variance (COCO-style data has 5 captions)."""
    if objective == "synonyms":
        shapes = ATTRIBUTES["shape"]
        idx = [shape_phrase(c, shapes[k]) for c, k in zip(train.captions or [], train.y[:, 0])]
        return torch.tensor(idx), len(SHAPE_PHRASES)
    if "words" in objective:
        keep = phrase_words(WORDS_OF[objective]) if objective in WORDS_OF else None
        groups = paraphrased(train, paraphrases)
        flat = word_bags([c for g in groups for c in g], keep)   # one vocabulary for every caption
        bags = flat.view(len(groups), paraphrases + 1, -1).mean(1)
        if objective == "words":   # idf-weighted distributions, rows summing to 1 (CaptionWords' idf)
            idf = torch.log((1.0 + len(bags)) / (1.0 + bags.sum(0)))
            bags = bags * idf
            bags = bags / bags.sum(1, keepdim=True)
        return bags, bags.shape[1]
    return torch.from_numpy(train.y), 0


def objective_loss(objective: str, logits: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """The objective's loss of one batch (``logits``: the heads' outputs, ``targets`` its rows)."""
    if objective == "words":
        return word_kl(logits[0], targets)
    if objective.endswith("words_bce"):
        return F.binary_cross_entropy_with_logits(logits[0], targets, reduction="sum") / len(targets)
    if objective == "synonyms":
        return F.cross_entropy(logits[0], targets)
    return sum((F.cross_entropy(z, targets[:, k]) for k, z in enumerate(logits)), torch.zeros(()))


def train_and_score(cfg: RunConfig, objective: str, train: Inputs, val: Inputs,
                    sgd_lr: float = 0.0, paraphrases: int = 0) -> dict[str, dict[str, float]]:
    """``{"head": held-out accuracy (%) of every attribute head the objective trains, "probe": the
    10 %-label linear probe's held-out accuracy (%) per attribute on the trained tower's features}``.
    With ``sgd_lr > 0`` the optimiser is SGD with Nesterov momentum 0.9 at that peak lr instead of the
    preset's AdamW (a step not normalised by the gradient's variance), with the same decay per step."""
    tc, names = cfg.train, list(ATTRIBUTES)
    torch.manual_seed(tc.seed)
    model = build_model(cfg, 1, ("image",))
    width = model.feature_dim("image")
    targets, n_out = objective_targets(objective, train, paraphrases)
    used = list(range(len(names))) if objective == "all" else [names.index("shape")]
    sizes = [n_out] if n_out else [len(ATTRIBUTES[names[k]]) for k in used]
    heads = torch.nn.ModuleList([torch.nn.Linear(width, n) for n in sizes])
    params = [*model.tower_parameters("image"), *heads.parameters()]
    peak = sgd_lr or tc.lr
    opt = (torch.optim.SGD(params, lr=peak, momentum=0.9, nesterov=True, weight_decay=tc.weight_decay * tc.lr / peak)
           if sgd_lr else torch.optim.AdamW(params, lr=peak, weight_decay=tc.weight_decay, betas=tuple(tc.betas)))
    gen = torch.Generator().manual_seed(tc.seed)
    ratio = cfg.model.image_mask_ratio if objective.startswith("mask") else 0.0
    model.train()
    for step in range(tc.steps):
        for g in opt.param_groups:
            g["lr"] = peak * warmup_cosine(step, tc.steps, tc.warmup_steps, tc.min_lr_ratio)
        idx = torch.randint(0, len(train.x), (tc.batch_size,), generator=gen)
        pooled = model.encode("image", train.x[idx], mask_ratio=ratio, generator=gen).pooled
        batch_targets = targets[idx] if n_out else targets[idx][:, used]
        loss = objective_loss(objective, [h(pooled) for h in heads], batch_targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip_norm(tc.grad_clip))
        opt.step()
    feats, train_feats = tower_features(model, val, "image"), tower_features(model, train, "image")
    head_acc = {}
    if not n_out:
        with torch.inference_mode():
            head_acc = {names[k]: 100.0 * float((h(torch.from_numpy(feats)).argmax(1).numpy() == val.y[:, k]).mean())
                        for k, h in zip(used, heads)}
    probe = {a: probes(train_feats, train.y[:, k], feats, val.y[:, k], len(ATTRIBUTES[a]), (0.1,))["0.1"]
             for k, a in enumerate(names)}
    return {"head": head_acc, "probe": probe}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="small")
    ap.add_argument("--objectives", default=",".join(OBJECTIVES))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--grad-clip", type=float, default=None, help="train.grad_clip (0: no clipping; default: the preset's)")
    ap.add_argument("--sgd-lr", type=float, default=0.0, help="SGD (Nesterov 0.9) at this peak lr instead of AdamW")
    ap.add_argument("--paraphrases", type=int, default=0,
                    help="word objectives: average the target over the caption and K fresh captions of its scene")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    objectives = [o for o in args.objectives.split(",") if o]
    unknown = set(objectives) - set(OBJECTIVES)
    if unknown:
        raise SystemExit(f"unknown objective(s) {sorted(unknown)}; choose from {OBJECTIVES}")
    cfg = load_config(args.config, [] if args.grad_clip is None else [f"train.grad_clip={args.grad_clip}"])
    train_ds, val_ds = build_datasets(cfg.data, cfg.train.seed)
    train, val = split_inputs(train_ds, cfg.preprocess, "image"), split_inputs(val_ds, cfg.preprocess, "image")
    rows = {}
    for objective in objectives:
        t = time.process_time()
        rows[objective] = {**train_and_score(cfg, objective, train, val, args.sgd_lr, args.paraphrases), "cpu_s": time.process_time() - t}
        print(objective, json.dumps(rows[objective]), flush=True)
    table = Table(title=f"Objectives for the image tower of {args.config!r}: held-out accuracy (%), "
                        "the objective's own heads / a 10 %-label probe on its features")
    for col in ("objective", *ATTRIBUTES, "CPU s"):
        table.add_column(col, justify="left" if col == "objective" else "right")
    for objective, row in rows.items():
        head, probe = row["head"], row["probe"]
        table.add_row(objective, *(f"{head[a]:.1f} / {probe[a]:.1f}" if a in head else f"– / {probe[a]:.1f}"
                                   for a in ATTRIBUTES), f"{row['cpu_s']:.0f}")
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"config": args.config, "steps": cfg.train.steps, "batch_size": cfg.train.batch_size, "paraphrases": args.paraphrases,
                                    "objectives": rows, "machine": machine_info()}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
