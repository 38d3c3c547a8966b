"""The preprocessing spec, defined once (torch-free): saved with every run, written into every
bundle's manifest, read by both sides. :mod:`hybridssl.preprocessing` applies it with torch
(torchaudio's mel front end), :mod:`edge_runtime.preprocess` with numpy; parity tests hold the two
together.

Image  : RGB uint8 (H, W, 3) → resize shorter side to ``resize`` (Pillow, ``interpolation``) → centre
         crop ``size``×``size`` → x/255 → (x − mean)/std → (3, size, size) float32.
Audio  : mono waveform at rate r → resample to ``sample_rate`` (band-limited sinc) → the first
         ``clip_seconds`` (zero-pad if shorter) → power mel spectrogram (n_fft, hop, win = n_fft, Hann,
         centre/reflect padding, HTK mel scale, no filter norm) → log(mel + log_offset) →
         (x − norm_mean)/norm_std → (1, n_mels, frames) float32.
Text   : the run's ``tokenizer.json``; ``max_length`` tokens including [CLS]/[SEP], padded with [PAD].
Sequence (one :class:`SequenceSpec` per feature stream, fitted on the training data): (T, D) float
         frames → (x − mean)/std per channel → zero-padded at the end to a multiple of ``patch`` (and of
         the longest item of the batch) with a frame mask (1 = real) → (B, T', D) float32 + (B, T') int64.

:func:`image_spec` / :func:`audio_spec` read a manifest's ``preprocessing`` strictly (every field
present, values within :data:`edge_runtime.schema.LIMITS`), raising :class:`BundleError`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from edge_runtime.schema import LIMITS, BundleError

#: Pillow resampling filters a spec may name.
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclass
class ImageSpec:
    size: int = 32
    resize: int = 32
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    interpolation: str = "bilinear"


@dataclass
class AudioSpec:
    sample_rate: int = 16000
    clip_seconds: float = 1.0
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float | None = None
    log_offset: float = 1e-6
    norm_mean: float = -6.0
    norm_std: float = 4.0

    @property
    def num_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def num_frames(self) -> int:
        return self.num_samples // self.hop_length + 1


@dataclass
class TextSpec:
    max_length: int = 32
    vocab_size: int = 1024
    model: str = "bpe"  # or "wordpiece" (its training is not reproducible upstream: see hybridssl.tokenizer)
    lowercase: bool = True
    tokenizer_file: str = "tokenizer.json"


@dataclass
class SequenceSpec:
    """One feature stream: ``dim`` channels per frame, at most ``max_frames`` frames, ``patch``
    consecutive frames per token, per-channel ``mean`` / ``std`` (length ``dim``) for normalisation."""

    dim: int
    max_frames: int
    patch: int = 1
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        self.mean = tuple(float(v) for v in self.mean) or (0.0,) * self.dim
        self.std = tuple(float(v) for v in self.std) or (1.0,) * self.dim

    @property
    def max_tokens(self) -> int:
        return -(-self.max_frames // self.patch)

    @property
    def padded_frames(self) -> int:
        """The longest time axis a tower takes: ``max_frames`` rounded up to a multiple of ``patch``."""
        return self.max_tokens * self.patch


@dataclass
class PreprocessSpec:
    image: ImageSpec = field(default_factory=ImageSpec)
    audio: AudioSpec = field(default_factory=AudioSpec)
    text: TextSpec = field(default_factory=TextSpec)
    #: stream name → its spec (filled from the training data: :func:`hybridssl.app.train.prepare`)
    sequences: dict[str, SequenceSpec] = field(default_factory=dict)
    version: int = 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sequences"] = {k: {**v, "mean": list(v["mean"]), "std": list(v["std"])} for k, v in d["sequences"].items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreprocessSpec":
        img = dict(d.get("image", {}))
        for k in ("mean", "std"):
            if k in img:
                img[k] = tuple(img[k])
        return cls(
            image=ImageSpec(**img),
            audio=AudioSpec(**d.get("audio", {})),
            text=TextSpec(**d.get("text", {})),
            sequences={str(k): SequenceSpec(**v) for k, v in (d.get("sequences") or {}).items()},
            version=int(d.get("version", 1)),
        )


def image_spec(preprocessing: dict[str, Any]) -> ImageSpec:
    """The manifest's ``preprocessing.image`` as an ImageSpec (BundleError when malformed)."""
    d = preprocessing.get("image") or {}
    try:
        spec = ImageSpec(int(d["size"]), int(d["resize"]), tuple(float(v) for v in d["mean"]),  # type: ignore[arg-type]
                         tuple(float(v) for v in d["std"]), str(d.get("interpolation", "bilinear")))  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"manifest preprocessing.image is malformed ({e.__class__.__name__}: {e})") from None
    if (spec.size < 1 or spec.resize < spec.size or len(spec.mean) != 3 or len(spec.std) != 3
            or min(spec.std) <= 0 or spec.interpolation not in INTERPOLATIONS):
        raise BundleError(f"manifest preprocessing.image is malformed: {d}")
    if spec.size > LIMITS["image_size"] or spec.resize > LIMITS["image_resize"]:
        raise BundleError(f"manifest preprocessing.image size {spec.size} / resize {spec.resize} is beyond the bounds "
                          f"({LIMITS['image_size']} / {LIMITS['image_resize']})")
    return spec


