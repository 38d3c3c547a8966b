"""How much of what the built-in data offers does `hssl train` learn? Floors, the run, the ceiling.

On the built-in scenes (the preset's train / val splits, its preprocessing), for each scene attribute
(shape, colour, size, position, texture), side by side, for one tower (``--modality``: ``image``, or
``seq_sensor`` for a run trained on ``builtin:sensor=true``):

* floors  — linear probes on the raw input (pixels 16×16 average-pooled; sensor frames normalised,
            zero-padded to the longest and flattened) and on a random-init tower of the preset's
            architecture;
* the run — a linear probe on the frozen tower features of a trained run, and its zero-shot accuracy
            from text prompts (``metrics.json``);
* ceiling — the preset's tower trained *supervised* on that attribute for the run's own
            budget (train.steps × train.batch_size samples, AdamW, the same lr schedule).

Probes train on 10 % of the train split (and on all of it), choose λ on a disjoint 1000-item slice of
the train split, and are scored on the val split the run reports on. "gap closed" =
(probe − best floor) / (ceiling − best floor). CPU seconds of every part are recorded.

    .venv/bin/python benchmarks/ceiling.py --run runs/small            # a finished `hssl train` run
    .venv/bin/python benchmarks/ceiling.py --config small --train-run  # train the default run first
    .venv/bin/python benchmarks/ceiling.py --run runs/sensor --modality seq_sensor --out benchmarks/results/ceiling_sensor.json

Prints a rich table and writes benchmarks/results/ceiling.json (with the CPU model and ISA flags).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from edge_runtime.machine import machine_info
from edge_runtime.modalities import sequence_stream
from edge_runtime.sequence import pad_sequences
from hybridssl.app.train import train_run
from hybridssl.config import load_config
from hybridssl.data.splits import build_datasets
from hybridssl.data.synthetic_text import ATTRIBUTES
from hybridssl.evaluation.probes import linear_probe
from hybridssl.preprocessing import preprocess_image, preprocess_sequence
from hybridssl.runs import build_model, load_run
from hybridssl.schedule import clip_norm, warmup_cosine

OUT = Path(__file__).parent / "results" / "ceiling.json"
VAL_ITEMS = 1000


@dataclass
class Inputs:
    """A split's tower inputs (x, and the frame mask of a sequence) and (N, 5) attribute value indices."""

    x: torch.Tensor
    mask: torch.Tensor | None
    y: np.ndarray
    captions: list[str] | None = None

    def rows(self, idx) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.x[idx], None if self.mask is None else self.mask[idx]

    def raw(self) -> np.ndarray:
        """The raw-input floor's features: pixels 16×16 average-pooled, or the flattened frames."""
        return F.adaptive_avg_pool2d(self.x, 16).flatten(1).numpy() if self.mask is None else self.x.flatten(1).numpy()


def split_inputs(dataset, spec, modality: str) -> Inputs:
    """The preprocessed ``modality`` inputs of a built-in split (sequences padded to the spec's longest)."""
    xs, ys, captions = [], [], []
    for i in range(len(dataset)):
        s = dataset[i]
        captions.append(s.caption or "")
        if modality == "image":
            xs.append(preprocess_image(s.image, spec.image))
        else:
            stream = spec.sequences[sequence_stream(modality)]
            xs.append(preprocess_sequence(s.features[sequence_stream(modality)], stream)[0])
        ys.append([ATTRIBUTES[a].index(s.meta["attributes"][a]) for a in ATTRIBUTES])
    y = np.asarray(ys, dtype=np.int64)
    if modality == "image":
        return Inputs(torch.stack(xs), None, y, captions)
    stream = spec.sequences[sequence_stream(modality)]
    frames, mask = pad_sequences(xs, stream)
    extra = stream.padded_frames - frames.shape[1]                 # every split to the same length (raw floor)
    frames, mask = np.pad(frames, ((0, 0), (0, extra), (0, 0))), np.pad(mask, ((0, 0), (0, extra)))
    return Inputs(torch.from_numpy(frames), torch.from_numpy(mask).bool(), y, captions)


@torch.inference_mode()
def tower_features(model, data: Inputs, modality: str, batch: int = 256) -> np.ndarray:
    model.eval()
    return torch.cat([model.forward_features(modality, *data.rows(slice(i, i + batch)))
                      for i in range(0, len(data.x), batch)]).numpy()


def probes(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, n_classes: int,
           fractions: tuple[float, ...]) -> dict[str, float]:
    """Test accuracy (%) of a linear probe per label fraction; λ on the last VAL_ITEMS train items."""
    fit_x, fit_y, val_x, val_y = train_x[:-VAL_ITEMS], train_y[:-VAL_ITEMS], train_x[-VAL_ITEMS:], train_y[-VAL_ITEMS:]
    out = {}
    for f in fractions:
        n = max(n_classes, int(round(f * len(fit_x))))
        out[f"{f:g}"] = linear_probe(fit_x[:n], fit_y[:n], val_x, val_y, test_x, test_y, n_classes)["accuracy"]
    return out


