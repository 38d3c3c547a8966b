"""The whole evaluation of a trained run as one job, :func:`evaluate_run` (``hssl eval``): it
loads the run, runs every protocol, writes ``eval.json`` and the plots.

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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.modalities import ordered_modalities
from hybridssl.checkpoint import atomic_write_text
from hybridssl.evaluation.embed import Embeddings
from hybridssl.evaluation.evaldata import DataArg, prompt_dict, resolve_data
from hybridssl.evaluation.finetune import FinetuneConfig, pick_modality
from hybridssl.evaluation.heldout import class_prompts, retrieval_report, zero_shot_report
from hybridssl.evaluation.lowlabel import (
    DEFAULT_FRACTIONS,
    PROBE_INPUTS,
    attribute_report,
    check_fractions,
    check_seeds,
    extract_tagged,
    low_label_report,
    quality_report,
)
from hybridssl.evaluation.semisup import FixMatchConfig
from hybridssl.jsonsafe import json_safe
from hybridssl.runs import load_run
from hybridssl.threads import torch_threads

Progress = Callable[[str, int, int], None]          # (what is running, units done, units total)


# ----------------------------------------------------------------------------- retrieval examples
def _panel(dataset, position: int, modality: str, spec, title: str, correct: bool | None):
    from hybridssl.app.plots import Panel
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
    present = list(ordered_modalities(emb.by_modality))
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


def heldout_plots(emb: Embeddings, positions: np.ndarray, dataset, spec, label_names: list[str] | None, out: Path,
                  examples: int = 6) -> dict[str, Path]:
    """``projection.png`` (PCA of the joint space) and ``retrieval_examples.png`` (query → top 5) in
    ``out``, each when the embeddings allow it: ``{"projection" | "retrieval": path}``."""
    from hybridssl.app import plots

    files: dict[str, Path] = {}
    labels_by_m = {m: emb.labels[emb.index[m]] for m in emb.by_modality}
    if sum(len(v) for v in emb.by_modality.values()) >= 2:
        files["projection"] = plots.plot_projection(emb.by_modality, labels_by_m, label_names or None,
                                                    out / "projection.png")
    grid = retrieval_examples(emb, positions, dataset, spec, n_rows=examples)
    if grid:
        files["retrieval"] = plots.plot_retrieval_grid(grid, out / "retrieval_examples.png")
    return files


# ----------------------------------------------------------------------------- the evaluation
@dataclass
class EvalOptions:
    """What an evaluation can be told besides the run, the data and where to write.

    ``seeds``: the seeds themselves (at least 3 for a reported mean ± std). ``pool_size`` /
    ``test_size`` size built-in data; other data is split whole unless ``cap`` (then they bound the
    seeded random pool/test parts). ``finetune_config`` overrides ``finetune_steps``. ``semi_supervised``
    adds the FixMatch fine-tune on the unlabelled pool (``semi_config``, default :class:`FixMatchConfig`). ``threads`` > 0
    sets torch's intra-op thread count for the duration of the call. ``probe_input``: what frozen
    probes read, ``"features"`` (pooled tower features, the CLIP/MAE linear-probe protocol) or
    ``"embedding"``. ``attribute_probes``: also probe every labelling the data offers (built-in
    data: each attribute). ``prompts``: templates overriding the dataset's class prompts. ``floors``: the raw-input and random-init
    linear probes on the same splits (:mod:`hybridssl.evaluation.floors`)."""

    fractions: Sequence[float] = DEFAULT_FRACTIONS
    seeds: Sequence[int] = (0, 1, 2)
    finetune: bool = True
    finetune_steps: int = 100
    finetune_config: FinetuneConfig | None = None
    semi_supervised: bool = False
    semi_config: FixMatchConfig | None = None
    prompts: Sequence[str] | None = None
    pool_size: int = 2000
    test_size: int = 1000
    cap: bool = False
    modality: str | None = None
    checkpoint: str | None = None
    splits_file: str | Path | None = None
    device: str = "auto"
    examples: int = 6
    threads: int = 0
    probe_input: str = "features"
    attribute_probes: bool = True
    floors: bool = True

    def __post_init__(self) -> None:
        self.fractions = check_fractions(self.fractions)
        self.seeds = check_seeds(self.seeds)
        if self.pool_size < 2 or self.test_size < 2:
            raise ValueError(f"pool_size and test_size must be >= 2, got {self.pool_size}, {self.test_size}")
        if self.probe_input not in PROBE_INPUTS:
            raise ValueError(f"probe_input must be one of {PROBE_INPUTS}, got {self.probe_input!r}")
        if self.finetune_steps < 1:
            raise ValueError(f"finetune_steps must be >= 1, got {self.finetune_steps}")
        if self.prompts is not None:
            prompt_dict(self.prompts, ["x"])                               # fail fast on a bad template


def evaluate_run(run_dir: str | Path, data: DataArg = None, out_dir: str | Path | None = None,
                 progress: Progress | None = None, **options: Any) -> dict[str, Any]:
    """Evaluate a trained run of any model kind (module docstring); writes eval.json, splits.json and
    PNGs into ``out_dir`` (default ``RUN_DIR/eval``) and returns the dict.

    ``data``: None (the run's data), a spec string, a dataset (split 80/20) or a (pool, test) pair.
    ``options``: the fields of :class:`EvalOptions`. ``progress(what, done, total)`` is called as
    units of work complete."""
    opts = EvalOptions(**options)
    with torch_threads(opts.threads):
        return _evaluate(Path(run_dir), data, opts, out_dir, progress)


def _evaluate(run_dir: Path, data: DataArg, opts: EvalOptions, out_dir: str | Path | None,
              progress: Progress | None) -> dict[str, Any]:
    from hybridssl.app import plots
    from hybridssl.trainer import resolve_device

    fractions, seeds, finetune, prompts, checkpoint = opts.fractions, opts.seeds, opts.finetune, opts.prompts, opts.checkpoint
    ft_cfg = opts.finetune_config or FinetuneConfig(steps=opts.finetune_steps)
    t_start = time.perf_counter()
    run = load_run(run_dir, checkpoint, device=str(resolve_device(opts.device)))
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "eval"
    out.mkdir(parents=True, exist_ok=True)
    src = resolve_data(data, run.cfg, opts.pool_size, opts.test_size, opts.cap)
    pool_ds, test_ds = src["pool"], src["test"]
    label_names = list(pool_ds.label_names or test_ds.label_names or [])

    total = 4 + int(opts.floors) + len(fractions) * len(seeds) * (1 + int(finetune) + int(finetune and opts.semi_supervised))
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
    cls_prompts: dict[str, list[str]] | None
    if prompts is not None and label_names:
        cls_prompts = prompt_dict(prompts, label_names)
    else:
        cls_prompts = class_prompts(test_ds, label_names or None)
    zero_shot = zero_shot_report(run.model, run.tokenizer, test_emb, cls_prompts)
    quality = quality_report(test_emb)
    t_heldout = time.perf_counter() - t0
    tick("low-label protocols")

    available = [m for m in pool_emb.by_modality if m in test_emb.by_modality]
    tower = pick_modality(run.model.modalities, available, opts.modality)
    low: dict[str, Any]
    if len(label_names) < 2:
        low = {"skipped": "the data has fewer than 2 classes", "modality": tower}
    else:
        low = low_label_report(run, pool_emb, pool_pos, test_emb, test_pos, pool_ds, test_ds, label_names, tower,
                               fractions, seeds, finetune, ft_cfg, out, src["partition"],
                               Path(opts.splits_file) if opts.splits_file else None, tick, opts.probe_input,
                               (opts.semi_config or FixMatchConfig()) if opts.semi_supervised else None, opts.floors)
    attributes = (attribute_report(run, pool_emb, pool_pos, test_emb, test_pos, pool_ds, test_ds, tower, fractions,
                                   seeds, out, opts.probe_input) if opts.attribute_probes else {})

    t0 = time.perf_counter()
    files = {"eval": str(out / "eval.json")}
    if (out / "splits.json").exists() and "protocols" in low:
        files["splits"] = str(out / "splits.json")
    if "protocols" in low:
        files["fractions_plot"] = str(plots.plot_fraction_curves(
            low["protocols"], out / "fractions.png", chance=low["chance"],
            title=f"Low-label evaluation ({tower} tower, {len(seeds)} seed(s))"))
    files.update({f"{name}_plot": str(p) for name, p in
                  heldout_plots(test_emb, test_pos, test_ds, run.spec, label_names, out, opts.examples).items()})
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
    result = json_safe(result)
    atomic_write_text(out / "eval.json", json.dumps(result, indent=1))
    return result
