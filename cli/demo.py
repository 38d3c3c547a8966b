"""`hssl demo`: the whole pipeline end to end on the built-in dataset, ending in one summary table.

1. pretrain the hybrid teacher (the ``small`` preset: what 2 CPU cores train in ~5 minutes);
2. distil it into ``mobilevit_xxs`` + a small text transformer + a small audio CNN (teacher cache on);
3. export the student to an ONNX Runtime bundle (fp32 + int8 with the accuracy guard);
4. load the bundle with the torch-free ``edge_runtime`` and answer cross-modal queries on scenes
   it has never seen: text → images ("a red …") and sounds → images.

Each stage is a library call (``train_run``, ``distill_run``, ``export_run``, ``EdgeModel``); this
file only wires them together and prints. ``--quick`` uses the ``tiny`` preset and a few steps
everywhere: a smoke test of the wiring, not a result.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer
from rich.table import Table

from cli.console import TrainProgress, console, print_heldout

QUERY_COLOURS = ("red", "green", "blue", "yellow")
#: (attribute, value, query text): the factors beyond colour, shape included (docs/teacher.md says which are learned)
QUERY_OTHERS = (("position", "left", "a shape on the left"), ("position", "top", "a shape at the top"),
                ("texture", "striped", "a striped shape"), ("shape", "circle", "a circle"), ("shape", "star", "a star"))


def write_gallery(folder: Path, n: int, seed: int, image_size: int) -> list[dict[str, Any]]:
    """Render ``n`` unseen built-in test scenes as PNG + WAV files; returns their attributes."""
    import soundfile as sf
    from PIL import Image

    from hybridssl.data.synthetic import SyntheticScenes

    folder.mkdir(parents=True, exist_ok=True)
    scenes = SyntheticScenes(size=n, seed=seed + 1000, split="test", image_size=image_size)
    items = []
    for i in range(n):
        s = scenes[i]
        assert s.image is not None and s.audio is not None  # the built-in scenes carry both
        Image.fromarray(s.image).save(folder / f"scene{i:03d}.png")
        sf.write(folder / f"scene{i:03d}.wav", s.audio.astype(np.float32), s.sample_rate)
        items.append({"id": f"scene{i:03d}.png", "audio": folder / f"scene{i:03d}.wav", **scenes.attributes(i)})
    return items


def runtime_queries(bundle: Path, folder: Path, items: list[dict[str, Any]], k: int = 5) -> dict[str, Any]:
    """Index the gallery images with the edge runtime; precision@k of text and sound queries.

    Text query "a <colour> shape": a hit is an image of that colour; "a shape on the left", "a striped
    shape", "a circle"…: a hit has that position / texture / shape. Sound query (a scene's own
    clip): a hit is an image of a scene with the sound's colour (pitch) and size (loudness)."""
    from edge_runtime.index import index_files
    from edge_runtime.model import EdgeModel

    model = EdgeModel.load(bundle)
    index, skipped = index_files(model, [folder / it["id"] for it in items], folder)
    by_id = {it["id"]: it for it in items}
    rows = []
    for colour in QUERY_COLOURS:
        hits = index.search(model.embed_text(f"a {colour} shape"), k=k)
        rows.append({"query": f'text "a {colour} shape"', "hits": [h.id for h in hits],
                     "correct": sum(by_id[h.id]["colour"] == colour for h in hits)})
    for attribute, value, text in QUERY_OTHERS:
        hits = index.search(model.embed_text(text), k=k)
        rows.append({"query": f'text "{text}"', "hits": [h.id for h in hits],
                     "correct": sum(by_id[h.id][attribute] == value for h in hits)})
    if "audio" in model.modalities:
        for it in items[:4]:
            hits = index.search(model.embed_audio(str(it["audio"])), k=k)
            rows.append({"query": f"sound of {it['id']} ({it['colour']}, {it['size']})", "hits": [h.id for h in hits],
                         "correct": sum(by_id[h.id]["colour"] == it["colour"] and by_id[h.id]["size"] == it["size"]
                                        for h in hits)})
    return {"k": k, "rows": rows, "skipped": skipped, "backends": model.backends, "precisions": model.precisions}


