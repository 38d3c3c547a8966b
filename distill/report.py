"""Teacher vs student, side by side: cost, quality, retention and cross-compatibility.

For every tower m of the student, for the teacher's tower m and the student's:

* ``parameters``  — the inference tower: teacher = :func:`hybridssl.app.train.count_parameters` (encoder,
  shared trunk, norm, projection head), student = encoder + projection head;
* ``flops``       — FLOPs of one sample through ``embed`` (``torch.utils.flop_counter``, 2 per
  multiply-add, attention counted under ``sdpa_kernel(SDPBackend.MATH)``: the fused CPU kernel is
  invisible to the counter); text at its full ``max_length``;
* ``latency_ms``  — PyTorch eager CPU latency of ``embed`` at batch 1: the median of ``repeats``
  timed calls after 3 warm-up calls, with ``threads`` intra-op threads.

Quality on the held-out evaluation data of the teacher's run (:func:`hybridssl.evaluation.lowlabel.
resolve_data`: built-in data → pool = ``split=val``, test = ``split=test``): retrieval R@1 of every
modality pair and direction, zero-shot accuracy and the linear probe at ``fraction`` (10 %) of the
pool's labels (mean over ``seeds``) on the low-label tower (image, else audio, else text), both on the
pooled tower features (``hssl eval``'s default probe input) and on the joint embedding, each model
reading its own preprocessing. Retention = student / teacher (%); reduction = teacher / student (×).

Cross-compatibility: the student's tower a against the TEACHER's tower b ≠ a on the same test items
(retrieval both ways, e.g. ``image(student)->text(teacher)``), and zero-shot of the student's
image/audio embeddings with the teacher's text prompts. Their retention is against the teacher's own
a→b figure.

Written as JSON to ``STUDENT_RUN/distill_report.json`` (splits under ``STUDENT_RUN/distill_report/``)
and returned; ``rows`` is the table the CLI and the benchmark print.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from edge_runtime.modalities import is_sequence, ordered_modalities, sequence_stream
from hybridssl.checkpoint import atomic_write_text
from hybridssl.evaluation.evaldata import resolve_data
from hybridssl.evaluation.finetune import FinetuneConfig, pick_modality
from hybridssl.evaluation.heldout import class_prompts, retrieval_report, zero_shot_report
from hybridssl.evaluation.lowlabel import PROBE_INPUTS, extract_tagged, low_label_report
from hybridssl.evaluation.retrieval import bidirectional_retrieval
from hybridssl.jsonsafe import json_safe
from hybridssl.preprocessing import PreprocessSpec
from hybridssl.runs import LoadedRun, count_parameters, load_run
from hybridssl.threads import torch_threads

Progress = Callable[[str, int, int], None]


# ----------------------------------------------------------------------------- cost
def tower_parameters_count(model: Any, modality: str) -> int:
    """Parameters of one inference tower of a student (its own count) or a hybrid teacher."""
    own = getattr(model, "count_parameters", None)
    return int(own(modality)) if callable(own) else int(count_parameters(model, modality))


def example_inputs(modality: str, spec: PreprocessSpec, vocab_size: int, batch: int = 1) -> tuple[Tensor, ...]:
    """A random model input of one modality: image (B, 3, S, S), text ids + attention (B, L), log-mel
    (B, 1, M, T), sequence frames + frame mask (B, T_max, D)."""
    g = torch.Generator().manual_seed(0)
    if modality == "image":
        return (torch.randn(batch, 3, spec.image.size, spec.image.size, generator=g),)
    if modality == "audio":
        return (torch.randn(batch, 1, spec.audio.n_mels, spec.audio.num_frames, generator=g),)
    if modality == "text":
        if vocab_size < 6:
            raise ValueError("text inputs need the run's tokenizer")
        ids = torch.randint(5, vocab_size, (batch, spec.text.max_length), generator=g)
        return ids, torch.ones(batch, spec.text.max_length, dtype=torch.bool)
    if is_sequence(modality):                                   # the longest sequence the tower takes
        seq = spec.sequences[sequence_stream(modality)]
        t = seq.padded_frames
        return torch.randn(batch, t, seq.dim, generator=g), torch.ones(batch, t, dtype=torch.bool)
    raise ValueError(f"unknown modality {modality!r}")


def flops_per_sample(model: Any, modality: str, inputs: tuple[Tensor, ...]) -> int:
    """FLOPs of ``model.embed(modality, *inputs)`` divided by the batch size."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        model.embed(modality, *inputs)
    return int(counter.get_total_flops() // inputs[0].shape[0])


def cpu_latency_ms(fn: Callable[[], Any], repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` calls after ``warmup`` calls."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def tower_cost(run: LoadedRun, modality: str, repeats: int) -> dict[str, Any]:
    """{"parameters", "flops", "latency_ms"} of one tower at batch 1 on the CPU."""
    model = run.model.to("cpu").eval()
    vocab = run.tokenizer.vocab_size if run.tokenizer is not None else 0
    inputs = example_inputs(modality, run.spec, vocab)
    return {"parameters": tower_parameters_count(model, modality),
            "flops": flops_per_sample(model, modality, inputs),
            "latency_ms": round(cpu_latency_ms(lambda: model.embed(modality, *inputs), repeats), 3),
            "input": list(inputs[0].shape)}


# ----------------------------------------------------------------------------- quality
def run_quality(run: LoadedRun, pool, test, label_names: list[str], tower: str, fraction: float,
                seeds: Sequence[int], out_dir: Path, partition: dict | None) -> dict[str, Any]:
    """Retrieval, zero-shot and the linear probe at ``fraction`` of one run; keeps the test embeddings."""
    pool_emb, pool_pos = extract_tagged(run.model, pool, run.spec, run.tokenizer)
    test_emb, test_pos = extract_tagged(run.model, test, run.spec, run.tokenizer)
    prompts = class_prompts(test, label_names or None)
    out: dict[str, Any] = {"retrieval": retrieval_report(test_emb),
                           "zero_shot": zero_shot_report(run.model, run.tokenizer, test_emb, prompts)}
    if len(label_names) >= 2 and tower in pool_emb.by_modality:
        out_dir.mkdir(parents=True, exist_ok=True)
        out["linear_probe"] = {}
        for probe_input in PROBE_INPUTS:
            low = low_label_report(run, pool_emb, pool_pos, test_emb, test_pos, pool, test, label_names, tower,
                                   (fraction,), seeds, False, FinetuneConfig(), out_dir, partition, None,
                                   lambda what: None, probe_input)
            probe = low.get("protocols", {}).get("linear_probe", {}).get(f"{fraction:g}", {})
            out["linear_probe"][probe_input] = {"modality": tower, "fraction": fraction, "chance": low.get("chance"),
                                                "accuracy": probe.get("accuracy"),
                                                "input": low.get("features", {}).get("linear_probe")}
    out["_test"] = (test_emb, test_pos)
    return out


def cross_retrieval(student: tuple, teacher: tuple, student_modalities: Sequence[str]) -> dict[str, dict[str, float]]:
    """Student tower a vs teacher tower b ≠ a on the same test items (paired by dataset position)."""
    (s_emb, s_pos), (t_emb, t_pos) = student, teacher
    out: dict[str, dict[str, float]] = {}
    for a in student_modalities:
        for b in ordered_modalities(t_emb.by_modality):
            if b == a or a not in s_emb.by_modality or b not in t_emb.by_modality:
                continue
            t_row = {int(t_pos[i]): r for r, i in enumerate(t_emb.index[b])}        # position → teacher row
            pairs = [(r, t_row[int(s_pos[i])]) for r, i in enumerate(s_emb.index[a]) if int(s_pos[i]) in t_row]
            if len(pairs) < 2:
                continue
            rs, rt = (np.array(x, dtype=np.int64) for x in zip(*pairs))
            keys = [s_emb.keys[int(s_emb.index[a][r])] for r in rs]
            out.update(bidirectional_retrieval(s_emb.by_modality[a][rs], t_emb.by_modality[b][rt], keys,
                                               (f"{a}(student)", f"{b}(teacher)")))
    return out


# ----------------------------------------------------------------------------- the table
def comparison_row(metric: str, teacher: float | None, student: float | None, kind: str,
         chance: float | None = None) -> dict[str, Any]:
    """kind "retention": student / teacher in %; "reduction": teacher / student (×); ``chance``: the
    metric's chance level (quality rows), beside which a retention is only meaningful well above it."""
    ratio = None
    if teacher is not None and student is not None:
        if kind == "retention" and teacher > 0:
            ratio = 100.0 * student / teacher
        elif kind == "reduction" and student > 0:
            ratio = teacher / student
    return {"metric": metric, "teacher": teacher, "student": student, "ratio": ratio, "kind": kind, "chance": chance}


def format_row(row: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """(metric, teacher, student, ratio, chance) as display strings: parameters in M, ratios as % or ×."""
    def num(v: float | None) -> str:
        if v is None:
            return "-"
        return f"{v / 1e6:.2f} M" if row["metric"].endswith("parameters") else f"{v:.1f}" if v >= 10 else f"{v:.2f}"

    r = row["ratio"]
    ratio = "-" if r is None else f"{r:.1f} %" if row["kind"] == "retention" else f"{r:.1f}×"
    return row["metric"], num(row["teacher"]), num(row["student"]), ratio, num(row.get("chance"))


def report_rows(towers: dict[str, Any], quality: dict[str, Any], cross: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for m, c in towers.items():
        rows.append(comparison_row(f"{m} tower parameters", c["teacher"]["parameters"], c["student"]["parameters"], "reduction"))
        rows.append(comparison_row(f"{m} MFLOPs / sample", c["teacher"]["flops"] / 1e6, c["student"]["flops"] / 1e6, "reduction"))
        rows.append(comparison_row(f"{m} CPU latency ms (batch 1)", c["teacher"]["latency_ms"], c["student"]["latency_ms"],
                         "reduction"))
    t, s = quality["teacher"], quality["student"]
    for name, r in t["retrieval"].items():
        if name in s["retrieval"]:
            rows.append(comparison_row(f"R@1 {name}", r["R@1"], s["retrieval"][name]["R@1"], "retention", r["chance_R@1"]))
    for m, z in t["zero_shot"].items():
        if m in s["zero_shot"]:
            rows.append(comparison_row(f"zero-shot {m}", z["accuracy"], s["zero_shot"][m]["accuracy"], "retention", z["chance"]))
    for probe_input, what in (("features", "tower features"), ("embedding", "joint embedding")):
        tp, sp = t.get("linear_probe", {}).get(probe_input), s.get("linear_probe", {}).get(probe_input)
        if tp and sp and tp["accuracy"] and sp["accuracy"]:
            rows.append(comparison_row(f"linear probe {sp['modality']} {100 * sp['fraction']:g} % labels, {what}",
                             tp["accuracy"]["mean"], sp["accuracy"]["mean"], "retention", sp["chance"]))
    for name, r in cross["retrieval"].items():
        a, b = (part.split("(")[0] for part in name.split("->"))
        own = t["retrieval"].get(f"{a}->{b}", {}).get("R@1")
        rows.append(comparison_row(f"R@1 {name}", own, r["R@1"], "retention", r["chance_R@1"]))
    for m, z in cross["zero_shot"].items():
        rows.append(comparison_row(f"zero-shot {m}(student), teacher prompts", t["zero_shot"].get(m, {}).get("accuracy"),
                         z["accuracy"], "retention", z["chance"]))
    return rows


# ----------------------------------------------------------------------------- the report
def distill_report(student_run: str | Path, teacher_run: str | Path | None = None, *, data: str | None = None,
                   pool_size: int = 1000, test_size: int = 500, fraction: float = 0.1,
                   seeds: Sequence[int] = (0, 1, 2), threads: int = 1, repeats: int = 20,
                   progress: Progress | None = None, out: str | Path | None = None) -> dict[str, Any]:
    """The side-by-side report of a student run and its teacher (module docstring); writes JSON."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1 for a latency measurement, got {threads}")
    with torch_threads(threads):
        return _report(Path(student_run), teacher_run, data, pool_size, test_size, fraction, tuple(seeds), threads,
                       repeats, progress, out)


def _report(student_run: Path, teacher_run: str | Path | None, data: str | None, pool_size: int, test_size: int,
            fraction: float, seeds: tuple[int, ...], threads: int, repeats: int, progress: Progress | None,
            out: str | Path | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    tick = progress or (lambda what, done, total: None)
    s = load_run(student_run)
    provenance = s.state.get("teacher", {})
    if teacher_run is None and "run_dir" not in provenance:
        raise ValueError(f"{student_run} is not a distilled student (no teacher recorded); pass the teacher run")
    teacher_dir = Path(teacher_run) if teacher_run is not None else Path(provenance["run_dir"])
    t = load_run(teacher_dir, None if teacher_run is not None else provenance.get("checkpoint"))
    missing = [m for m in s.model.modalities if m not in t.model.modalities]
    if missing:
        raise ValueError(f"the teacher {teacher_dir} has no {', '.join(missing)} tower to compare the student with")
    total = 2 * len(s.model.modalities) + 3
    tick("measuring cost", 0, total)
    towers: dict[str, Any] = {}
    for i, m in enumerate(s.model.modalities):
        towers[m] = {"student_name": s.state.get("student", {}).get("towers", {}).get(m),
                     "teacher": tower_cost(t, m, repeats)}
        tick(f"measuring cost ({m})", 2 * i + 1, total)
        towers[m]["student"] = tower_cost(s, m, repeats)
        tick(f"measuring cost ({m})", 2 * i + 2, total)
    src = resolve_data(data, t.cfg, pool_size, test_size)
    pool, test = src["pool"], src["test"]
    label_names = list(pool.label_names or test.label_names or [])
    tower = pick_modality(s.model.modalities, test.modalities)
    folder = Path(out) if out is not None else student_run / "distill_report"
    done = 2 * len(s.model.modalities)
    quality = {}
    for name, run in (("teacher", t), ("student", s)):
        tick(f"evaluating the {name}", done, total)
        quality[name] = run_quality(run, pool, test, label_names, tower, fraction, seeds, folder / name,
                                    src["partition"])
        done += 1
    tick("cross-compatibility", done, total)
    s_test, t_test = quality["student"].pop("_test"), quality["teacher"].pop("_test")
    cross = {"retrieval": cross_retrieval(s_test, t_test, s.model.modalities),
             "zero_shot": zero_shot_report(t.model, t.tokenizer, s_test[0], class_prompts(test, label_names or None))}
    result = json_safe({
        "student_run": str(student_run), "teacher_run": str(teacher_dir),
        "students": s.state.get("student", {}).get("towers", {}),
        "data": {"description": src["description"], "n_pool": len(pool), "n_test": len(test)},
        "towers": towers, "quality": quality, "cross": cross,
        "rows": report_rows(towers, quality, cross),
        "settings": {"threads": threads, "repeats": repeats, "fraction": fraction, "seeds": list(seeds),
                     "latency": "PyTorch eager, CPU, batch 1, median", "flops": "FlopCounterMode, SDPA as MATH"},
        "seconds": round(time.perf_counter() - t0, 2),
    })
    tick("done", total, total)
    atomic_write_text(student_run / "distill_report.json", json.dumps(result, indent=1))
    return result
