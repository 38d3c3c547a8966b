"""The side-by-side report: FLOPs against the formula, latency, ratios, cross-compatibility pairing,
and the whole report of a tiny student run."""

import json

import numpy as np
import pytest
import torch

from distill.report import (
    comparison_row,
    cpu_latency_ms,
    cross_retrieval,
    distill_report,
    example_inputs,
    flops_per_sample,
    format_row,
)
from distill.students import StudentSpec, build_student_model
from hybridssl.evaluation.embed import Embeddings
from hybridssl.preprocessing import PreprocessSpec
from hybridssl.runs import count_parameters, load_run

E = 16


def test_flops_of_the_audio_cnn_match_the_formula():
    spec = PreprocessSpec.from_dict({"audio": {"n_mels": 32, "clip_seconds": 0.5}})       # (1, 32, 51) log-mel
    model = build_student_model(StudentSpec({"audio": "audio_cnn"}, E, 0), spec).eval()
    # 3×3 stride-2 convolutions, padding 1: each side becomes ceil(side / 2); 2 FLOPs per multiply-add
    sides = [(32, 51), (16, 26), (8, 13), (4, 7), (2, 4)]
    channels = [1, 16, 32, 64, 128]
    conv = sum(2 * 9 * channels[i] * channels[i + 1] * sides[i + 1][0] * sides[i + 1][1] for i in range(4))
    head = 2 * 128 * E
    x = example_inputs("audio", spec, 0, batch=3)
    assert x[0].shape == (3, 1, 32, 51)
    assert flops_per_sample(model, "audio", x) == conv + head


def test_example_inputs_and_latency():
    spec = PreprocessSpec()
    ids, attn = example_inputs("text", spec, 100)
    assert ids.shape == attn.shape == (1, spec.text.max_length) and attn.all() and int(ids.min()) >= 5
    assert example_inputs("image", spec, 0)[0].shape == (1, 3, spec.image.size, spec.image.size)
    with pytest.raises(ValueError, match="tokenizer"):
        example_inputs("text", spec, 0)
    assert cpu_latency_ms(lambda: sum(range(1000)), repeats=3) > 0
    with pytest.raises(ValueError, match="repeats"):
        cpu_latency_ms(lambda: None, repeats=0)


def test_rows_ratios_and_formatting():
    assert comparison_row("R@1 image->text", 50.0, 45.0, "retention")["ratio"] == pytest.approx(90.0)
    assert comparison_row("image tower parameters", 5e6, 1e6, "reduction")["ratio"] == pytest.approx(5.0)
    assert comparison_row("R@1 x", 0.0, 3.0, "retention")["ratio"] is None
    assert format_row(comparison_row("image tower parameters", 5.4e6, 0.99e6, "reduction")) == (
        "image tower parameters", "5.40 M", "0.99 M", "5.5×", "-")
    assert format_row(comparison_row("R@1 image->text", 40.0, 38.0, "retention", 0.5))[3:] == ("95.0 %", "0.50")


def test_cross_retrieval_pairs_items_by_dataset_position():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 4))
    keys = [f"k{i}" for i in range(6)]
    # the student embedded items 0..5 in order; the teacher saw them shuffled, and item 5 lacks text
    order = np.array([3, 0, 4, 1, 2, 5])
    student = Embeddings(keys, np.zeros(6), {"image": base}, {"image": np.arange(6)})
    t_keys = [keys[p] for p in order]
    text_items = np.array([i for i, p in enumerate(order) if p != 5])
    teacher = Embeddings(t_keys, np.zeros(6), {"text": base[order[text_items]]}, {"text": text_items})
    out = cross_retrieval((student, np.arange(6)), (teacher, order), ("image",))
    assert set(out) == {"image(student)->text(teacher)", "text(teacher)->image(student)"}
    assert out["image(student)->text(teacher)"]["R@1"] == 100.0
    assert out["image(student)->text(teacher)"]["n_queries"] == 5


def test_the_report_of_a_tiny_student(student_dir, teacher_dir):
    before = torch.get_num_threads()
    report = distill_report(student_dir, pool_size=32, test_size=24, seeds=(0,), repeats=2, threads=1)
    assert torch.get_num_threads() == before                            # the latency threads are scoped
    assert json.loads((student_dir / "distill_report.json").read_text())["rows"] == report["rows"]
    teacher = load_run(teacher_dir)
    image = report["towers"]["image"]
    assert image["teacher"]["parameters"] == count_parameters(teacher.model, "image")
    assert image["student"]["input"] == [1, 3, 64, 64] and image["teacher"]["input"] == [1, 3, 32, 32]
    assert image["student"]["flops"] > 0 and image["student"]["latency_ms"] > 0
    metrics = [r["metric"] for r in report["rows"]]
    for expected in ("image tower parameters", "R@1 image->text", "zero-shot image",
                     "linear probe image 10 % labels, tower features", "linear probe image 10 % labels, joint embedding",
                     "R@1 image(student)->text(teacher)", "zero-shot image(student), teacher prompts"):
        assert expected in metrics, expected
    probe = next(r for r in report["rows"] if r["metric"].endswith("joint embedding"))
    assert probe["teacher"] == report["quality"]["teacher"]["linear_probe"]["embedding"]["accuracy"]["mean"]
    assert report["students"] == {"image": "mobilevit_xxs", "text": "text_tiny", "audio": "audio_cnn"}
