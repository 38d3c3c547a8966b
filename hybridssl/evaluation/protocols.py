"""The whole evaluation of a trained run as one function, :func:`evaluate_run` (``hssl eval``).

Data. The low-label protocols need labelled items the model did not pretrain on:

* built-in data (the run's ``builtin[:…]`` spec, or ``--data builtin[:…]`` without ``split=``): the
  pool is ``SyntheticScenes(split="val", size=pool_size)`` and the test set
  ``SyntheticScenes(split="test", size=test_size)``, with the run's seed and image size;
* any other spec, or a dataset object: a seeded 80/20 pool/test partition
  (``np.random.default_rng(seed).permutation(n)``, the first ``round(0.2·n)`` positions are the test
  set; seed = the run's ``train.seed``); with no ``data`` (or the run's own training spec) for a run
  trained on user data, the run's held-out validation set (never trained on) is the one split, and
  positions index that set (``eval.json`` ``data.held_out_of_pretraining`` says which case applied);
* a ``(pool, test)`` pair of datasets is used as given.

Embeddings are extracted once per split (batched, inference mode) and reused by every protocol.

* Retrieval (R@1/5/10, median rank, both directions, every modality pair) and zero-shot
  classification (prompt embeddings of a class averaged; ``prompts`` templates override the
  dataset's ``class_prompts``) on the test split.
* Embedding quality on the test split (Wang & Isola 2020; Roy & Vetterli 2007): per modality pair
  alignment E‖f(x) − g(y)‖² and each side's uniformity log E exp(−2‖u − v‖²); per modality the
  effective rank of the (N, E) embedding matrix (collapse: ≪ E).
* Low-label protocols on ONE tower (``modality``, default the first of image/audio/text shared by
  model and data), at each label fraction f and seed s, on the split
  ``label_fraction_split(pool labels, f, s)`` (stratified, validation = 10 % of the pool, never the
  test split). *Frozen*: linear probe (multinomial logistic regression) and weighted cosine kNN on
  the tower's **pooled features** (W, ``probe_input="features"``, the linear-probe protocol of CLIP
  and MAE; a generative-only model's projection head is untrained) or its L2-normalised joint-space
  embedding (E, ``probe_input="embedding"``); *unfrozen*: the tower fine-tuned with a linear head on
  its pooled features (W), see :mod:`hybridssl.evaluation.finetune`. Accuracy and macro-F1 are
  reported as mean ± sample std over seeds.
* Attribute probes: when the data offers several labellings (``label_sets()``; the built-in scenes:
  shape, colour, size, position, texture), the frozen probes run for each of them on the same
  embeddings, to show which factors a representation captured.

Files in ``out_dir`` (default ``RUN_DIR/eval``): ``eval.json``; ``splits.json``
(:func:`hybridssl.evaluation.labels.save_splits` format): for partitioned data ``"partition"`` →
``{"pool", "test", "seed": [s]}`` (positions in the partitioned dataset), and always
``"fraction=F/seed=S"`` → ``{"train", "val", "missing_classes"}`` (train/val: positions in the
pool). Classes without a training item are reported per seed (``missing_classes``); a seed whose
training or validation split is empty is recorded as skipped, not an error. ``fractions.png``,
``projection.png``, ``retrieval_examples.png``. Passing ``splits_file`` reuses the fraction splits
of an earlier evaluation instead of drawing them.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hybridssl.checkpoint import atomic_write_text
from hybridssl.config import RunConfig
from hybridssl.data.base import MultimodalDataset
from hybridssl.data.open import open_dataset, parse_builtin_args
from hybridssl.data.splits import IndexSubset, build_datasets, is_builtin
from hybridssl.evaluation.embed import Embeddings, extract_embeddings
from hybridssl.evaluation.finetune import (FinetuneConfig, PositionTagged, finetune_classifier, load_inputs,
                                           pick_modality, split_tags)
from hybridssl.evaluation.heldout import ORDER, class_prompts, retrieval_report, zero_shot_report
from hybridssl.evaluation.knn import knn_classify
from hybridssl.evaluation.labels import label_fraction_split, load_splits, save_splits
from hybridssl.evaluation.probes import linear_probe, summarize
from hybridssl.evaluation.quality import alignment, effective_rank, uniformity

DEFAULT_FRACTIONS = (0.01, 0.05, 0.1, 1.0)
PROTOCOLS = ("linear_probe", "knn", "finetune")
VAL_FRACTION = 0.1
TEST_FRACTION = 0.2

Progress = Callable[[str, int, int], None]          # (what is running, units done, units total)
DataArg = str | MultimodalDataset | tuple[MultimodalDataset, MultimodalDataset] | None


# ----------------------------------------------------------------------------- argument checks
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


def prompt_dict(templates: Sequence[str], label_names: Sequence[str]) -> dict[str, list[str]]:
    """``{class name: [template.format(name) …]}`` in label order; every template needs one ``{}``."""
    templates = [t.strip() for t in templates if t.strip()]
    if not templates:
        raise ValueError("--prompts is empty: give templates such as 'a {},a photo of a {}'")
    for t in templates:
        if t.count("{}") != 1 or t.replace("{}", "").count("{") or t.replace("{}", "").count("}"):
            raise ValueError(f"prompt template {t!r} must contain the class placeholder '{{}}' exactly once")
    return {name: [t.format(name) for t in templates] for name in label_names}


def fraction_key(fraction: float) -> str:
    return f"{fraction:g}"


def split_name(fraction: float, seed: int) -> str:
    return f"fraction={fraction_key(fraction)}/seed={seed}"


# ----------------------------------------------------------------------------- data
def partition(n: int, seed: int, test_fraction: float = TEST_FRACTION) -> tuple[list[int], list[int]]:
    """Seeded pool/test partition of range(n): (pool positions, test positions), both sorted."""
    if n < 2:
        raise ValueError(f"the evaluation data has {n} item(s); at least 2 are needed for a pool/test split")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = min(n - 1, max(1, int(round(test_fraction * n))))
    return sorted(perm[n_test:].tolist()), sorted(perm[:n_test].tolist())


def resolve_data(data: DataArg, cfg: RunConfig, pool_size: int, test_size: int, cap: bool = False) -> dict[str, Any]:
    """{"pool", "test", "description", "partition": {"pool", "test", "seed"} | None, "held_out"} (module doc).

    ``held_out``: True when no pool or test item was in the run's pretraining data (built-in val/test
    splits, the run's held-out split, its ``data.val`` set), False when every one was (the run's
    training spec with a separate ``data.val``: a *transductive* evaluation — labels unseen, images
    not), None when unknown (other data). Asking for the run's own training spec without a separate
    ``data.val`` gives the held-out split, never the items the run trained on.

    ``cap``: partitioned data keeps a seeded uniform subsample of at most ``pool_size`` / ``test_size``
    positions of its pool and test parts, for quick evaluations of big sets."""
    seed = cfg.train.seed
    if isinstance(data, tuple):
        if len(data) != 2:
            raise ValueError("data as a tuple must be (pool dataset, test dataset)")
        return {"pool": data[0], "test": data[1], "description": f"{data[0].name} / {data[1].name}", "partition": None,
                "held_out": None}
    spec = cfg.data.train if data is None else data
    if isinstance(spec, str) and is_builtin(spec):
        args = parse_builtin_args(spec.partition(":")[2]) if ":" in spec else {}
        if "split" not in args:
            common = {k: v for k, v in {"seed": seed, "image_size": cfg.data.image_size}.items() if k not in args}
            pool = open_dataset(spec, split="val", **common, **({} if "size" in args else {"size": pool_size}))
            test = open_dataset(spec, split="test", **common, **({} if "size" in args else {"size": test_size}))
            return {"pool": pool, "test": test, "description": f"{spec} (pool: split=val, test: split=test)",
                    "partition": None, "held_out": True}
    same_as_training = isinstance(data, str) and data.strip() == cfg.data.train.strip()
    held_out: bool | None = None
    if data is None or (same_as_training and not cfg.data.val):
        full = build_datasets(cfg.data, seed, None)[1]                # the run's held-out set
        what, held_out = f"held-out set of {cfg.data.train} (never pretrained on)", True
    elif isinstance(data, str):
        full, what = open_dataset(data, **cfg.data.open_kwargs(data)), data
        if same_as_training:
            what, held_out = f"{data}, the run's pretraining data (transductive: labels unseen, items seen)", False
        elif cfg.data.val and data.strip() == cfg.data.val.strip():
            what, held_out = f"{data}, the run's validation set (never pretrained on)", True
    elif isinstance(data, MultimodalDataset):
        full, what = data, getattr(data, "name", type(data).__name__)
    else:
        raise ValueError(f"data must be a dataset spec, a dataset or a (pool, test) pair, got {type(data).__name__}")
    pool_idx, test_idx = partition(len(full), seed)
    if cap:
        rng = np.random.default_rng(seed)
        pool_idx, test_idx = (sorted(rng.choice(idx, n, replace=False).tolist()) if len(idx) > n else idx
                              for idx, n in ((pool_idx, pool_size), (test_idx, test_size)))
        what += f", capped at {pool_size}/{test_size}"
    return {"pool": IndexSubset(full, pool_idx, f"{full.name}[pool]"),
            "test": IndexSubset(full, test_idx, f"{full.name}[test]"),
            "description": f"{what} (seeded {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} pool/test split)",
            "partition": {"pool": pool_idx, "test": test_idx, "seed": [seed]}, "held_out": held_out}


def extract_tagged(model, dataset, spec, tokenizer, num_workers: int = 0) -> tuple[Embeddings, np.ndarray]:
    """Embeddings of every item with their real keys, and each row's dataset position (n,)."""
    emb = extract_embeddings(model, PositionTagged(dataset), spec, tokenizer, num_workers=num_workers)
    positions, keys = split_tags(emb.keys)
    return replace(emb, keys=keys), positions


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
                     probe_input: str = "features") -> dict[str, Any]:
    """Linear probe, kNN and (optionally) fine-tuning at every fraction × seed (module docstring)."""
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
    if finetune:
        needed = sorted({int(p) for sp in splits.values() for part in ("train", "val") for p in sp[part]})
        ft_train = load_inputs(pool_ds, run.spec, run.tokenizer, modality, needed, num_workers=run.cfg.data.num_workers)
        ft_test = load_inputs(test_ds, run.spec, run.tokenizer, modality, tpos.tolist(),
                              num_workers=run.cfg.data.num_workers)
    protocols = ("linear_probe", "knn") + (("finetune",) if finetune else ())
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
    return {
        "modality": modality,
        "features": {
            "linear_probe": (f"frozen {modality} pooled tower features (W={x.shape[1]})" if probe_input == "features"
                             else f"frozen {modality} joint-space embedding (E={x.shape[1]}, L2-normalised)"),
            "knn": f"frozen {modality} {'pooled tower features' if probe_input == 'features' else 'joint-space embedding'}"
                   f" ({x.shape[1]}-d, cosine)",
            **({"finetune": f"{modality} tower unfrozen + linear head on its pooled features "
                            f"(W={run.model.feature_dim(modality)}), AdamW, {ft_cfg.steps} steps"} if finetune else {}),
        },
        "fractions": list(fractions),
        "seeds": list(seeds),
        "n_pool_labelled": int(np.sum(pool_labels >= 0)),
        "n_test": int(len(ty)),
        "n_classes": n_classes,
        "chance": 100.0 / n_classes,
        "protocols": {p: {k: _summarise_fraction(v) for k, v in runs[p].items()} for p in protocols},
        "seconds": {p: round(v, 3) for p, v in seconds.items()},
        "finetune_config": vars(ft_cfg) if finetune else None,
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
                     "protocols": {p: {f: {k: r.get(k) for k in ("accuracy", "macro_f1")} for f, r in by_f.items()}
                                   for p, by_f in rep.get("protocols", {}).items()}}
    return out


