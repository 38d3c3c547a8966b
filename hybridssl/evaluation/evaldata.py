"""Which labelled items an evaluation uses (:func:`resolve_data`): the pool the low-label splits
are drawn from and the test split, disjoint from pretraining wherever the data allows (see
:mod:`hybridssl.app.evaluate` for the rules), and the prompts of a template list (:func:`prompt_dict`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hybridssl.config import RunConfig
from hybridssl.data.base import MultimodalDataset
from hybridssl.data.open import open_dataset, parse_builtin_args
from hybridssl.data.splits import IndexSubset, build_datasets, is_builtin

TEST_FRACTION = 0.2

DataArg = str | MultimodalDataset | tuple[MultimodalDataset, MultimodalDataset] | None


def prompt_dict(templates: Sequence[str], label_names: Sequence[str]) -> dict[str, list[str]]:
    """``{class name: [template.format(name) …]}`` in label order; every template needs one ``{}``."""
    templates = [t.strip() for t in templates if t.strip()]
    if not templates:
        raise ValueError("--prompts is empty: give templates such as 'a {},a photo of a {}'")
    for t in templates:
        if t.count("{}") != 1 or t.replace("{}", "").count("{") or t.replace("{}", "").count("}"):
            raise ValueError(f"prompt template {t!r} must contain the class placeholder '{{}}' exactly once")
    return {name: [t.format(name) for t in templates] for name in label_names}


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
