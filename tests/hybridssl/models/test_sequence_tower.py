"""The teacher's feature-sequence tower and the students for it: shapes, padding masks, invariance to
how far a batch is padded, the generative head, and clear errors."""

from __future__ import annotations

import pytest
import torch

from distill.students import StudentModel, create_student, resolve_students
from edge_runtime.spec import PreprocessSpec, SequenceSpec
from hybridssl.config import ModelConfig
from hybridssl.models.hybrid import HybridModel

SPEC = PreprocessSpec(sequences={"imu": SequenceSpec(dim=4, max_frames=24, patch=3)})


def _model() -> HybridModel:
    cfg = ModelConfig(modalities=("seq_imu",), width=32, depth=2, heads=2, embed_dim=16, generative="mae")
    torch.manual_seed(0)
    return HybridModel(cfg, SPEC, 0).eval()


def _padded(x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One (T, D) item padded to t frames: (1, t, D) frames, (1, t) bool mask."""
    frames = torch.zeros(1, t, x.shape[1])
    frames[0, : x.shape[0]] = x
    mask = torch.zeros(1, t, dtype=torch.bool)
    mask[0, : x.shape[0]] = True
    return frames, mask


def test_embedding_ignores_padding_for_the_teacher_and_every_student():
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(2))
    students = [create_student(n, embed_dim=16, preprocess=SPEC, modality="seq_imu") for n in ("seq_tcn", "seq_tiny")]
    for model in (_model(), *(StudentModel({"seq_imu": s}).eval() for s in students)):
        with torch.no_grad():
            short = model.embed("seq_imu", *_padded(x, 9))
            long = model.embed("seq_imu", *_padded(x, 24))
        assert short.shape == (1, 16)
        assert torch.allclose(short, long, atol=1e-5), type(model).__name__


def test_masked_encoding_feeds_the_frame_head():
    model = _model().train()
    frames, mask = _padded(torch.randn(10, 4), 12)
    enc = model.encode("seq_imu", frames, attention=mask, mask_ratio=0.5, generator=torch.Generator().manual_seed(0))
    assert enc.real.tolist() == [[True] * 4]              # 10 frames → 4 tokens of 3 (the last partly padding)
    assert int(enc.masked.sum()) == 2
    assert model.decoders["seq_imu"](enc.tokens).shape == (1, 4, 12)


def test_shape_errors_are_clear():
    model = _model()
    with pytest.raises(ValueError, match="4 channels"):
        model.embed("seq_imu", torch.zeros(1, 6, 5), torch.ones(1, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="multiple of 3"):
        model.embed("seq_imu", torch.zeros(1, 7, 4), torch.ones(1, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="frame mask"):
        model.embed("seq_imu", torch.zeros(1, 6, 4))
    with pytest.raises(ValueError, match="no entry for the feature stream 'eeg'"):
        HybridModel(ModelConfig(modalities=("seq_eeg",), width=32, depth=1, heads=2), SPEC, 0)


def test_model_modalities_select_the_feature_streams():
    cfg = ModelConfig()
    assert cfg.select_modalities(("image", "text", "seq_imu", "seq_eeg")) == ("image", "text", "seq_eeg", "seq_imu")
    named = ModelConfig(modalities=("image", "seq_imu"))
    assert named.select_modalities(("image", "text", "seq_imu", "seq_eeg")) == ("image", "seq_imu")


def test_students_resolve_per_sequence_tower():
    assert resolve_students("", ("image", "seq_a", "seq_b")) == {"image": "mobilevit_xxs", "seq_a": "seq_tcn",
                                                                 "seq_b": "seq_tcn"}
    assert resolve_students("seq_tiny", ("seq_a",)) == {"seq_a": "seq_tiny"}
    with pytest.raises(ValueError, match="a sequence student"):
        create_student("seq_tcn", embed_dim=8, preprocess=SPEC, modality="image")
    with pytest.raises(ValueError, match="no feature stream 'eeg'"):
        create_student("seq_tcn", embed_dim=8, preprocess=SPEC, modality="seq_eeg")