def supervised_ceiling(cfg, data: Inputs, y: np.ndarray, test: Inputs, test_y: np.ndarray,
                       n_classes: int, modality: str) -> float:
    """The preset's tower + a linear head trained with cross-entropy for the run's budget."""
    tc = cfg.train
    torch.manual_seed(tc.seed)
    model = build_model(cfg, 1, (modality,))
    head = torch.nn.Linear(model.feature_dim(modality), n_classes)
    params = [*model.tower_parameters(modality), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay, betas=tuple(tc.betas))
    gen = torch.Generator().manual_seed(tc.seed)
    labels = torch.from_numpy(y)
    model.train()
    for step in range(tc.steps):
        for g in opt.param_groups:
            g["lr"] = tc.lr * warmup_cosine(step, tc.steps, tc.warmup_steps, tc.min_lr_ratio)
        idx = torch.randint(0, len(data.x), (tc.batch_size,), generator=gen)
        loss = F.cross_entropy(head(model.forward_features(modality, *data.rows(idx))), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip_norm(tc.grad_clip))
        opt.step()
    feats = torch.from_numpy(tower_features(model, test, modality))
    with torch.inference_mode():
        pred = head(feats).argmax(1).numpy()
    return 100.0 * float((pred == test_y).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="a finished `hssl train` run on the built-in data")
    ap.add_argument("--train-run", action="store_true", help="train the preset's default run first (into --run)")
    ap.add_argument("--config", default="small", help="preset of the floors and the ceiling (default: the run's)")
    ap.add_argument("--attributes", default=",".join(ATTRIBUTES))
    ap.add_argument("--fractions", default="0.1,1.0", help="label fractions of the probes")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--modality", default="image", help="the tower: image, or seq_sensor (builtin:sensor=true runs)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    attributes = [a for a in args.attributes.split(",") if a]
    fractions = tuple(float(f) for f in args.fractions.split(","))
    seconds: dict[str, float] = {}
    run_dir = args.run or Path("runs") / f"ceiling-{args.config}"
    if args.train_run:
        t = time.process_time()
        train_run(load_config(args.config), run_dir)
        seconds["train run"] = time.process_time() - t
    loaded = load_run(run_dir) if run_dir.exists() else None
    cfg = loaded.cfg if loaded is not None else load_config(args.config)
    t = time.process_time()
    train_set, val_set = build_datasets(cfg.data, cfg.train.seed)
    m = args.modality
    train_in, test_in = split_inputs(train_set, cfg.preprocess, m), split_inputs(val_set, cfg.preprocess, m)
    y, ty = train_in.y, test_in.y
    seconds["data"] = time.process_time() - t

    t = time.process_time()
    raw, raw_test = train_in.raw(), test_in.raw()
    torch.manual_seed(cfg.train.seed)
    random_tower = build_model(cfg, 1, (m,))
    rand, rand_test = tower_features(random_tower, train_in, m), tower_features(random_tower, test_in, m)
    feats = tower_features(loaded.model, train_in, m) if loaded is not None else None
    feats_test = tower_features(loaded.model, test_in, m) if loaded is not None else None
    seconds["features"] = time.process_time() - t
    zero_shot = {}
    if loaded is not None and (run_dir / "metrics.json").exists():
        per = json.loads((run_dir / "metrics.json").read_text())["heldout"].get("zero_shot_attributes", {})
        zero_shot = {a: v.get(m, {}).get("accuracy") for a, v in per.items()}

    rows = {}
    for a in attributes:
        k = list(ATTRIBUTES).index(a)
        n_classes = len(ATTRIBUTES[a])
        t = time.process_time()
        row = {"chance": 100.0 / n_classes,
               "raw_pixels": probes(raw, y[:, k], raw_test, ty[:, k], n_classes, fractions),
               "random_tower": probes(rand, y[:, k], rand_test, ty[:, k], n_classes, fractions)}
        if feats is not None:
            row["run_probe"] = probes(feats, y[:, k], feats_test, ty[:, k], n_classes, fractions)
            row["run_zero_shot"] = zero_shot.get(a)
        seconds[f"probes {a}"] = time.process_time() - t
        t = time.process_time()
        row["supervised"] = supervised_ceiling(cfg, train_in, y[:, k], test_in, ty[:, k], n_classes, m)
        seconds[f"supervised {a}"] = time.process_time() - t
        f = f"{fractions[0]:g}"
        floor = max(row["raw_pixels"][f], row["random_tower"][f])
        if "run_probe" in row and row["supervised"] > floor:
            row["gap_closed"] = (row["run_probe"][f] - floor) / (row["supervised"] - floor)
        rows[a] = row
        Console().print(f"{a}: {json.dumps(row)}")

    f = f"{fractions[0]:g}"
    table = Table(title=f"What the {m} tower learns (held-out accuracy %, probes on {100 * fractions[0]:g} % labels; "
                        f"ceiling: supervised, {cfg.train.steps}×{cfg.train.batch_size} samples)")
    for col in ("attribute", "chance", "raw input", "random-init tower", "hssl probe", "hssl zero-shot",
                "supervised ceiling", "gap closed"):
        table.add_column(col, justify="left" if col == "attribute" else "right")
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    for a, r in rows.items():
        table.add_row(a, fmt(r["chance"]), fmt(r["raw_pixels"][f]), fmt(r["random_tower"][f]),
                      fmt(r.get("run_probe", {}).get(f)), fmt(r.get("run_zero_shot")), fmt(r["supervised"]),
                      "-" if "gap_closed" not in r else f"{100 * r['gap_closed']:.0f} %")
    Console().print(table)
    result = {"config": cfg.name, "modality": m, "run": str(run_dir) if loaded is not None else None, "fractions": fractions,
              "budget": {"steps": cfg.train.steps, "batch_size": cfg.train.batch_size}, "rows": rows,
              "cpu_seconds": {k: round(v, 1) for k, v in seconds.items()}, "threads": torch.get_num_threads(),
              "machine": machine_info()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    Console().print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
