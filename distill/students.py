"""The student factory: small towers picked by name, each projected into the teacher's joint space.

A student *tower* of modality m is an encoder ``x → h`` (pooled features, (B, W)) followed by a
projection ``Linear(W, E, bias=False)`` into the teacher's embedding dimension E and L2
normalisation, so a student embedding can be compared with teacher embeddings of the other
modalities (cross-compatibility):

    e = normalise(P · encoder(x)),   x: image (B, 3, S, S) | text ids (B, L) + attention (B, L) bool
                                        | log-mel (B, 1, M, T)  →  e (B, E)

Registered students (``@register_student``; :func:`create_student` builds one by name, as timm's
``create_model`` does; :func:`known_students` lists them):

* image, timm with ``pretrained=False, num_classes=0`` (global-pooled features): ``mobilevit_xxs`` /
  ``mobilevit_xs`` / ``mobilevit_s`` (Mehta & Rastegari 2022), ``mobilenetv3_small`` /
  ``mobilenetv3_large`` (Howard et al. 2019), ``efficientnet_b0`` (Tan & Le 2019), ``vit_tiny`` (ViT-Ti
  widths, 192 × 12 blocks × 3 heads, mean-pooled, patch 4/8/16 for inputs < 64 / < 192 / ≥ 192 px);
  aliases ``mobilevit`` → ``mobilevit_xxs`` and ``mobilenetv3`` → ``mobilenetv3_small``;
* text, on the TEACHER's tokenizer (same vocabulary and ``max_length``): ``text_tiny`` (width 96,
  2 blocks, 3 heads) and ``text_small`` (width 128, 4 blocks, 4 heads), masked-mean pooled after a
  final LayerNorm exactly like the teacher's text tower;
* audio, on the teacher's normalised log-mel: ``audio_cnn`` (4 stride-2 3×3 conv/BN/ReLU stages,
  16→128 channels, global average pool) and ``audio_vit_tiny`` (16×10 spectrogram patches, width 96,
  2 blocks, 3 heads, mean-pooled);
* feature sequences (every ``seq_<stream>`` tower, on the teacher's normalised frames and its
  stream spec): ``seq_tcn`` (a temporal CNN: frame projection, 3 residual dilated 1-D convolutions
  k = 5 at dilations 1/2/4, width 96, masked mean) and ``seq_tiny`` (the teacher's frame tokens,
  width 64, 2 blocks, 2 heads, masked mean).

:class:`StudentModel` holds one tower per modality and offers the tower interface of
:class:`hybridssl.models.hybrid.HybridModel` (``modalities``, ``forward_features``, ``forward_head``,
``embed``, ``feature_dim``, ``tower_parameters``), which is all evaluation and export use.
:class:`StudentSpec` (modality → student name, E, vocabulary size) is saved in the student run's
checkpoint state; with the run's preprocessing spec it rebuilds the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import torch.nn.functional as F
from torch import Tensor, nn

from distill.sequence_encoders import TemporalCNN, TinySequenceEncoder, masked_mean
from edge_runtime.modalities import MODALITIES, is_sequence, modality_kind, ordered_modalities, sequence_stream
from hybridssl.preprocessing import PreprocessSpec

#: the student of each modality when none is named ("sequence": every seq_<stream> tower)
DEFAULT_STUDENTS = {"image": "mobilevit_xxs", "text": "text_tiny", "audio": "audio_cnn", "sequence": "seq_tcn"}
#: What a student is registered for: one of the fixed modalities, or every feature-sequence tower.
STUDENT_KINDS = (*MODALITIES, "sequence")
ALIASES = {"mobilevit": "mobilevit_xxs", "mobilenetv3": "mobilenetv3_small"}

#: ``factory(preprocess, vocab_size, modality) -> encoder`` (modality: the tower it is built for)
EncoderFactory = Callable[[PreprocessSpec, int, str], nn.Module]


@dataclass(frozen=True)
class StudentEntry:
    name: str
    modality: str
    factory: EncoderFactory
    description: str


_REGISTRY: dict[str, StudentEntry] = {}


def register_student(name: str, modality: str, description: str) -> Callable[[EncoderFactory], EncoderFactory]:
    """Register ``factory(preprocess, vocab_size, modality) -> encoder`` (an ``nn.Module`` with ``width``
    and ``forward(x, attention=None) -> (B, width)``) as the student ``name`` of ``modality`` (one of
    :data:`STUDENT_KINDS`)."""
    if modality not in STUDENT_KINDS:
        raise ValueError(f"unknown modality {modality!r}; valid: {', '.join(STUDENT_KINDS)}")

    def wrap(factory: EncoderFactory) -> EncoderFactory:
        if name in _REGISTRY or name in ALIASES:
            raise ValueError(f"student {name!r} is already registered")
        _REGISTRY[name] = StudentEntry(name, modality, factory, description)
        return factory

    return wrap


def known_students() -> dict[str, str]:
    """``{name: "modality: description"}`` of every registered student and alias."""
    out = {n: f"{e.modality}: {e.description}" for n, e in _REGISTRY.items()}
    out.update({a: f"{_REGISTRY[t].modality}: alias of {t}" for a, t in ALIASES.items()})
    return dict(sorted(out.items()))


def student_entry(name: str) -> StudentEntry:
    """The registry entry of ``name`` (aliases resolved); ValueError listing the known names."""
    canonical = ALIASES.get(name.strip().lower(), name.strip().lower())
    if canonical not in _REGISTRY:
        raise ValueError(f"unknown student {name!r}; known students: {', '.join(known_students())}")
    return _REGISTRY[canonical]


# ----------------------------------------------------------------------------- encoders
class TimmImageEncoder(nn.Module):
    """A timm backbone without classifier: (B, 3, S, S) → globally pooled features (B, W)."""

    def __init__(self, arch: str, **kwargs: Any) -> None:
        super().__init__()
        import timm

        self.net = timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)
        self.width = int(getattr(self.net, "head_hidden_size", None) or cast(Any, self.net).num_features)

    def forward(self, x: Tensor, attention: Tensor | None = None) -> Tensor:
        return self.net(x)                                              # (B, W)


class TinyTextEncoder(nn.Module):
    """Token + position embedding → pre-norm transformer blocks → LayerNorm → masked mean (B, W)."""

    def __init__(self, vocab_size: int, max_length: int, width: int, depth: int, heads: int,
                 mlp_ratio: float = 4.0) -> None:
        super().__init__()
        from hybridssl.models.blocks import make_blocks
        from hybridssl.models.encoders import TextStem

        if vocab_size < 1:
            raise ValueError("a text student needs the teacher's tokenizer (vocab_size >= 1)")
        self.stem = TextStem(vocab_size, max_length, width)
        self.blocks = make_blocks(width, depth, heads, mlp_ratio)
        self.norm = nn.LayerNorm(width)
        self.width = width

    def forward(self, ids: Tensor, attention: Tensor | None = None) -> Tensor:
        if attention is None:
            raise ValueError("text needs its attention mask")
        x = self.stem(ids)                                              # (B, L, W)
        mask = attention[:, None, None, :]                              # (B, 1, 1, L)
        for blk in self.blocks:
            x = blk(x, attn_mask=mask)
        return masked_mean(self.norm(x), attention)                     # (B, W)


class AudioCNN(nn.Module):
    """Log-mel (B, 1, M, T) → 4 × [3×3 conv stride 2, BN, ReLU] → global average pool (B, W)."""

    def __init__(self, channels: Sequence[int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.width = c_in

    def forward(self, x: Tensor, attention: Tensor | None = None) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected a log-mel batch (B, 1, M, T), got {tuple(x.shape)}")
        return self.body(x).mean(dim=(2, 3))                            # (B, C, m, t) → (B, W)


class SpectrogramViT(nn.Module):
    """Log-mel (B, 1, M, T) → patch tokens with positions → blocks → LayerNorm → mean (B, W)."""

    def __init__(self, n_mels: int, frames: int, patch: tuple[int, int], width: int, depth: int, heads: int) -> None:
        super().__init__()
        from hybridssl.models.encoders import PatchStem, make_blocks

        self.stem = PatchStem(1, (n_mels, frames), patch, width)
        self.blocks = make_blocks(width, depth, heads, 4.0)
        self.norm = nn.LayerNorm(width)
        self.width = width

    def forward(self, x: Tensor, attention: Tensor | None = None) -> Tensor:
        tokens = self.stem(x)                                           # (B, N, W)
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.norm(tokens).mean(1)                                # (B, W)


# ----------------------------------------------------------------------------- the registry
def _timm(arch: str, description: str, name: str) -> None:
    register_student(name, "image", description)(lambda spec, vocab, m: TimmImageEncoder(arch))


_timm("mobilevit_xxs", "timm MobileViT-XXS (0.95 M backbone)", "mobilevit_xxs")
_timm("mobilevit_xs", "timm MobileViT-XS (1.9 M backbone)", "mobilevit_xs")
_timm("mobilevit_s", "timm MobileViT-S (4.9 M backbone)", "mobilevit_s")
_timm("mobilenetv3_small_100", "timm MobileNetV3-Small 1.0 (1.5 M backbone)", "mobilenetv3_small")
_timm("mobilenetv3_large_100", "timm MobileNetV3-Large 1.0 (4.2 M backbone)", "mobilenetv3_large")
_timm("efficientnet_b0", "timm EfficientNet-B0 (4.0 M backbone)", "efficientnet_b0")


def vit_patch(size: int) -> int:
    """Patch side of ``vit_tiny`` for a square input of ``size`` px (a grid of about 8×8 or more)."""
    patch = 4 if size < 64 else 8 if size < 192 else 16
    if size % patch:
        raise ValueError(f"vit_tiny needs an image size divisible by its patch {patch}, got {size}")
    return patch


@register_student("vit_tiny", "image", "timm ViT with ViT-Ti widths (192 × 12 × 3 heads), mean-pooled")
def _vit_tiny(spec: PreprocessSpec, vocab_size: int, modality: str) -> nn.Module:
    size = spec.image.size
    return TimmImageEncoder("vit_tiny_patch16_224", img_size=size, patch_size=vit_patch(size), global_pool="avg")


@register_student("text_tiny", "text", "transformer, width 96, 2 blocks, 3 heads, teacher tokenizer")
def _text_tiny(spec: PreprocessSpec, vocab_size: int, modality: str) -> nn.Module:
    return TinyTextEncoder(vocab_size, spec.text.max_length, 96, 2, 3)


@register_student("text_small", "text", "transformer, width 128, 4 blocks, 4 heads, teacher tokenizer")
def _text_small(spec: PreprocessSpec, vocab_size: int, modality: str) -> nn.Module:
    return TinyTextEncoder(vocab_size, spec.text.max_length, 128, 4, 4)


@register_student("audio_cnn", "audio", "CNN on the log-mel, 4 stride-2 stages 16→128 channels")
def _audio_cnn(spec: PreprocessSpec, vocab_size: int, modality: str) -> nn.Module:
    return AudioCNN()


@register_student("audio_vit_tiny", "audio", "spectrogram ViT, 16×10 patches, width 96, 2 blocks, 3 heads")
def _audio_vit_tiny(spec: PreprocessSpec, vocab_size: int, modality: str) -> nn.Module:
    return SpectrogramViT(spec.audio.n_mels, spec.audio.num_frames, (16, 10), 96, 2, 3)


@register_student("seq_tcn", "sequence", "temporal CNN, width 96, 3 dilated k=5 residual convs, masked mean")
def _seq_tcn(spec: PreprocessSpec, vocab_size: int, modality: str) -> nn.Module:
    return TemporalCNN(spec.sequences[sequence_stream(modality)].dim)


@register_student("seq_tiny", "sequence", "transformer on the teacher's frame tokens, width 64, 2 blocks, 2 heads")
def _seq_tiny(spec: PreprocessSpec, vocab_size: int, modality: str) -> nn.Module:
    seq = spec.sequences[sequence_stream(modality)]
    return TinySequenceEncoder(seq.dim, seq.patch, seq.max_tokens, 64, 2, 2)


# ----------------------------------------------------------------------------- towers and the model
class StudentTower(nn.Module):
    """encoder (B, …) → (B, W), then ``head``: Linear(W, E, bias=False)."""

    def __init__(self, name: str, modality: str, encoder: nn.Module, embed_dim: int) -> None:
        super().__init__()
        self.name = name
        self.modality = modality
        self.encoder = encoder
        self.width = int(cast(Any, encoder).width)
        self.head = nn.Linear(self.width, embed_dim, bias=False)
        nn.init.trunc_normal_(self.head.weight, std=0.02)


def create_student(name: str, *, embed_dim: int, preprocess: PreprocessSpec, vocab_size: int = 0,
                   modality: str | None = None) -> StudentTower:
    """Build the student tower ``name`` for inputs of ``preprocess``, projecting into ``embed_dim``.
    A sequence student needs the ``seq_<stream>`` tower it is for (``modality``)."""
    if embed_dim < 1:
        raise ValueError(f"embed_dim must be >= 1, got {embed_dim}")
    entry = student_entry(name)
    modality = entry.modality if modality is None and entry.modality != "sequence" else modality
    if modality is None or modality_kind(modality) != entry.modality:
        raise ValueError(f"student {entry.name!r} is a {entry.modality} student; it cannot be the {modality} tower")
    if is_sequence(modality) and sequence_stream(modality) not in preprocess.sequences:
        raise ValueError(f"the preprocessing spec has no feature stream {sequence_stream(modality)!r}")
    return StudentTower(entry.name, modality, entry.factory(preprocess, vocab_size, modality), embed_dim)



class StudentModel(nn.Module):
    """One student tower per modality behind the tower interface of ``HybridModel``."""

    def __init__(self, towers: dict[str, StudentTower]) -> None:
        super().__init__()
        if not towers:
            raise ValueError("a student model needs at least one tower")
        for m, t in towers.items():
            if t.modality != m:
                raise ValueError(f"tower {t.name!r} is a {t.modality} student; it cannot be the {m} tower")
        self.towers = nn.ModuleDict(towers)
        self.modalities = ordered_modalities(towers)

    def _tower(self, modality: str) -> StudentTower:
        if modality not in self.towers:
            raise ValueError(f"this student has no {modality!r} tower (it has {', '.join(self.modalities)})")
        return cast(StudentTower, self.towers[modality])

    def forward_features(self, modality: str, x: Tensor, attention: Tensor | None = None) -> Tensor:
        """Pooled features (B, W) of the modality's student encoder."""
        return self._tower(modality).encoder(x, attention)

    def forward_head(self, modality: str, pooled: Tensor) -> Tensor:
        """Pooled features (B, W) → L2-normalised joint embedding (B, E)."""
        return F.normalize(self._tower(modality).head(pooled), dim=-1)

    def embed(self, modality: str, x: Tensor, attention: Tensor | None = None) -> Tensor:
        return self.forward_head(modality, self.forward_features(modality, x, attention))

    def feature_dim(self, modality: str) -> int:
        return self._tower(modality).width

    def tower_parameters(self, modality: str) -> list[nn.Parameter]:
        """Everything ``forward_features(modality)`` runs through (not the projection head)."""
        return list(self._tower(modality).encoder.parameters())

    def count_parameters(self, modality: str) -> int:
        """Parameters of one inference tower: encoder and projection head."""
        return sum(p.numel() for p in self._tower(modality).parameters())


