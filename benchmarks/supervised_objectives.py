"""What can the `small` image tower learn in the default budget under supervised pressure?

Same built-in train / val splits, preprocessing and budget as `hssl train` (train.steps ×
train.batch_size samples, AdamW, the warm-up + cosine lr schedule, grad clip), the tower's pooled
features into one linear head per attribute, held-out val accuracy per attribute. Objectives:

* ``shape``       cross-entropy on shape only (the ceiling of ``benchmarks/ceiling.py``);
* ``all``         Σ of the five attributes' cross-entropies (does learning colour, size, position and
                  texture at once crowd shape out?);
* ``mask_shape``  shape only, with the pretraining's input masking (``model.image_mask_ratio``).

    .venv/bin/python benchmarks/supervised_objectives.py            # all three, ~15 CPU-minutes
    .venv/bin/python benchmarks/supervised_objectives.py --objectives all --threads 1

Prints a rich table and writes benchmarks/results/supervised_objectives.json (with the CPU model and ISA).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from ceiling import Inputs, split_inputs, tower_features  # noqa: E402

from edge_runtime.machine import machine_info  # noqa: E402
from hybridssl.config import RunConfig, load_config  # noqa: E402
from hybridssl.data.splits import build_datasets  # noqa: E402
from hybridssl.data.synthetic_text import ATTRIBUTES  # noqa: E402
from hybridssl.runs import build_model  # noqa: E402
from hybridssl.schedule import warmup_cosine  # noqa: E402

OUT = Path(__file__).parent / "results" / "supervised_objectives.json"
OBJECTIVES = ("shape", "all", "mask_shape")


def train_and_score(cfg: RunConfig, objective: str, train: Inputs, val: Inputs) -> dict[str, float]:
    """Held-out accuracy (%) of every attribute head the objective trains."""
    tc, names = cfg.train, list(ATTRIBUTES)
    torch.manual_seed(tc.seed)
    model = build_model(cfg, 1, ("image",))
    heads = torch.nn.ModuleList([torch.nn.Linear(model.feature_dim("image"), len(ATTRIBUTES[a])) for a in names])
    params = [*model.tower_parameters("image"), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay, betas=tuple(tc.betas))
    gen, labels = torch.Generator().manual_seed(tc.seed), torch.from_numpy(train.y)
    used = range(len(names)) if objective == "all" else [names.index("shape")]
    ratio = cfg.model.image_mask_ratio if objective.startswith("mask") else 0.0
    model.train()
    for step in range(tc.steps):
        for g in opt.param_groups:
            g["lr"] = tc.lr * warmup_cosine(step, tc.steps, tc.warmup_steps, tc.min_lr_ratio)
        idx = torch.randint(0, len(train.x), (tc.batch_size,), generator=gen)
        pooled = model.encode("image", train.x[idx], mask_ratio=ratio, generator=gen).pooled
        loss = sum(F.cross_entropy(heads[k](pooled), labels[idx, k]) for k in used)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
        opt.step()
    feats = torch.from_numpy(tower_features(model, val, "image"))
    with torch.inference_mode():
        return {names[k]: 100.0 * float((heads[k](feats).argmax(1).numpy() == val.y[:, k]).mean()) for k in used}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="small")
    ap.add_argument("--objectives", default=",".join(OBJECTIVES))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    objectives = [o for o in args.objectives.split(",") if o]
    unknown = set(objectives) - set(OBJECTIVES)
    if unknown:
        raise SystemExit(f"unknown objective(s) {sorted(unknown)}; choose from {OBJECTIVES}")
    cfg = load_config(args.config)
    train_ds, val_ds = build_datasets(cfg.data, cfg.train.seed)
    train, val = split_inputs(train_ds, cfg.preprocess, "image"), split_inputs(val_ds, cfg.preprocess, "image")
    rows = {}
    for objective in objectives:
        t = time.process_time()
        rows[objective] = {"accuracy": train_and_score(cfg, objective, train, val), "cpu_s": time.process_time() - t}
    table = Table(title=f"Supervised objectives, image tower of {args.config!r}: held-out accuracy (%)")
    for col in ("objective", *ATTRIBUTES, "CPU s"):
        table.add_column(col, justify="left" if col == "objective" else "right")
    for objective, row in rows.items():
        acc = row["accuracy"]
        table.add_row(objective, *(f"{acc[a]:.1f}" if a in acc else "–" for a in ATTRIBUTES), f"{row['cpu_s']:.0f}")
    Console().print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"config": args.config, "steps": cfg.train.steps, "batch_size": cfg.train.batch_size,
                                    "objectives": rows, "machine": machine_info()}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
