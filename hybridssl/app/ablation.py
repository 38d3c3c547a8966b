"""The seed paper's ablation: full hybrid vs contrastive only vs generative only vs no dynamic
weighting — same data, same budget, same seeds — evaluated at 5 % and 10 % labels (frozen linear
probe and kNN on a labelled pool the models never pretrained on) and on cross-modal retrieval.

Variants (config overrides applied on top of the base config):

    full                   the base config (contrastive + generative, adaptive weighting)
    contrastive-only       model.generative=none, model.text_generative=none     ("CLIP" row)
    generative-only        loss.contrastive=false, no NT-Xent, no caption words    ("MAE" row)
    no-dynamic-weighting   weighting.strategy=fixed (every weight 1)

On single-modality data (e.g. Fashion-MNIST) there is no cross-modal pair, so the contrastive
branch is the intra-modal NT-Xent between two masked views (``loss.ntxent_weight=1``).
Outputs in ``out_dir``: one run directory per (dataset, variant, seed), ``ablation.json``,
``ablation.md`` (mean ± std over seeds) and ``ablation.png`` (bar plot).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hybridssl.app.evaluate import evaluate_run
from hybridssl.checkpoint import atomic_write_text
from hybridssl.config import load_config
from hybridssl.data.open import open_dataset
from hybridssl.data.splits import is_builtin
from hybridssl.evaluation.lowlabel import fraction_key
from hybridssl.evaluation.probes import summarize
from hybridssl.tracking import open_tracking, require_trackers

VARIANTS: dict[str, list[str]] = {
    "full": [],
    "contrastive-only": ["model.generative=none", "model.text_generative=none"],
    "generative-only": ["loss.contrastive=false", "loss.ntxent_weight=0", "loss.text_ntxent_weight=0",
                        "loss.caption_words_weight=0"],
    "no-dynamic-weighting": ["weighting.strategy=fixed"],
}
FRACTIONS = (0.05, 0.1)
ATTRIBUTE_FRACTION = 0.1   # attribute probes (built-in data: shape, colour, size, position, texture) at 10 % labels
# Budgets: the default fits ~20 min on 2 CPU cores for the built-in data and 3 seeds, --quick ~3 min.
BUDGETS: dict[str, list[str]] = {
    "default": ["train.steps=120", "data.train_size=8192", "train.eval_size=500"],
    "quick": ["train.steps=25", "data.train_size=1024", "train.eval_size=200", "train.batch_size=32"],
}
EVAL_SIZES = {"default": (2000, 1000), "quick": (400, 300)}


#: Real data: the share held out of pretraining, which the low-label protocols split 80/20 into pool/test.
HELD_OUT_FRACTION = 0.5


def dataset_overrides(spec: str, preset_train: str = "builtin") -> list[str]:
    """Single-modality data gets the intra-modal contrastive objective (there is no pair); real data
    holds :data:`HELD_OUT_FRACTION` out of pretraining, so every evaluated item is unseen. A plain
    ``"builtin"`` means the preset's own built-in spec (``preset_train``, e.g. with its paraphrases)."""
    if spec.startswith("builtin"):
        return [f"data.train={preset_train if spec == 'builtin' and is_builtin(preset_train) else spec}"]
    ds = open_dataset(spec)
    extra = ["loss.ntxent_weight=1"] if len(ds.modalities) < 2 else []
    return [f"data.train={spec}", f"data.val_fraction={HELD_OUT_FRACTION}", *extra]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "data"