@dataclass
class StudentSpec:
    """What rebuilds a student model (with the run's preprocessing spec): towers and geometry."""

    towers: dict[str, str] = field(default_factory=dict)    # modality → student name
    embed_dim: int = 128
    vocab_size: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StudentSpec":
        unknown = sorted(set(d) - {"towers", "embed_dim", "vocab_size"})
        if unknown:
            raise ValueError(f"student spec has unknown key(s) {unknown}")
        return cls(dict(d.get("towers", {})), int(d.get("embed_dim", 128)), int(d.get("vocab_size", 0)))


def build_student_model(spec: StudentSpec, preprocess: PreprocessSpec) -> StudentModel:
    """The StudentModel of ``spec`` for inputs of ``preprocess`` (fresh weights)."""
    towers = {}
    for m, name in spec.towers.items():
        tower = create_student(name, embed_dim=spec.embed_dim, preprocess=preprocess, vocab_size=spec.vocab_size,
                               modality=m)
        towers[m] = tower
    return StudentModel(towers)


def resolve_students(student: str, modalities: Sequence[str]) -> dict[str, str]:
    """``"mobilevit_xs,text_small"`` + modalities → ``{modality: student name}`` for every modality.

    Each named student fills its own modality; modalities left unnamed get :data:`DEFAULT_STUDENTS`.
    A named student whose modality is not requested, or two students for one modality, is an error.
    """
    chosen: dict[str, str] = {}
    kinds = {modality_kind(m) for m in modalities}
    for raw in (s for s in student.split(",") if s.strip()):
        entry = student_entry(raw)
        if entry.modality not in kinds:
            raise ValueError(f"student {raw.strip()!r} is a student for {entry.modality}, but the distilled "
                             f"modalities are {', '.join(modalities)}")
        if entry.modality in chosen:
            raise ValueError(f"two {entry.modality} students given: {chosen[entry.modality]!r} and {entry.name!r}")
        chosen[entry.modality] = entry.name
    return {m: chosen.get(modality_kind(m), DEFAULT_STUDENTS[modality_kind(m)]) for m in ordered_modalities(modalities)}
