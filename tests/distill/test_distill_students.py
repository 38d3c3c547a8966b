"""The student factory: every student builds, embeds into the teacher's space (B, E) with unit rows,
and offers the tower interface evaluation and export use."""

import pytest
import torch

from distill.students import (
    ALIASES,
    DEFAULT_STUDENTS,
    StudentModel,
    StudentSpec,
    build_student_model,
    create_student,
    known_students,
    register_student,
    resolve_students,
    student_entry,
    vit_patch,
)
from hybridssl.preprocessing import PreprocessSpec

E = 16
VOCAB = 64


def _spec(size: int = 64) -> PreprocessSpec:
    return PreprocessSpec.from_dict({"image": {"size": size, "resize": size}, "audio": {"n_mels": 32, "clip_seconds": 0.5},
                                     "text": {"max_length": 12},
                                     "sequences": {"imu": {"dim": 5, "max_frames": 20, "patch": 2}}})


def _inputs(modality: str, spec: PreprocessSpec, b: int = 2):
    g = torch.Generator().manual_seed(0)
    if modality == "image":
        return (torch.randn(b, 3, spec.image.size, spec.image.size, generator=g),)
    if modality == "audio":
        return (torch.randn(b, 1, spec.audio.n_mels, spec.audio.num_frames, generator=g),)
    if modality == "seq_imu":
        mask = torch.ones(b, 20, dtype=torch.bool)
        mask[0, 7:] = False
        return torch.randn(b, 20, 5, generator=g) * mask[..., None], mask
    ids = torch.randint(5, VOCAB, (b, spec.text.max_length), generator=g)
    attn = torch.zeros(b, spec.text.max_length, dtype=torch.bool)
    attn[0, :5], attn[1, :]= True, True
    return ids, attn


CANONICAL = sorted(n for n in known_students() if n not in ALIASES)


def test_registry_lists_what_the_issue_asks_for():
    names = set(known_students())
    assert {"mobilevit", "mobilevit_xxs", "mobilevit_xs", "mobilevit_s", "mobilenetv3_small", "mobilenetv3_large",
            "efficientnet_b0", "vit_tiny", "text_tiny", "audio_cnn"} <= names
    assert student_entry("mobilevit").name == "mobilevit_xxs"
    assert student_entry("MobileViT_XS").name == "mobilevit_xs"


@pytest.mark.parametrize("name", CANONICAL)
def test_every_student_embeds_into_the_teacher_space(name):
    spec = _spec()
    kind = student_entry(name).modality
    tower = create_student(name, embed_dim=E, preprocess=spec, vocab_size=VOCAB,
                           modality="seq_imu" if kind == "sequence" else None)
    model = StudentModel({tower.modality: tower}).eval()
    m = tower.modality
    x = _inputs(m, spec)
    with torch.no_grad():
        feats = model.forward_features(m, *x)
        emb = model.embed(m, *x)
    assert feats.shape == (2, model.feature_dim(m))
    assert emb.shape == (2, E)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(model.forward_head(m, feats), emb)
    # the tower's parameters are the encoder's, not the projection head
    ids = {id(p) for p in model.tower_parameters(m)}
    assert ids and id(tower.head.weight) not in ids
    assert model.count_parameters(m) == sum(p.numel() for p in tower.parameters())


def test_text_student_ignores_padding_and_learns():
    spec = _spec()
    model = StudentModel({"text": create_student("text_tiny", embed_dim=E, preprocess=spec, vocab_size=VOCAB)}).eval()
    ids, attn = _inputs("text", spec)
    changed = ids.clone()
    changed[0, 5:] = 7                                        # only padded positions of row 0 change
    with torch.no_grad():
        assert torch.allclose(model.embed("text", ids, attn)[0], model.embed("text", changed, attn)[0], atol=1e-5)
    model.train()
    model.embed("text", ids, attn).sum().backward()
    assert all(p.grad is not None for p in model.tower_parameters("text"))
    with pytest.raises(ValueError, match="attention"):
        model.embed("text", ids)


def test_student_model_interface_errors():
    spec = _spec()
    model = build_student_model(StudentSpec({"audio": "audio_cnn"}, E, 0), spec)
    assert model.modalities == ("audio",)
    with pytest.raises(ValueError, match="no 'image' tower"):
        model.embed("image", torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="log-mel"):
        model.embed("audio", torch.zeros(1, 64, 51))
    with pytest.raises(ValueError, match="cannot be the image tower"):
        StudentModel({"image": create_student("audio_cnn", embed_dim=E, preprocess=spec)})
    with pytest.raises(ValueError, match="vocab_size"):
        create_student("text_tiny", embed_dim=E, preprocess=spec, vocab_size=0)


def test_unknown_student_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown student 'resnet9'.*mobilevit_xxs.*text_tiny"):
        create_student("resnet9", embed_dim=E, preprocess=_spec())
    with pytest.raises(ValueError, match="already registered"):
        register_student("mobilevit_xxs", "image", "again")(lambda spec, vocab: None)


def test_resolve_students_fills_defaults_and_refuses_conflicts():
    assert resolve_students("mobilevit", ("image", "text", "audio")) == {
        "image": "mobilevit_xxs", "text": DEFAULT_STUDENTS["text"], "audio": DEFAULT_STUDENTS["audio"]}
    assert resolve_students("mobilevit_xs,text_small", ("image", "text")) == {"image": "mobilevit_xs", "text": "text_small"}
    assert resolve_students("", ("audio",)) == {"audio": "audio_cnn"}
    with pytest.raises(ValueError, match="student for text, but the distilled modalities are image"):
        resolve_students("text_tiny", ("image",))
    with pytest.raises(ValueError, match="two image students"):
        resolve_students("mobilevit,efficientnet_b0", ("image",))


def test_spec_round_trip_and_vit_patch():
    spec = StudentSpec({"image": "vit_tiny"}, 32, 10)
    assert StudentSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="unknown key"):
        StudentSpec.from_dict({"towers": {}, "width": 3})
    assert (vit_patch(32), vit_patch(64), vit_patch(224)) == (4, 8, 16)
    with pytest.raises(ValueError, match="divisible"):
        vit_patch(100)
