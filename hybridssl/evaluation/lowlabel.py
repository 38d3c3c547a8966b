"""The low-label protocols on frozen embeddings and fine-tuning, over label fractions and seeds
(:func:`low_label_report`), the attribute probes (:func:`attribute_report`) and embedding quality
(:func:`quality_report`) — the metrics :func:`hybridssl.app.evaluate.evaluate_run` reports.

At each label fraction f and seed s the split is ``label_fraction_split(pool labels, f, s)``
(stratified, validation = 10 % of the pool, never the test split). *Frozen*: linear probe
(multinomial logistic regression) and weighted cosine kNN on the tower's pooled features
(``probe_input="features"``) or its joint-space embedding (``"embedding"``); *unfrozen*: the tower
fine-tuned with a linear head (:mod:`hybridssl.evaluation.finetune`). Accuracy and macro-F1 are
mean ± sample std over seeds.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.modalities import ordered_modalities
from hybridssl.data.tagged import PositionTagged
from hybridssl.evaluation.embed import Embeddings, extract_embeddings
from hybridssl.evaluation.finetune import FinetuneConfig, finetune_classifier, load_inputs
from hybridssl.evaluation.floors import floor_report
from hybridssl.evaluation.knn import knn_classify
from hybridssl.evaluation.labels import label_fraction_split, load_splits, save_splits
from hybridssl.evaluation.probes import linear_probe, summarize
from hybridssl.evaluation.quality import alignment, effective_rank, uniformity
from hybridssl.evaluation.semisup import FixMatch, FixMatchConfig, unlabelled_positions

DEFAULT_FRACTIONS = (0.01, 0.05, 0.1, 1.0)
PROTOCOLS = ("linear_probe", "knn", "finetune", "semi_supervised")
VAL_FRACTION = 0.1


def check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    """Unique fractions in (0, 1], sorted ascending."""
    out = []
    for f in fractions:
        try:
            v = float(f)
        except (TypeError, ValueError):
            raise ValueError(f"label fractions must be numbers in (0, 1], got {f!r}") from None
        if not math.isfinite(v) or not 0.0 < v <= 1.0:
            raise ValueError(f"label fractions must lie in (0, 1], got {f!r}")
        out.append(v)
    if not out:
        raise ValueError("give at least one label fraction")
    return tuple(sorted(set(out)))


def check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    out = []
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise ValueError(f"seeds must be non-negative integers, got {s!r}")
        out.append(int(s))
    if not out or len(set(out)) != len(out):
        raise ValueError(f"give at least one seed, without repeats; got {list(seeds)}")
    return tuple(out)


def fraction_key(fraction: float) -> str:
    return f"{fraction:g}"


def split_name(fraction: float, seed: int) -> str:
    return f"fraction={fraction_key(fraction)}/seed={seed}"


def extract_tagged(model, dataset, spec, tokenizer, num_workers: int = 0) -> tuple[Embeddings, np.ndarray]:
    """Embeddings of every item with their real keys, and each row's dataset position (n,)."""
    emb = extract_embeddings(model, PositionTagged(dataset), spec, tokenizer, num_workers=num_workers)
    return emb, emb.positions


PROBE_INPUTS = ("features", "embedding")