def quality_report(emb: Embeddings) -> dict[str, Any]:
    """Alignment/uniformity per modality pair, effective rank/uniformity per modality (test split)."""
    present = [m for m in ORDER if m in emb.by_modality]
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


# ----------------------------------------------------------------------------- retrieval examples
def _panel(dataset, position: int, modality: str, spec, title: str, correct: bool | None):
    from hybridssl.evaluation.plots import Panel
    from hybridssl.preprocessing import preprocess_audio

    try:
        s = dataset[int(position)]
        if modality == "image" and s.image is not None:
            return Panel("image", s.image, title, correct)
        if modality == "audio" and s.audio is not None:
            mel, _ = preprocess_audio(s.audio, s.sample_rate, spec.audio)   # (1, M, T)
            return Panel("spectrogram", mel[0].numpy(), title, correct)
        if modality == "text" and s.caption:
            return Panel("text", s.caption, title, correct)
    except Exception:  # a display problem must not sink the evaluation
        pass
    return Panel("none", None, title, correct)


def retrieval_examples(emb: Embeddings, positions: np.ndarray, dataset, spec, n_rows: int = 6, k: int = 5,
                       seed: int = 0) -> list[list]:
    """Rows [query panel, top-k result panels] cycling over the retrieval directions present."""
    present = [m for m in ORDER if m in emb.by_modality]
    directions = [(a, b) for a, b in itertools.permutations(present, 2)]
    if not directions:
        return []
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n_rows):
        a, b = directions[r % len(directions)]
        qa, ga = emb.by_modality[a], emb.by_modality[b]                 # (n_a, E), (n_b, E)
        q = int(rng.integers(len(qa)))
        sims = ga @ qa[q]                                               # (n_b,)
        top = np.argsort(-sims, kind="stable")[:k]
        q_item = int(emb.index[a][q])
        row = [_panel(dataset, positions[q_item], a, spec, f"query ({a}→{b})", None)]
        for rank, g in enumerate(top, start=1):
            g_item = int(emb.index[b][g])
            ok = emb.keys[g_item] == emb.keys[q_item]
            row.append(_panel(dataset, positions[g_item], b, spec, f"#{rank} cos {sims[g]:.2f}", ok))
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- the evaluation
def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return _json_safe(x.tolist())
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return v if math.isfinite(v) else None
    return x


