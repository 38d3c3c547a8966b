"""A tiny distillation end to end: a student run in the teacher-run format that load_run rebuilds
and evaluate_run evaluates unchanged; the cached-teacher path."""

import json

import pytest
import torch
from safetensors.torch import load_file

from distill.api import distill_run
from distill.students import StudentModel
from distill.task import CachedTeacher
from hybridssl.app.evaluate import evaluate_run
from hybridssl.runs import checkpoint_folder, load_run, run_kind


def test_student_run_has_the_teacher_run_layout(student_dir, teacher_dir):
    for f in ("config.yaml", "tokenizer.json", "metrics.jsonl", "metrics.json", "report.md", "distill.json"):
        assert (student_dir / f).is_file(), f
    assert [p.name for p in (student_dir / "checkpoints").iterdir()] == ["step_000003"]
    assert run_kind(student_dir) == "student" and run_kind(teacher_dir) == "hybrid"
    logs = [json.loads(x) for x in (student_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logs] == [1, 2, 3]
    assert {"feature/image", "affinity/image-text", "contrastive/image-text", "feature/audio"} <= set(logs[0]["parts"])
    metrics = json.loads((student_dir / "metrics.json").read_text())
    assert "image->text" in metrics["heldout"]["retrieval"] and "image" in metrics["heldout"]["zero_shot"]


def test_load_run_rebuilds_the_student(student_dir, teacher_dir):
    s, t = load_run(student_dir), load_run(teacher_dir)
    assert isinstance(s.model, StudentModel) and not s.model.training
    assert s.model.modalities == ("image", "text", "audio")
    assert s.state["student"]["towers"] == {"image": "mobilevit_xxs", "text": "text_tiny", "audio": "audio_cnn"}
    assert s.spec.image.size == 64 and t.spec.image.size == 32          # the student's own preprocessing
    assert s.spec.text == t.spec.text and s.spec.audio == t.spec.audio
    assert s.cfg.model == t.cfg.model                                   # the teacher's resolved config
    assert s.tokenizer.to_str() == t.tokenizer.to_str()
    x = torch.randn(2, 3, 64, 64)
    e1, e2 = s.model.embed("image", x), load_run(student_dir).model.embed("image", x)
    assert e1.shape == (2, t.cfg.model.embed_dim) and torch.allclose(e1, e2)


def test_affinity_temperature_is_the_teachers_learned_one(student_dir, teacher_dir):
    log_scale = load_file(str(checkpoint_folder(teacher_dir) / "model.safetensors"))["temperature.log_scale"]
    state = load_run(student_dir).state
    assert state["teacher"]["temperature"] == pytest.approx(1.0 / float(log_scale.exp()), rel=1e-6)
    assert state["distill"]["affinity_temperature"] == 0.0 and state["model_kind"] == "student"


def test_evaluate_run_works_unchanged_on_the_student(student_dir, tmp_path):
    result = evaluate_run(student_dir, fractions=(0.5,), seeds=(0,), finetune=True, finetune_steps=2, pool_size=32,
                          test_size=24, out_dir=tmp_path, examples=2, threads=1)
    assert {"image->text", "text->image", "audio->text"} <= set(result["retrieval"])
    assert result["low_label"]["modality"] == "image"
    assert "finetune" in result["low_label"]["protocols"]
    assert (tmp_path / "eval.json").is_file()


def test_cached_teacher_run_hits_the_cache_the_second_time(teacher_dir, tmp_path, tiny_distill):
    seen = []
    common = dict(student="mobilenetv3_small", modalities=("image",), image_size=48, cache_teacher=True,
                  on_start=lambda trainer: seen.append(trainer.task.teacher))
    over = tiny_distill + [f"distill.cache_dir={tmp_path / 'cache'}", "distill.logit_weight=0.5", "train.steps=2"]
    first = distill_run(teacher_dir, tmp_path / "a", overrides=over, **common)
    second = distill_run(teacher_dir, tmp_path / "b", overrides=over, **common)
    assert all(isinstance(t, CachedTeacher) for t in seen)
    assert (first["teacher"]["cache_hit"], second["teacher"]["cache_hit"]) == (False, True)
    logs = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert {"feature/image", "logit/image", "affinity/image-text", "contrastive/image-audio"} <= set(logs[0]["parts"])
    assert load_run(tmp_path / "b").spec.image.size == 48
    with pytest.raises(ValueError, match="another distillation"):   # other data → another fingerprint
        distill_run(teacher_dir, tmp_path / "c", overrides=over + ["data.train_size=40"], **common)