def _scores(ev: dict[str, Any]) -> dict[str, float]:
    """The numbers of one evaluated run: probe/kNN accuracy per fraction, mean R@1, zero-shot."""
    out: dict[str, float] = {}
    protocols = ev.get("low_label", {}).get("protocols", {})
    for protocol in ("linear_probe", "knn"):
        for f in FRACTIONS:
            acc = (protocols.get(protocol, {}).get(fraction_key(f)) or {}).get("accuracy")
            if acc:
                out[f"{protocol}@{f:g}"] = acc["mean"]
    r1 = [r["R@1"] for r in ev.get("retrieval", {}).values()]
    if r1:
        out["retrieval_R@1"] = sum(r1) / len(r1)
    zs = [z["accuracy"] for z in ev.get("zero_shot", {}).values()]
    if zs:
        out["zero_shot"] = sum(zs) / len(zs)
    found = {name: ((a["protocols"].get("linear_probe", {}).get(fraction_key(ATTRIBUTE_FRACTION)) or {}).get("accuracy")
                    or {}).get("mean") for name, a in ev.get("attribute_probes", {}).items()}
    attrs = {k: float(v) for k, v in found.items() if v is not None}
    for name, acc in attrs.items():
        out[f"attribute:{name}"] = acc
    if attrs:
        out["attributes_mean"] = sum(attrs.values()) / len(attrs)
    return out


def run_ablation(config: str = "small", datasets: Sequence[str] = ("builtin",), seeds: Sequence[int] = (0, 1, 2),
                 out_dir: Path = Path("runs/ablation"), quick: bool = False, overrides: Sequence[str] = (),
                 on_event: Callable[[str, int, int], None] | None = None, modality: str | None = None) -> dict[str, Any]:
    """Train and evaluate every variant × dataset × seed; returns (and writes) the aggregated table.
    ``modality``: the tower of the low-label columns (default: :func:`hybridssl.evaluation.finetune.pick_modality`'s choice)."""
    from hybridssl.app.train import train_run

    budget = "quick" if quick else "default"
    preset = load_config(config, list(overrides))
    trackers = preset.train.log
    require_trackers(trackers)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pool_size, test_size = EVAL_SIZES[budget]
    total = len(datasets) * len(VARIANTS) * len(seeds)
    done = 0
    rows: dict[str, dict[str, dict[str, list[float]]]] = {}
    chance: dict[str, dict[str, float]] = {}
    held_out: dict[str, set[bool | None]] = {}
    t0 = time.perf_counter()
    for spec in datasets:
        data_over = dataset_overrides(spec, preset.data.train)
        eval_data = None  # the run's held-out data: built-in val/test splits, else its held-out share
        for variant, extra in VARIANTS.items():
            for seed in seeds:
                if on_event:
                    on_event(f"{spec} · {variant} · seed {seed}", done, total)
                cfg = load_config(config, [*BUDGETS[budget], *data_over, *overrides, *extra, f"train.seed={seed}"])
                run_dir = out_dir / _slug(spec) / variant / f"seed{seed}"
                if not (run_dir / "metrics.json").exists():  # a re-run resumes where an interrupted ablation stopped
                    if run_dir.exists():
                        shutil.rmtree(run_dir)
                    train_run(cfg, run_dir, log_root=out_dir, run_name=str(run_dir.relative_to(out_dir)))
                ev = evaluate_run(run_dir, data=eval_data, fractions=FRACTIONS, seeds=(seed,), finetune=False,
                                  pool_size=pool_size, test_size=test_size, examples=0, cap=True, modality=modality)
                for metric, value in _scores(ev).items():
                    rows.setdefault(spec, {}).setdefault(variant, {}).setdefault(metric, []).append(value)
                held_out.setdefault(spec, set()).add(ev["data"]["held_out_of_pretraining"])
                chance.setdefault(spec, {}).update({f"attribute:{name}": a["chance"]
                                                    for name, a in ev.get("attribute_probes", {}).items()})
                done += 1
    if on_event:
        on_event("done", done, total)
    table = {spec: {v: {m: summarize(vals) for m, vals in metrics.items()} for v, metrics in per.items()}
             for spec, per in rows.items()}
    result = {"config": config, "budget": budget, "modality": modality, "budget_overrides": BUDGETS[budget], "seeds": list(seeds),
              "datasets": list(datasets), "variants": VARIANTS, "fractions": list(FRACTIONS), "table": table,
              "attribute_chance": chance,
              "held_out_of_pretraining": {spec: all(v is True for v in vals) for spec, vals in held_out.items()},
              "seconds": round(time.perf_counter() - t0, 1)}
    atomic_write_text(out_dir / "ablation.json", json.dumps(result, indent=1))
    atomic_write_text(out_dir / "ablation.md", render_markdown(result))
    plot = plot_ablation(result, out_dir / "ablation.png")
    with open_tracking(trackers, out_dir, {k: result[k] for k in ("config", "budget", "seeds", "datasets")},
                       run_name="ablation", kind="ablation") as tracking:
        tracking.final({"ablation": table}, 0, {"ablation": plot})
    return result