def audio_spec(preprocessing: dict[str, Any]) -> AudioSpec:
    """The manifest's ``preprocessing.audio`` as an AudioSpec (BundleError when malformed)."""
    d = preprocessing.get("audio") or {}
    try:
        spec = AudioSpec(int(d["sample_rate"]), float(d["clip_seconds"]), int(d["n_fft"]), int(d["hop_length"]),
                         int(d["n_mels"]), float(d.get("f_min", 0.0)),
                         None if d.get("f_max") is None else float(d["f_max"]), float(d["log_offset"]),
                         float(d["norm_mean"]), float(d["norm_std"]))
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"manifest preprocessing.audio is malformed ({e.__class__.__name__}: {e})") from None
    if (spec.sample_rate < 1000 or spec.clip_seconds <= 0 or spec.n_fft < 2 or spec.hop_length < 1 or spec.n_mels < 1
            or spec.norm_std <= 0 or spec.log_offset <= 0 or spec.num_samples <= spec.n_fft // 2):
        raise BundleError(f"manifest preprocessing.audio is malformed: {d}")
    if (spec.clip_seconds > LIMITS["clip_seconds"] or spec.n_mels > LIMITS["n_mels"] or spec.sample_rate > 192_000
            or spec.n_fft > 1 << 16 or not all(math.isfinite(v) for v in (spec.norm_mean, spec.norm_std, spec.log_offset))):
        raise BundleError(f"manifest preprocessing.audio is beyond the bounds (clip_seconds <= {LIMITS['clip_seconds']}, "
                          f"n_mels <= {LIMITS['n_mels']}, sample_rate <= 192000, n_fft <= 65536, finite norms): {d}")
    return spec


def sequence_spec(preprocessing: dict[str, Any], stream: str) -> SequenceSpec:
    """The manifest's ``preprocessing.sequences.<stream>`` as a SequenceSpec (BundleError when malformed
    or beyond :data:`LIMITS`: ``max_frames``, ``sequence_dim``; finite means, positive finite stds)."""
    d = (preprocessing.get("sequences") or {}).get(stream)
    try:
        if not isinstance(d, dict):
            raise TypeError(f"no entry for stream {stream!r}")
        mean, std = [float(v) for v in d["mean"]], [float(v) for v in d["std"]]
        spec = SequenceSpec(int(d["dim"]), int(d["max_frames"]), int(d["patch"]), tuple(mean), tuple(std))
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"manifest preprocessing.sequences.{stream} is malformed ({e.__class__.__name__}: {e})") from None
    if not (1 <= spec.dim <= LIMITS["sequence_dim"] and 1 <= spec.max_frames <= LIMITS["max_frames"]
            and 1 <= spec.patch <= spec.max_frames and len(mean) == len(std) == spec.dim
            and all(math.isfinite(v) for v in mean) and all(math.isfinite(v) and v > 0 for v in std)):
        raise BundleError(f"manifest preprocessing.sequences.{stream} is malformed or beyond the bounds (dim <= "
                          f"{LIMITS['sequence_dim']}, max_frames <= {LIMITS['max_frames']}, 1 <= patch <= max_frames, "
                          f"dim finite means and positive stds)")
    return spec