def modality_rows(emb: Embeddings, positions: np.ndarray, modality: str,
                  probe_input: str = "embedding") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For items carrying ``modality``: (inputs (n_m, E|W), labels (n_m,), dataset positions (n_m,)).

    ``probe_input``: ``"embedding"`` (joint space, E) or ``"features"`` (pooled tower features, W).
    """
    if probe_input not in PROBE_INPUTS:
        raise ValueError(f"probe_input must be one of {PROBE_INPUTS}, got {probe_input!r}")
    if modality not in emb.index:
        return np.zeros((0, 0)), np.zeros(0, np.int64), np.zeros(0, np.int64)
    items = emb.index[modality]                                   # (n_m,) item rows
    x = emb.features[modality] if probe_input == "features" else emb.by_modality[modality]
    return x, emb.labels[items].astype(np.int64), positions[items]


# ----------------------------------------------------------------------------- splits
def make_splits(pool_labels: np.ndarray, fractions: Sequence[float], seeds: Sequence[int],
                val_fraction: float = VAL_FRACTION) -> dict[str, dict[str, np.ndarray]]:
    """``{split_name(f, s): label_fraction_split(pool_labels, f, s)}``; pool_labels (n,) −1 = unusable."""
    return {split_name(f, s): label_fraction_split(pool_labels, f, s, val_fraction)
            for f in fractions for s in seeds}


def _check_loaded_splits(splits: dict[str, dict[str, np.ndarray]], pool_labels: np.ndarray,
                         fractions: Sequence[float], seeds: Sequence[int], path: Path) -> None:
    for f in fractions:
        for s in seeds:
            name = split_name(f, s)
            if name not in splits or not {"train", "val"} <= set(splits[name]):
                raise ValueError(f"{path} has no train/val split {name!r}; evaluate with the fractions and "
                                 "seeds it was written for, or leave out the splits file")
            for part in ("train", "val"):
                idx = splits[name][part]
                if idx.size and (idx.min() < 0 or idx.max() >= len(pool_labels) or np.any(pool_labels[idx] < 0)):
                    raise ValueError(f"{path}: split {name}/{part} points at pool items that are missing or "
                                     "unlabelled: it does not belong to this data")


# ----------------------------------------------------------------------------- protocols
def _frozen_protocols(x: np.ndarray, y: np.ndarray, row_of: dict[int, int], split: dict[str, np.ndarray],
                      test_x: np.ndarray, test_y: np.ndarray, n_classes: int) -> dict[str, dict]:
    """Linear probe and kNN on frozen embeddings x (n, E) of the pool rows; each result timed."""
    tr = np.array([row_of[int(p)] for p in split["train"]], dtype=np.int64)
    va = np.array([row_of[int(p)] for p in split["val"]], dtype=np.int64)
    out = {}
    for name, fn in (("linear_probe", linear_probe), ("knn", knn_classify)):
        t0 = time.perf_counter()
        r = fn(x[tr], y[tr], x[va], y[va], test_x, test_y, n_classes)
        out[name] = {**r, "seconds": round(time.perf_counter() - t0, 3)}
    return out


def _summarise_fraction(runs: list[dict]) -> dict[str, Any]:
    done = [r for r in runs if "accuracy" in r]
    out: dict[str, Any] = {
        "accuracy": summarize([r["accuracy"] for r in done]) if done else None,
        "macro_f1": summarize([r["macro_f1"] for r in done]) if done else None,
        "weighted_f1": summarize([r["weighted_f1"] for r in done]) if done else None,
        "n_train": [r["n_train"] for r in runs],
        "n_val": [r["n_val"] for r in runs],
        "missing_classes": [r["missing_classes"] for r in runs],
        "runs": runs,
    }
    if not done:
        out["skipped"] = runs[0].get("skipped", "no seed could be evaluated")
    return out


def low_label_report(run, pool_emb: Embeddings, pool_pos: np.ndarray, test_emb: Embeddings, test_pos: np.ndarray,
                     pool_ds, test_ds, label_names: Sequence[str], modality: str, fractions: Sequence[float],
                     seeds: Sequence[int], finetune: bool, ft_cfg: FinetuneConfig, out_dir: Path,
                     partition_info: dict | None, splits_file: Path | None, tick: Callable[[str], None],
                     probe_input: str = "features", semi: FixMatchConfig | None = None,
                     floors: bool = False) -> dict[str, Any]:
    """Linear probe, kNN and (optionally) fine-tuning at every fraction × seed (module docstring);
    ``semi`` adds the semi-supervised fine-tune (:mod:`hybridssl.evaluation.semisup`) beside it;
    ``floors`` the raw-input and random-init linear probes on the same splits
    (:mod:`hybridssl.evaluation.floors`)."""
    n_classes = len(label_names)
    x, y, pos = modality_rows(pool_emb, pool_pos, modality, probe_input)   # (n_m, W|E), (n_m,), (n_m,)
    pool_labels = np.full(len(pool_ds), -1, dtype=np.int64)       # (n_pool,) −1 = unusable
    pool_labels[pos] = y
    tx, ty, tpos = modality_rows(test_emb, test_pos, modality, probe_input)
    keep = ty >= 0
    tx, ty, tpos = tx[keep], ty[keep], tpos[keep]
    if not np.any(pool_labels >= 0) or len(ty) == 0:
        return {"skipped": f"no labelled {modality} item in the pool or the test split"}
    if splits_file is not None:
        splits = load_splits(splits_file)
        _check_loaded_splits(splits, pool_labels, fractions, seeds, Path(splits_file))
        splits = {split_name(f, s): splits[split_name(f, s)] for f in fractions for s in seeds}
    else:
        splits = make_splits(pool_labels, fractions, seeds)
    to_save = dict(splits)
    if partition_info is not None:
        to_save = {"partition": {k: np.asarray(v, dtype=np.int64) for k, v in partition_info.items()}, **splits}
    save_splits(out_dir / "splits.json", to_save)

    row_of = {int(p): r for r, p in enumerate(pos)}
    ft_train = ft_test = None
    semi = semi if finetune else None
    if finetune or floors:                                        # preprocessed inputs, loaded once
        needed = sorted({int(p) for sp in splits.values() for part in ("train", "val") for p in sp[part]})
        if semi is not None or floors:                            # the whole pool: the unlabelled items / floors
            needed = sorted(set(needed) | {int(p) for p in pos})
        ft_train = load_inputs(pool_ds, run.spec, run.tokenizer, modality, needed, num_workers=run.cfg.data.num_workers)
        ft_test = load_inputs(test_ds, run.spec, run.tokenizer, modality, tpos.tolist(),
                              num_workers=run.cfg.data.num_workers)
    floor = None
    if floors:
        assert ft_train is not None and ft_test is not None
        floor = floor_report(run, ft_train, ft_test, {fraction_key(f): [splits[split_name(f, s)] for s in seeds]
                                                      for f in fractions}, n_classes)
        tick("floors: raw input, random-init tower")
    protocols = ("linear_probe", "knn") + (("finetune",) if finetune else ()) + (("semi_supervised",) if semi else ())
    runs: dict[str, dict[str, list[dict]]] = {p: {} for p in protocols}
    seconds = dict.fromkeys(protocols, 0.0)
    for f in fractions:
        for s in seeds:
            sp = splits[split_name(f, s)]
            base = {"seed": s, "n_train": int(sp["train"].size), "n_val": int(sp["val"].size),
                    "missing_classes": [label_names[int(c)] for c in sp.get("missing_classes", [])]}
            if sp["train"].size == 0 or sp["val"].size == 0:
                why = f"{'no training' if sp['train'].size == 0 else 'no validation'} item at fraction {f:g}"
                for p in protocols:
                    runs[p].setdefault(fraction_key(f), []).append({**base, "skipped": why})
                tick(f"fraction {f:g}, seed {s}: skipped")
                continue
            frozen = _frozen_protocols(x, y, row_of, sp, tx, ty, n_classes)
            for p, r in frozen.items():
                seconds[p] += r["seconds"]
                runs[p].setdefault(fraction_key(f), []).append({**base, **r})
            tick(f"frozen probes: fraction {f:g}, seed {s}")
            if finetune:
                assert ft_train is not None and ft_test is not None
                r = finetune_classifier(run.model, modality, ft_train.select(sp["train"]), ft_train.select(sp["val"]),
                                        ft_test, n_classes, ft_cfg, seed=s)
                seconds["finetune"] += r["seconds"]
                runs["finetune"].setdefault(fraction_key(f), []).append({**base, **r})
                tick(f"fine-tuning: fraction {f:g}, seed {s}")
            if semi is not None:
                assert ft_train is not None and ft_test is not None
                fixmatch = FixMatch(ft_train.select(unlabelled_positions(pos, sp["val"])), semi, s)
                r = finetune_classifier(run.model, modality, ft_train.select(sp["train"]), ft_train.select(sp["val"]),
                                        ft_test, n_classes, ft_cfg, seed=s, semi=fixmatch)
                seconds["semi_supervised"] += r["seconds"]
                runs["semi_supervised"].setdefault(fraction_key(f), []).append({**base, **r})
                tick(f"semi-supervised fine-tuning: fraction {f:g}, seed {s}")
    return {
        "modality": modality,
        "features": {
            "linear_probe": (f"frozen {modality} pooled tower features (W={x.shape[1]})" if probe_input == "features"
                             else f"frozen {modality} joint-space embedding (E={x.shape[1]}, L2-normalised)"),
            "knn": f"frozen {modality} {'pooled tower features' if probe_input == 'features' else 'joint-space embedding'}"
                   f" ({x.shape[1]}-d, cosine)",
            **({"finetune": f"{modality} tower unfrozen + linear head on its pooled features "
                            f"(W={run.model.feature_dim(modality)}), AdamW, {ft_cfg.steps} steps"} if finetune else {}),
            **({"semi_supervised": f"the same fine-tune + FixMatch on the unlabelled pool (τ={semi.threshold}, "
                                   f"μ={semi.unlabelled_ratio}, λ_u={semi.weight})"} if semi else {}),
        },
        "fractions": list(fractions),
        "seeds": list(seeds),
        "n_pool_labelled": int(np.sum(pool_labels >= 0)),
        "n_test": int(len(ty)),
        "n_classes": n_classes,
        "chance": 100.0 / n_classes,
        "majority": 100.0 * float(np.bincount(ty, minlength=n_classes).max()) / len(ty),   # the test split's largest class
        "protocols": {p: {k: _summarise_fraction(v) for k, v in runs[p].items()} for p in protocols},
        **({"floors": floor} if floor is not None else {}),
        "seconds": {p: round(v, 3) for p, v in seconds.items()},
        "finetune_config": vars(ft_cfg) if finetune else None,
        "semi_supervised_config": vars(semi) if semi else None,
    }


def attribute_report(run, pool_emb: Embeddings, pool_pos: np.ndarray, test_emb: Embeddings, test_pos: np.ndarray,
                     pool_ds, test_ds, modality: str, fractions: Sequence[float], seeds: Sequence[int],
                     out_dir: Path, probe_input: str = "features") -> dict[str, Any]:
    """Frozen probes (linear, kNN) for every labelling a dataset offers (``label_sets()``, e.g. each
    attribute of the built-in scenes): which factors the representation captured. Reuses the
    extracted embeddings; splits go to ``out_dir/attributes/<name>/splits.json``. ``{}`` when the
    data has no label sets."""
    if not (hasattr(pool_ds, "label_sets") and hasattr(test_ds, "label_sets")):
        return {}
    test_sets = test_ds.label_sets()
    out: dict[str, Any] = {}
    for name, (names, pool_labels) in pool_ds.label_sets().items():
        folder = out_dir / "attributes" / name
        folder.mkdir(parents=True, exist_ok=True)
        rep = low_label_report(run, replace(pool_emb, labels=pool_labels[pool_pos]), pool_pos,
                               replace(test_emb, labels=test_sets[name][1][test_pos]), test_pos, pool_ds, test_ds,
                               names, modality, fractions, seeds, False, FinetuneConfig(), folder, None, None,
                               lambda _: None, probe_input)
        out[name] = {"n_classes": len(names), "chance": rep.get("chance"),
                     "protocols": {p: {f: {k: r.get(k) for k in ("accuracy", "macro_f1", "weighted_f1")} for f, r in by_f.items()}
                                   for p, by_f in rep.get("protocols", {}).items()}}
    return out


def quality_report(emb: Embeddings) -> dict[str, Any]:
    """Alignment/uniformity per modality pair, effective rank/uniformity per modality (test split)."""
    present = list(ordered_modalities(emb.by_modality))
    pairs: dict[str, Any] = {}
    for a, b in itertools.combinations(present, 2):
        ea, eb, keys = emb.paired(a, b)
        if len(keys) < 2:
            continue
        pairs[f"{a}-{b}"] = {"alignment": alignment(ea, eb), "uniformity": {a: uniformity(ea), b: uniformity(eb)},
                             "n": len(keys)}
    mods: dict[str, Any] = {}
    for m in present:
        e = emb.by_modality[m]
        if len(e) < 2:
            continue
        mods[m] = {"effective_rank": effective_rank(e), "dim": int(e.shape[1]), "uniformity": uniformity(e),
                   "n": int(len(e))}
    return {"pairs": pairs, "modalities": mods}