def _stage(i: int, title: str) -> None:
    console.rule(f"[bold]{i}/4 {title}")


def demo(
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="demo directory")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="a smoke test: the tiny preset, a few steps per stage")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    from cli.distill import comparison_table
    from cli.export import steps_table
    from distill.api import distill_run
    from distill.report import format_row
    from export.api import export_run
    from hybridssl.app.train import train_run
    from hybridssl.config import load_config

    t0 = time.perf_counter()
    cfg = load_config("tiny", ["train.steps=30", "train.ckpt_every=0"]) if quick else load_config("small")
    root = out or Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    summary: list[tuple[str, str, str]] = []

    _stage(1, "pretrain the hybrid teacher (contrastive + generative, adaptive weighting)")
    bar = TrainProgress(cfg.train.steps, enabled=not no_progress)
    with bar:
        teacher = train_run(cfg, root / "teacher", on_step=bar.update)
    print_heldout(teacher["heldout"])
    r = teacher["heldout"]["retrieval"]["image->text"]
    summary.append(("teacher image→text R@1", f"{r['R@1']:.1f} % (chance {r['chance_R@1']:.2f} %)", str(root / "teacher")))

    _stage(2, "distil into mobilevit_xxs + small text and audio towers")
    steps = cfg.train.steps
    bar = TrainProgress(steps, enabled=not no_progress)
    with bar:
        student = distill_run(root / "teacher", root / "student", student="mobilevit_xxs,text_tiny,audio_cnn",
                              steps=steps, cache_teacher=True, on_step=bar.update, report=True,
                              report_options={"test_size": 200 if quick else 500, "pool_size": 400 if quick else 1000,
                                              "seeds": (0,) if quick else (0, 1, 2)})
    console.print(comparison_table(student["report"]))
    for row in student["report"]["rows"]:
        if row["metric"] in ("image tower parameters", "R@1 image->text"):
            metric, t_val, s_val, ratio, _ = format_row(row)
            summary.append((f"student {metric}", f"{s_val} (teacher {t_val}; {ratio})", str(root / "student")))

    _stage(3, "export the student: ONNX → ONNX Runtime fp32 + int8 (accuracy guard 1 point)")
    report = export_run(root / "student", root / "bundle", "onnxruntime", eval_size=200 if quick else 512,
                        calibration_size=64 if quick else 256)
    console.print(steps_table(report))
    summary.append(("bundle", f"default precision {report['precision']}, shipped {', '.join(report['shipped'])}",
                    str(report["bundle"])))

    _stage(4, "the torch-free edge runtime answers cross-modal queries on unseen scenes")
    items = write_gallery(root / "gallery", 24 if quick else 60, cfg.train.seed, cfg.data.image_size)
    answers = runtime_queries(Path(report["bundle"]), root / "gallery", items)
    table = Table(title=f"edge_runtime queries over {len(items)} unseen images (top {answers['k']}; "
                        f"back end {', '.join(sorted(set(answers['backends'].values())))})")
    for col in ("query", f"correct in top {answers['k']}", "top hits"):
        table.add_column(col)
    for row in answers["rows"]:
        table.add_row(row["query"], str(row["correct"]), ", ".join(row["hits"][:3]) + " …")
    console.print(table)
    total = sum(row["correct"] for row in answers["rows"])
    summary.append(("runtime precision@5", f"{total}/{answers['k'] * len(answers['rows'])} correct",
                    str(root / "gallery")))

    final = Table(title=f"hssl demo — summary ({time.perf_counter() - t0:.0f} s)")
    for col in ("stage", "result", "artifact"):
        final.add_column(col)
    for row in summary:
        final.add_row(*row)
    console.print(final)
