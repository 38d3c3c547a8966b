"""The distillation task on real batches: row alignment, the teacher's own resolution, the loss sum,
and a frozen teacher that is neither trained nor saved."""

import pytest
import torch

from distill.api import student_preprocess
from distill.config import DistillConfig
from distill.feature_loss import feature_distillation
from distill.students import StudentSpec, build_student_model
from distill.task import DistillCollator, DistillTask, LiveTeacher, Side, TaggedDataset, aligned, distill_pairs
from hybridssl.data.batching import SafeDataset
from hybridssl.data.open import open_dataset
from hybridssl.preprocessing import preprocess_image
from hybridssl.runs import load_run


def test_aligned_keeps_common_rows_in_one_order():
    a = Side(torch.tensor([[0.0], [1.0], [2.0], [3.0]]), torch.tensor([0, 1, 2, 3]))
    b = Side(torch.tensor([[30.0], [10.0], [20.0]]), torch.tensor([3, 1, 2]))
    (ea, eb), rows = aligned(a, b)
    assert rows == [1, 2, 3]
    assert ea.flatten().tolist() == [1.0, 2.0, 3.0] and eb.flatten().tolist() == [10.0, 20.0, 30.0]


def test_pairs_need_a_student_side():
    assert distill_pairs(("image",), ("image", "text", "audio")) == [("image", "text"), ("image", "audio")]
    assert distill_pairs(("text", "audio"), ("image", "text", "audio")) == [("image", "text"), ("image", "audio"),
                                                                           ("text", "audio")]


@pytest.fixture(scope="module")
def setup(teacher_dir):
    teacher = load_run(teacher_dir)
    spec = student_preprocess(teacher.spec, 64)
    data = TaggedDataset(open_dataset("builtin", size=12, split="train", seed=0, image_size=32))
    collator = DistillCollator(spec, teacher.tokenizer, teacher.model.modalities, teacher.spec.image)
    batch = collator([SafeDataset(data)[i] for i in range(12)])
    return teacher, spec, data, batch


def test_collator_gives_the_teacher_its_own_resolution(setup):
    teacher, spec, data, batch = setup
    assert batch["image"].shape[1:] == (3, 64, 64)
    assert batch["teacher_image"].shape == (batch["image"].shape[0], 3, 32, 32)
    for row, item in enumerate(batch["image_idx"].tolist()):
        sample = data[item]            # no item is skipped in this batch: batch position = dataset position
        assert torch.equal(batch["teacher_image"][row], preprocess_image(sample.image, teacher.spec.image))
        assert torch.equal(batch["image"][row], preprocess_image(sample.image, spec.image))


def test_task_loss_is_the_weighted_sum_and_the_teacher_stays_frozen(setup):
    teacher, spec, data, batch = setup
    torch.manual_seed(0)
    student = build_student_model(StudentSpec({"image": "mobilevit_xxs", "text": "text_tiny"}, 16,
                                              teacher.tokenizer.vocab_size), spec)
    dcfg = DistillConfig(feature_weight=1.0, affinity_weight=0.5, contrastive_weight=0.25)
    task = DistillTask(dcfg, student, LiveTeacher(teacher.model, teacher.model.modalities), teacher.model.modalities,
                       temperature=0.07, min_temperature=0.01, affinity_temperature=0.1)
    task.eval()                          # BatchNorm in eval mode: the recomputation below sees the same network
    out = task(batch, 0)
    assert set(out.parts) == {"feature/image", "feature/text", "affinity/image-text", "affinity/image-audio",
                              "affinity/text-audio", "contrastive/image-text", "contrastive/image-audio",
                              "contrastive/text-audio"}
    expected = sum(out.weights[k] * v for k, v in out.parts.items())
    assert float(out.loss.detach()) == pytest.approx(expected, rel=1e-5)
    assert out.weights["affinity/image-text"] == 0.5 and out.weights["contrastive/text-audio"] == 0.25
    with torch.no_grad():
        s = student.embed("image", batch["image"])
        t = teacher.model.embed("image", batch["teacher_image"])
    assert out.parts["feature/image"] == pytest.approx(float(feature_distillation(s, t)), rel=1e-5)
    out.loss.backward()
    assert all(p.grad is not None for p in student.tower_parameters("image"))
    assert all(p.grad is None for p in teacher.model.parameters())
    assert not any(k.startswith("teacher") for k in task.state_dict())
    assert {k.split(".")[0] for k in task.state_dict()} == {"model", "temperature"}


def test_logit_distillation_needs_a_zero_shot_head(setup):
    teacher, spec, _, _ = setup
    student = build_student_model(StudentSpec({"audio": "audio_cnn"}, 16, 0), spec)
    with pytest.raises(ValueError, match="class-prompt"):
        DistillTask(DistillConfig(logit_weight=1.0), student, LiveTeacher(teacher.model, ("audio",)), ("audio",),
                    temperature=0.07, min_temperature=0.01, affinity_temperature=0.1)