def evaluate_run(run_dir: str | Path, data: DataArg = None, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                 seeds: Sequence[int] = (0, 1, 2), finetune: bool = True, finetune_steps: int = 100,
                 prompts: Sequence[str] | None = None, out_dir: str | Path | None = None,
                 pool_size: int = 2000, test_size: int = 1000, progress: Progress | None = None, *,
                 modality: str | None = None, checkpoint: str | None = None, splits_file: str | Path | None = None,
                 finetune_config: FinetuneConfig | None = None, device: str = "auto",
                 examples: int = 6, threads: int = 0, loader: Callable[..., Any] | None = None,
                 probe_input: str = "features", attribute_probes: bool = True, cap: bool = False) -> dict[str, Any]:
    """Evaluate a trained run (module docstring); writes eval.json, splits.json and PNGs, returns the dict.

    ``data``: None (the run's data), a spec string, a dataset (split 80/20) or a (pool, test) pair.
    ``seeds``: the seeds themselves (at least 3 for a reported mean ± std). ``pool_size`` /
    ``test_size`` size built-in data; other data is split whole unless ``cap`` (then they bound the
    seeded random pool/test parts). ``finetune_config`` overrides ``finetune_steps``.
    ``progress(what, done, total)`` is called as units of work complete. ``threads`` > 0 sets torch's intra-op thread count for the duration of the call (restored after).
    ``loader(run_dir, checkpoint, device=...)`` rebuilds the run (default :func:`hybridssl.run.load_run`;
    the CLI passes one that also knows distilled students). ``probe_input``: what frozen probes read,
    ``"features"`` (pooled tower features, the CLIP/MAE linear-probe protocol) or ``"embedding"``.
    ``attribute_probes``: also probe every labelling the data offers (built-in data: each attribute).
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be an integer >= 0, got {threads!r}")
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _evaluate(run_dir, data, fractions, seeds, finetune, finetune_steps, prompts, out_dir, pool_size,
                         test_size, progress, modality, checkpoint, splits_file, finetune_config, device, examples,
                         loader, probe_input, attribute_probes, cap)
    finally:
        torch.set_num_threads(previous)


def _evaluate(run_dir: str | Path, data: DataArg, fractions: Sequence[float], seeds: Sequence[int], finetune: bool,
              finetune_steps: int, prompts: Sequence[str] | None, out_dir: str | Path | None, pool_size: int,
              test_size: int, progress: Progress | None, modality: str | None, checkpoint: str | None,
              splits_file: str | Path | None, finetune_config: FinetuneConfig | None, device: str,
              examples: int, loader: Callable[..., Any] | None, probe_input: str,
              attribute_probes: bool, cap: bool) -> dict[str, Any]:
    from hybridssl.evaluation import plots
    from hybridssl.run import load_run
    from hybridssl.trainer import resolve_device

    fractions = check_fractions(fractions)
    seeds = check_seeds(seeds)
    if pool_size < 2 or test_size < 2:
        raise ValueError(f"pool_size and test_size must be >= 2, got {pool_size}, {test_size}")
    if probe_input not in PROBE_INPUTS:
        raise ValueError(f"probe_input must be one of {PROBE_INPUTS}, got {probe_input!r}")
    if finetune_steps < 1:
        raise ValueError(f"finetune_steps must be >= 1, got {finetune_steps}")
    ft_cfg = finetune_config or FinetuneConfig(steps=finetune_steps)
    if prompts is not None:
        prompt_dict(prompts, ["x"])                                    # fail fast on a bad template
    t_start = time.perf_counter()
    run = (loader or load_run)(Path(run_dir), checkpoint, device=str(resolve_device(device)))
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "eval"
    out.mkdir(parents=True, exist_ok=True)
    src = resolve_data(data, run.cfg, pool_size, test_size, cap)
    pool_ds, test_ds = src["pool"], src["test"]
    label_names = list(pool_ds.label_names or test_ds.label_names or [])

    total = 4 + len(fractions) * len(seeds) * (2 if finetune else 1)
    done = 0

    def tick(what: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(what, done, total)

    if progress is not None:
        progress("embedding the pool", 0, total)
    workers = run.cfg.data.num_workers
    t0 = time.perf_counter()
    pool_emb, pool_pos = extract_tagged(run.model, pool_ds, run.spec, run.tokenizer, workers)
    tick("embedding the test split")
    test_emb, test_pos = extract_tagged(run.model, test_ds, run.spec, run.tokenizer, workers)
    t_extract = time.perf_counter() - t0
    tick("retrieval, zero-shot and embedding quality")

    t0 = time.perf_counter()
    retrieval = retrieval_report(test_emb)
    if prompts is not None and label_names:
        cls_prompts = prompt_dict(prompts, label_names)
    else:
        cls_prompts = class_prompts(test_ds, label_names or None)
    zero_shot = zero_shot_report(run.model, run.tokenizer, test_emb, cls_prompts)
    quality = quality_report(test_emb)
    t_heldout = time.perf_counter() - t0
    tick("low-label protocols")

    available = [m for m in pool_emb.by_modality if m in test_emb.by_modality]
    tower = pick_modality(run.model.modalities, available, modality)
    if len(label_names) < 2:
        low = {"skipped": "the data has fewer than 2 classes", "modality": tower}
    else:
        low = low_label_report(run, pool_emb, pool_pos, test_emb, test_pos, pool_ds, test_ds, label_names, tower,
                               fractions, seeds, finetune, ft_cfg, out, src["partition"],
                               Path(splits_file) if splits_file else None, tick, probe_input)
    attributes = (attribute_report(run, pool_emb, pool_pos, test_emb, test_pos, pool_ds, test_ds, tower, fractions,
                                   seeds, out, probe_input) if attribute_probes else {})

    t0 = time.perf_counter()
    files = {"eval": str(out / "eval.json")}
    if (out / "splits.json").exists() and "protocols" in low:
        files["splits"] = str(out / "splits.json")
    if "protocols" in low:
        files["fractions_plot"] = str(plots.plot_fraction_curves(
            low["protocols"], out / "fractions.png", chance=low["chance"],
            title=f"Low-label evaluation ({tower} tower, {len(seeds)} seed(s))"))
    labels_by_m = {m: test_emb.labels[test_emb.index[m]] for m in test_emb.by_modality}
    if sum(len(v) for v in test_emb.by_modality.values()) >= 2:
        files["projection_plot"] = str(plots.plot_projection(test_emb.by_modality, labels_by_m, label_names or None,
                                                             out / "projection.png"))
    grid = retrieval_examples(test_emb, test_pos, test_ds, run.spec, n_rows=examples)
    if grid:
        files["retrieval_plot"] = str(plots.plot_retrieval_grid(grid, out / "retrieval_examples.png"))
    t_plots = time.perf_counter() - t0
    tick("done")

    result = {
        "run": str(run_dir),
        "step": int(run.state.get("step", 0)),
        "checkpoint": checkpoint or "latest",
        "data": {"description": src["description"], "held_out_of_pretraining": src["held_out"],
                 "n_pool": len(pool_ds), "n_test": len(test_ds),
                 "label_names": label_names, "pool_embedded": len(pool_emb.keys), "test_embedded": len(test_emb.keys),
                 "skipped": {"pool": pool_emb.report.to_dict(), "test": test_emb.report.to_dict()}},
        "retrieval": retrieval,
        "zero_shot": zero_shot,
        "prompts": {"source": "templates" if prompts is not None else "dataset",
                    "templates": list(prompts) if prompts is not None else None},
        "low_label": low,
        "attribute_probes": attributes,
        "quality": quality,
        "files": files,
        "seconds": {"extract": round(t_extract, 2), "retrieval_zero_shot_quality": round(t_heldout, 2),
                    "plots": round(t_plots, 2), "total": round(time.perf_counter() - t_start, 2)},
    }
    result = _json_safe(result)
    atomic_write_text(out / "eval.json", json.dumps(result, indent=1))
    return result

