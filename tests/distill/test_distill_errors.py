"""Bad requests give one clear error each, before any training."""

import pytest

from distill.api import distill_run
from distill.config import DistillConfig
from hybridssl.app.train import train_run
from hybridssl.config import load_config


@pytest.fixture(scope="module")
def image_text_teacher(tmp_path_factory, tiny_teacher_overrides):
    run = tmp_path_factory.mktemp("it") / "run"
    train_run(load_config("tiny", tiny_teacher_overrides + ["model.modalities=[image,text]"]), run)
    return run


def test_missing_teacher_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        distill_run(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        distill_run(tmp_path / "empty", tmp_path / "out")


def test_teacher_without_the_requested_modality(image_text_teacher, tmp_path, tiny_distill):
    with pytest.raises(ValueError, match=r"has no audio tower \(it has image, text\)"):
        distill_run(image_text_teacher, tmp_path / "out", modalities=("image", "audio"), overrides=tiny_distill)
    with pytest.raises(ValueError, match="has no audio tower"):
        distill_run(image_text_teacher, tmp_path / "out", student="audio_cnn", overrides=tiny_distill)
    assert not (tmp_path / "out").exists()


def test_mismatched_preprocessing(teacher_dir, tmp_path, tiny_distill):
    with pytest.raises(ValueError, match="text preprocessing must equal the teacher's.*max_length 16 != teacher's 24"):
        distill_run(teacher_dir, tmp_path / "out", overrides=tiny_distill + ["preprocess.text.max_length=16"])
    with pytest.raises(ValueError, match="audio preprocessing must equal the teacher's.*n_mels 64 != teacher's 32"):
        distill_run(teacher_dir, tmp_path / "out", overrides=tiny_distill + ["preprocess.audio.n_mels=64"])


def test_unknown_or_misplaced_student(teacher_dir, tmp_path, tiny_distill):
    with pytest.raises(ValueError, match="unknown student 'resnet50'; known students: .*mobilevit"):
        distill_run(teacher_dir, tmp_path / "out", student="resnet50", overrides=tiny_distill)
    with pytest.raises(ValueError, match="student for text, but the distilled modalities are image"):
        distill_run(teacher_dir, tmp_path / "out", student="text_tiny", modalities=("image",), overrides=tiny_distill)
    with pytest.raises(ValueError, match="non-empty subset"):
        distill_run(teacher_dir, tmp_path / "out", modalities=("video",), overrides=tiny_distill)


def test_bad_distillation_settings(teacher_dir, student_dir, tmp_path, tiny_distill):
    with pytest.raises(ValueError, match="unknown config key.*distill.feature_weigth"):
        distill_run(teacher_dir, tmp_path / "out", overrides=["distill.feature_weigth=1"])
    with pytest.raises(ValueError, match="at least one > 0"):
        DistillConfig(feature_weight=0, affinity_weight=0, contrastive_weight=0)
    with pytest.raises(ValueError, match="feature_loss_kind"):
        DistillConfig(feature_loss_kind="l1")
    with pytest.raises(FileExistsError, match="already holds a run"):
        distill_run(teacher_dir, student_dir, overrides=tiny_distill)
