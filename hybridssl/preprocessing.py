"""The preprocessing spec applied with torch on the training side. The spec itself is defined once,
torch-free, in :mod:`edge_runtime.spec` (imported here); image resizing is that module's numpy/Pillow
code, audio uses torchaudio (``edge_runtime`` re-implements it in numpy; parity tests hold the two
together).

Image  : RGB uint8 (H, W, 3) → resize shorter side to ``resize`` (Pillow, bilinear) → centre crop
         ``size``×``size`` → x/255 → (x − mean)/std → (3, size, size) float32.
Audio  : mono waveform at rate r → resample to ``sample_rate`` (torchaudio sinc) → take the first
         ``clip_seconds`` (zero-pad if shorter) → power mel spectrogram (n_fft, hop, win = n_fft,
         Hann, centre/reflect padding, HTK mel scale, no filter norm) → log(mel + log_offset) →
         (x − norm_mean)/norm_std → (1, n_mels, frames) float32.
Text   : the run's ``tokenizer.json`` (see :mod:`hybridssl.tokenizer`); ``max_length`` tokens
         including [CLS]/[SEP], padded with [PAD].
Sequence: :mod:`edge_runtime.sequence` (numpy, one implementation for both sides); the training side
         crops an item longer than ``max_frames`` (a counted repair) where the runtime refuses it.
         :func:`fit_sequence_spec` fits a stream's spec on training items.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from edge_runtime import preprocess as edge_preprocess
from edge_runtime.sequence import crop_sequence, normalize_sequence
from edge_runtime.spec import AudioSpec, ImageSpec, PreprocessSpec, SequenceSpec, TextSpec

__all__ = ["AudioSpec", "ImageSpec", "PreprocessSpec", "SequenceSpec", "TextSpec", "fit_sequence_spec",
           "preprocess_sequence", "fit_waveform", "log_mel", "preprocess_audio",
           "preprocess_image", "resize_and_crop"]


# ----------------------------------------------------------------------------- image


def resize_and_crop(image: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """(H, W, 3) uint8 → (size, size, 3) uint8: shorter side to ``resize``, then centre crop (the
    runtime's implementation: one definition for both sides)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    return edge_preprocess.resize_and_crop(image, spec)


def preprocess_image(image: np.ndarray, spec: ImageSpec) -> torch.Tensor:
    """(H, W, 3) uint8 → (3, size, size) float32 normalised tensor, pixel for pixel what
    ``edge_runtime.preprocess.preprocess_image`` gives."""
    return torch.from_numpy(edge_preprocess.normalize_pixels(resize_and_crop(image, spec), spec))


# ----------------------------------------------------------------------------- audio
@lru_cache(maxsize=8)
def _mel_transform(sr: int, n_fft: int, hop: int, n_mels: int, f_min: float, f_max: float | None):
    import torchaudio

    return torchaudio.transforms.MelSpectrogram(
        sample_rate=sr, n_fft=n_fft, win_length=n_fft, hop_length=hop, f_min=f_min, f_max=f_max,
        n_mels=n_mels, power=2.0, center=True, pad_mode="reflect", norm=None, mel_scale="htk",
    )


def fit_waveform(wave: torch.Tensor, sample_rate: int, spec: AudioSpec) -> tuple[torch.Tensor, bool]:
    """Resample a mono (T,) waveform to the spec rate and crop/pad it to the clip length.

    Returns the fixed-length (num_samples,) waveform and whether it had to be resampled.
    """
    if wave.ndim != 1 or wave.numel() == 0:
        raise ValueError(f"expected a non-empty mono (T,) waveform, got shape {tuple(wave.shape)}")
    resampled = sample_rate != spec.sample_rate
    if resampled:
        import torchaudio.functional as AF

        g = math.gcd(int(sample_rate), spec.sample_rate)
        wave = AF.resample(wave, int(sample_rate) // g, spec.sample_rate // g)
    n = spec.num_samples
    wave = wave[:n] if wave.numel() >= n else torch.nn.functional.pad(wave, (0, n - wave.numel()))
    return wave, resampled


def log_mel(wave: torch.Tensor, spec: AudioSpec) -> torch.Tensor:
    """(..., num_samples) waveform at the spec rate → (..., n_mels, frames) normalised log-mel."""
    mel = _mel_transform(spec.sample_rate, spec.n_fft, spec.hop_length, spec.n_mels, spec.f_min, spec.f_max)
    x = torch.log(mel(wave.float()) + spec.log_offset)
    return (x - spec.norm_mean) / spec.norm_std


def preprocess_audio(wave: np.ndarray, sample_rate: int, spec: AudioSpec) -> tuple[torch.Tensor, bool]:
    """Mono waveform → ((1, n_mels, frames) float32, resampled?)."""
    fixed, resampled = fit_waveform(torch.from_numpy(np.asarray(wave, dtype=np.float32)), sample_rate, spec)
    return log_mel(fixed, spec).unsqueeze(0), resampled


# ----------------------------------------------------------------------------- feature sequences
#: ``model.sequence_patch`` 0 (auto) groups frames so that the longest sequence is about this many tokens.
#: Measured on the built-in sensor stream (96 frames, a transformer tower trained supervised for
#: 400 × 64 samples): patch 2 (48 tokens) learns the frequency-coded colour at chance, 12.4 %;
#: patch 8 (12 tokens) 96.9 % — a token must span enough of the wave to see its frequency.
AUTO_TOKENS = 16


def fit_sequence_spec(items: list[np.ndarray], max_frames: int, patch: int = 0) -> SequenceSpec:
    """A stream's spec from training items (T_i, D): per-channel mean / std over every frame (std
    floored at 1e-3), ``max_frames`` = the longest item, capped at ``max_frames``; ``patch`` 0 picks
    the power of two ≥ max_frames / :data:`AUTO_TOKENS` (so that a token spans several frames)."""
    if not items:
        raise ValueError("no training item carries this feature stream")
    dims = {x.shape[1] for x in items}
    if len(dims) != 1:
        raise ValueError(f"the stream's items disagree on the channel count: {sorted(dims)}")
    frames = np.concatenate([np.asarray(x, dtype=np.float64) for x in items])       # (ΣT, D)
    longest = min(int(max(x.shape[0] for x in items)), int(max_frames))
    patch = int(patch) or 2 ** max(0, math.ceil(math.log2(longest / AUTO_TOKENS)))
    if patch > longest:
        raise ValueError(f"model.sequence_patch {patch} is longer than the longest sequence kept ({longest} frames)")
    mean = [round(float(v), 6) for v in frames.mean(0)]
    std = [round(max(float(v), 1e-3), 6) for v in frames.std(0)]
    return SequenceSpec(dims.pop(), longest, patch, tuple(mean), tuple(std))


def preprocess_sequence(x: np.ndarray, spec: SequenceSpec) -> tuple[np.ndarray, bool]:
    """(T, D) training item → (normalised (min(T, max_frames), D) float32, whether it was cropped)."""
    if x.ndim != 2 or x.shape[1] != spec.dim or x.shape[0] == 0:
        raise ValueError(f"expected a (T >= 1, {spec.dim}) feature sequence, got {x.shape}")
    cropped, cut = crop_sequence(x, spec)
    return normalize_sequence(cropped, spec), cut