METRIC_NAMES = {"linear_probe@0.05": "linear probe 5 %", "linear_probe@0.1": "linear probe 10 %",
                "knn@0.05": "kNN 5 %", "knn@0.1": "kNN 10 %", "retrieval_R@1": "retrieval R@1 (mean)",
                "zero_shot": "zero-shot", "attributes_mean": "attribute probes 10 % (mean)"}


def attribute_metrics(per: dict[str, dict[str, Any]]) -> list[str]:
    """The ``attribute:<name>`` metrics present in one dataset's rows, in first-seen order."""
    return list(dict.fromkeys(m for v in per.values() for m in v if m.startswith("attribute:")))


def _fmt(s: dict[str, Any] | None) -> str:
    return "–" if not s else f"{s['mean']:.1f} ± {s['std']:.1f}"


def render_markdown(result: dict[str, Any]) -> str:
    lines = [f"# Ablation ({result['budget']} budget, seeds {result['seeds']}, config {result['config']})", "",
             "Accuracy / R@1 in %, mean ± std over seeds. Low-label columns: frozen pooled features of the "
             "first image/audio/text/sequence tower (or the one named), model selection on a validation split; the dataset's label. "
             "Labelled pool and test items: see each dataset's line. Attribute probes: the same linear probe at 10 % labels "
             "for every attribute the data describes (built-in scenes), chance in brackets.", ""]
    for spec, per in result["table"].items():
        metrics = [m for m in METRIC_NAMES if any(m in v for v in per.values())]
        held = result.get("held_out_of_pretraining", {}).get(spec)
        lines += [f"## {spec}", "", ("Every evaluated item was held out of pretraining." if held else
                                     "Transductive: evaluated items may have been seen (unlabelled) in pretraining."),
                  "", "| variant | " + " | ".join(METRIC_NAMES[m] for m in metrics) + " |",
                  "|---|" + "---|" * len(metrics)]
        for variant in VARIANTS:
            if variant in per:
                lines.append(f"| {variant} | " + " | ".join(_fmt(per[variant].get(m)) for m in metrics) + " |")
        lines.append("")
        attrs = attribute_metrics(per)
        if attrs:
            chance = result.get("attribute_chance", {}).get(spec, {})
            heads = [f"{m.split(':', 1)[1]} ({chance[m]:.1f})" if m in chance else m.split(":", 1)[1] for m in attrs]
            lines += ["Attribute probes (linear, 10 % labels):", "", "| variant | " + " | ".join(heads) + " |",
                      "|---|" + "---|" * len(attrs)]
            for variant in VARIANTS:
                if variant in per:
                    lines.append(f"| {variant} | " + " | ".join(_fmt(per[variant].get(m)) for m in attrs) + " |")
            lines.append("")
    return "\n".join(lines)


def plot_ablation(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    specs = list(result["table"])
    metrics = [m for m in METRIC_NAMES if any(m in v for per in result["table"].values() for v in per.values())]
    fig, axes = plt.subplots(len(specs), 1, figsize=(1.8 * max(3, len(metrics)) + 2, 3.2 * len(specs)), squeeze=False)
    width = 0.8 / len(VARIANTS)
    for ax, spec in zip(axes[:, 0], specs):
        per = result["table"][spec]
        x = np.arange(len(metrics))
        for i, variant in enumerate(VARIANTS):
            stats = [per.get(variant, {}).get(m) for m in metrics]
            means = [s["mean"] if s else 0.0 for s in stats]
            stds = [s["std"] if s else 0.0 for s in stats]
            ax.bar(x + (i - (len(VARIANTS) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=variant)
        ax.set_xticks(x, [METRIC_NAMES[m] for m in metrics], fontsize=8)
        ax.set_ylabel("%")
        ax.set_title(spec)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
