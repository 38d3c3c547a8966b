"""Numpy re-implementation of the training-side preprocessing (``hybridssl/preprocessing.py`` and
the decoders of ``hybridssl/data/readers.py``); parity tests hold the two together (max abs
difference ≤ 1e-4 on pixels and log-mel, identical token ids). No torch.

Image  : file path / bytes / PIL image → Pillow decode (header size check first, full decode,
         EXIF orientation applied, first frame) → RGB uint8 (H, W, 3) with the training rules
         (alpha composited on white ``a·rgb + (1 − a)·255``; 16/32-bit grey → ``round(v / 257)``
         when above 255; float grey → ``v·255`` when in [0, 1], else clipped) → resize the shorter
         side to ``resize`` (Pillow, the spec's filter) → centre crop ``size`` → x/255 →
         (x − mean)/std → (3, size, size) float32.  Numpy arrays must already be (H, W, 3) uint8.
Audio  : file path / bytes → soundfile decode (float32), channels averaged to mono; or a float
         waveform with its rate → resample to ``sample_rate`` with torchaudio's default
         band-limited sinc kernel (``sinc_interp_hann``, lowpass_filter_width 6, rolloff 0.99):

             base = min(o, n)·rolloff,  w = ceil(6·o / base)
             t_{j,k} = clamp((−j/n + (k − w)/o)·base, −6, 6),   j < n, k < 2w + o
             kernel_{j,k} = sinc(π t)·cos²(π t / 12)·base / o
             y[b·n + j] = Σ_k x_pad[b·o + k]·kernel_{j,k},  x_pad = [0]*w ++ x ++ [0]*(w + o)

         (o, n = source and target rates over their gcd; output length ceil(n·T/o)) → first
         ``clip_seconds`` (zero-pad if shorter) → power spectrogram |rfft(hann_periodic · frame)|²
         of frames of ``n_fft`` every ``hop_length`` after reflect padding by n_fft/2 → HTK mel
         filter bank without norm (torchaudio ``melscale_fbanks``: triangles between
         ``mel⁻¹(linspace(mel(f_min), mel(f_max), n_mels + 2))``, mel(f) = 2595·log10(1 + f/700))
         → log(mel + log_offset) → (x − norm_mean)/norm_std → (1, n_mels, frames) float32.
         Matrix products run in row chunks small enough (m·n·k ≤ 2·10⁵) that OpenBLAS stays on one
         thread: its worker threads spinning against the inference back end's threads made whole
         products 10–60× slower on a loaded 2-core machine.
Text   : the bundle's ``tokenizer.json`` with truncation and padding to ``max_length``
         (``[CLS] … [SEP] [PAD]…``), as ``hybridssl.tokenizer.TextTokenizer.encode``
         → ids (B, L) int64, attention mask (B, L) int64 (1 = real token).
"""

from __future__ import annotations

import io
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from edge_runtime.png import file_problem, png_problem
from edge_runtime.schema import BundleError
from edge_runtime.spec import AudioSpec, ImageSpec
from edge_runtime.validate import (
    MAX_IMAGE_PIXELS,
    InputError,
    check_image_array,
    check_image_size,
    check_sample_rate,
    check_text,
    check_waveform,
)

_PIL_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
               "nearest": Image.Resampling.NEAREST}
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_INT_GREY_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
MAX_RESAMPLE_KERNEL = 20_000_000  # floats; e.g. 44101 Hz → 16000 Hz (gcd 1) would need 700 M


# ----------------------------------------------------------------------------- image


def decode_image(item: Any, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """A path, bytes, PIL image or (H, W, 3) uint8 array → (H, W, 3) uint8 RGB."""
    if isinstance(item, np.ndarray):
        return check_image_array(item)
    if isinstance(item, Image.Image):
        return _pil_to_rgb(item, "the PIL image", max_pixels)
    source, what = _open_source(item, "image")
    try:
        with Image.open(source) as img:
            if img.format == "PNG":
                check_png_complete(source, what)
            return _pil_to_rgb(img, what, max_pixels)
    except InputError:
        raise
    except Exception as e:  # UnidentifiedImageError, truncated data (OSError), DecompressionBombError, ...
        raise InputError(f"cannot decode {what} as an image ({e.__class__.__name__}: {e})") from None


def check_png_complete(source: str | io.BytesIO, what: str) -> None:
    """InputError unless the PNG at ``source`` (a path or a BytesIO) holds every scanline
    (:mod:`edge_runtime.png`: Pillow silently zero-fills the rows of a short PNG)."""
    problem = png_problem(io.BytesIO(source.getbuffer())) if isinstance(source, io.BytesIO) else file_problem(source)
    if problem is not None:
        raise InputError(f"{what} is a truncated or corrupt PNG: {problem}")


def _open_source(item: Any, kind: str) -> tuple[Any, str]:
    """(a path string or BytesIO, a description for messages)."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        if len(item) == 0:
            raise InputError(f"the {kind} bytes are empty")
        return io.BytesIO(bytes(item)), f"the {kind} bytes"
    if isinstance(item, (str, os.PathLike)):
        p = Path(item)
        try:
            size = p.stat().st_size if p.is_file() else None
        except (OSError, ValueError):  # unreadable, or a path with a NUL byte
            size = None
        if size is None:
            raise InputError(f"{kind} file not found: {str(p)[:200]}")
        if size == 0:
            raise InputError(f"{kind} file is empty: {p}")
        return str(p), str(p)
    raise InputError(f"cannot read an {kind} from a {type(item).__name__}")


def _pil_to_rgb(img: Image.Image, what: str, max_pixels: int) -> np.ndarray:
    w, h = img.size
    try:
        check_image_size(w, h, max_pixels)  # from the header, before decoding
    except InputError as e:
        raise InputError(f"{what}: {e}") from None
    try:
        img.load()  # full decode: truncated / corrupt data fails here
        try:
            img = ImageOps.exif_transpose(img)
        except Exception:  # malformed EXIF: keep the stored orientation (as training does)
            pass
        return np.ascontiguousarray(_to_rgb(img))
    except Exception as e:
        raise InputError(f"cannot decode {what} as an image ({e.__class__.__name__}: {e})") from None


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow mode → (H, W, 3) uint8, with the training-side rules (module docstring)."""
    mode = img.mode
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)  # (H, W, 4)
        alpha = rgba[..., 3:4] / 255.0
        rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)        # (H, W, 3)
        return np.asarray(np.clip(np.rint(rgb), 0, 255), dtype=np.uint8)
    if mode in _INT_GREY_MODES or mode == "F":
        grey = _grey_to_uint8(np.asarray(img), is_float=(mode == "F"))  # (H, W)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def _grey_to_uint8(arr: np.ndarray, is_float: bool) -> np.ndarray:
    a = arr.astype(np.float64)
    finite = a[np.isfinite(a)]
    if is_float:
        if finite.size and float(finite.min()) >= 0.0 and float(finite.max()) <= 1.0:
            a = a * 255.0
    elif finite.size and float(finite.max()) > 255.0:
        a = a / 257.0
    a = np.nan_to_num(a, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def resize_and_crop(image: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """(H, W, 3) uint8 → (size, size, 3) uint8: shorter side to ``resize`` (Pillow), centre crop."""
    h, w = image.shape[:2]
    scale = spec.resize / min(h, w)
    nh, nw = max(spec.size, round(h * scale)), max(spec.size, round(w * scale))
    if (nh, nw) != (h, w):
        image = np.asarray(Image.fromarray(image).resize((nw, nh), _PIL_FILTERS[spec.interpolation]))
    top, left = (nh - spec.size) // 2, (nw - spec.size) // 2
    return image[top : top + spec.size, left : left + spec.size]


def normalize_pixels(pixels: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """(S, S, 3) uint8 → (3, S, S) float32 ``(x/255 − mean)/std``, each operation in float32 (the
    training side calls this too, so both sides give identical pixels)."""
    x = pixels.astype(np.float32) / np.float32(255.0)  # (S, S, 3)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(((x - mean) / std).transpose(2, 0, 1))  # (3, S, S)


def preprocess_image(item: Any, spec: ImageSpec) -> np.ndarray:
    """One image (any accepted form) → (3, size, size) float32 normalised pixels."""
    return normalize_pixels(resize_and_crop(decode_image(item), spec), spec)


# ----------------------------------------------------------------------------- audio


def matmul_single_thread(a: np.ndarray, b: np.ndarray, max_work: int = 200_000) -> np.ndarray:
    """``a @ b`` for 2-D arrays, in row chunks of at most ``max_work`` multiply-adds each (below
    OpenBLAS's multithreading threshold of 4·65536, harmless with other BLAS libraries)."""
    rows = max(1, max_work // max(1, b.shape[0] * b.shape[1]))
    if a.shape[0] <= rows:
        return np.asarray(a @ b)
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    for i in range(0, a.shape[0], rows):
        np.matmul(a[i : i + rows], b, out=out[i : i + rows])
    return out


def _resample_plan(orig: int, new: int) -> tuple[int, int, int]:
    """(orig/gcd, new/gcd, kernel half-width) of torchaudio's sinc resampler."""
    g = math.gcd(orig, new)
    o, n = orig // g, new // g
    width = math.ceil(6 * o / (min(o, n) * 0.99))
    return o, n, width


@lru_cache(maxsize=16)
def sinc_resample_kernel(orig: int, new: int) -> tuple[np.ndarray, int]:
    """torchaudio ``_get_sinc_resample_kernel`` (sinc_interp_hann, width 6, rolloff 0.99, float32):
    ((n, 2w + o) float32 kernel, w), with o, n the rates over their gcd."""
    o, n, width = _resample_plan(orig, new)
    if n * (2 * width + o) > MAX_RESAMPLE_KERNEL:
        raise InputError(f"resampling {orig} Hz → {new} Hz needs a {n}×{2 * width + o} kernel; "
                         f"resample to a common rate (e.g. 16000, 22050, 44100, 48000 Hz) first")
    base = min(o, n) * 0.99
    idx = np.arange(-width, width + o, dtype=np.float32)[None, :] / np.float32(o)   # (1, K)
    t = np.arange(0, -n, -1, dtype=np.float32)[:, None] / np.float32(n) + idx      # (n, K)
    t = np.clip(t * base, -6, 6).astype(np.float32)
    window = np.cos(t * math.pi / 6 / 2) ** 2
    t = t * math.pi
    with np.errstate(invalid="ignore", divide="ignore"):
        kernel = np.where(t == 0, np.float32(1.0), np.sin(t) / t)
    kernel = kernel * (window * (base / o))
    return kernel.astype(np.float32), width


def resample(wave: np.ndarray, orig: int, new: int) -> np.ndarray:
    """(T,) float32 at ``orig`` Hz → (ceil(n·T/o),) float32 at ``new`` Hz (torchaudio ``resample``)."""
    if orig == new:
        return wave
    kernel, width = sinc_resample_kernel(orig, new)          # (n, K)
    o, n, _ = _resample_plan(orig, new)
    length = wave.shape[0]
    padded = np.pad(wave.astype(np.float32), (width, width + o))
    k = kernel.shape[1]
    blocks = (padded.shape[0] - k) // o + 1
    frames = np.lib.stride_tricks.as_strided(padded, (blocks, k), (padded.strides[0] * o, padded.strides[0]))
    out = matmul_single_thread(frames, kernel.T).reshape(-1)  # (blocks·n,)
    target = int(math.ceil(np.float32(n * length / o)))       # torchaudio rounds through float32
    return out[:target]


def source_frames_needed(rate: int, spec: AudioSpec) -> int:
    """How many input frames at ``rate`` determine the first ``num_samples`` output samples exactly
    (so long audio is trimmed *before* resampling, with the same result)."""
    if rate == spec.sample_rate:
        return spec.num_samples
    o, n, width = _resample_plan(rate, spec.sample_rate)
    return math.ceil(spec.num_samples / n) * o + width + 1


def fit_waveform(wave: np.ndarray, sample_rate: int | None, spec: AudioSpec) -> np.ndarray:
    """A mono waveform at ``sample_rate`` → (num_samples,) float32 at the spec rate: resampled,
    trimmed to ``clip_seconds`` (documented clamp) or zero-padded."""
    wave = check_waveform(wave)
    rate = check_sample_rate(sample_rate)
    wave = resample(wave[: source_frames_needed(rate, spec)], rate, spec.sample_rate)
    n = spec.num_samples
    return wave[:n] if wave.shape[0] >= n else np.pad(wave, (0, n - wave.shape[0]))


def read_audio(item: Any, spec: AudioSpec | None = None) -> tuple[np.ndarray, int]:
    """A path or bytes → (mono (T,) float32, sample rate). With ``spec``, only the frames that
    determine the first ``clip_seconds`` after resampling are read (:func:`source_frames_needed`)."""
    import soundfile as sf

    source, what = _open_source(item, "audio")
    try:
        with sf.SoundFile(source) as f:
            rate = int(f.samplerate)
            check_sample_rate(rate)
            frames = -1 if spec is None else source_frames_needed(rate, spec)
            data = f.read(frames=frames, dtype="float32", always_2d=True)  # (T, C)
    except InputError as e:
        raise InputError(f"{what}: {e}") from None
    except Exception as e:  # LibsndfileError, TypeError, ...
        raise InputError(f"cannot decode {what} as audio ({e.__class__.__name__}: {e})") from None
    if data.shape[0] == 0:
        raise InputError(f"{what} holds no audio frames")
    wave = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]  # (T,) channels averaged
    return np.ascontiguousarray(wave, dtype=np.float32), rate


def load_waveform(item: Any, spec: AudioSpec, sample_rate: int | None = None) -> np.ndarray:
    """A file path / bytes / (wave, rate) pair / waveform at ``sample_rate`` → (num_samples,) float32."""
    rate: int | None
    if isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        wave, rate = read_audio(item, spec)
    elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], np.ndarray):
        wave, rate = item
    elif isinstance(item, np.ndarray):
        wave, rate = item, sample_rate
    else:
        raise InputError(f"cannot read audio from a {type(item).__name__}: pass a file path, bytes, "
                         "a (T,) float waveform with sample_rate, or a (wave, sample_rate) pair")
    return fit_waveform(wave, rate, spec)


def _torch_linspace(start: float, end: float, n: int) -> np.ndarray:
    """float32 ``torch.linspace``: step in float32, the first half counted up from ``start``, the
    second down from ``end``, each point rounded once (fused multiply-add)."""
    s, e = np.float32(start), np.float32(end)
    step = np.float64(np.float32((e - s) / np.float32(max(n - 1, 1))))
    i = np.arange(n, dtype=np.float64)
    return np.where(i < n // 2, np.float64(s) + step * i, np.float64(e) - step * (n - 1 - i)).astype(np.float32)


@lru_cache(maxsize=8)
def mel_filter_bank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float | None) -> np.ndarray:
    """torchaudio ``melscale_fbanks(n_fft//2 + 1, f_min, f_max, n_mels, sr, norm=None, mel_scale="htk")``
    → (n_freqs, n_mels) float32."""
    f_max = float(sample_rate // 2) if f_max is None else f_max
    n_freqs = n_fft // 2 + 1
    all_freqs = _torch_linspace(0, sample_rate // 2, n_freqs)                               # (F,)
    m_min, m_max = (2595.0 * math.log10(1.0 + f / 700.0) for f in (f_min, f_max))
    m_pts = _torch_linspace(m_min, m_max, n_mels + 2)
    power = (10.0 ** (m_pts / np.float32(2595.0)).astype(np.float64)).astype(np.float32)   # torch's float32 pow ± 1 ulp
    f_pts = np.float32(700.0) * (power - np.float32(1.0))                                   # (M + 2,)
    f_diff = f_pts[1:] - f_pts[:-1]                                                         # (M + 1,)
    slopes = f_pts[None, :] - all_freqs[:, None]                                            # (F, M + 2)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return np.asarray(np.maximum(np.float32(0.0), np.minimum(down, up)), dtype=np.float32)             # (F, M)


@lru_cache(maxsize=8)
def hann_window(n: int) -> np.ndarray:
    """Periodic Hann window (torch.hann_window default): 0.5 − 0.5·cos(2πk/n), k < n."""
    return (0.5 - 0.5 * np.cos(2.0 * math.pi * np.arange(n) / n)).astype(np.float32)


def log_mel(wave: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """(..., num_samples) float32 at the spec rate → (..., n_mels, frames) normalised log-mel (float32
    throughout, as torchaudio)."""
    pad = spec.n_fft // 2
    x = wave.astype(np.float32)
    x = np.concatenate([x[..., pad:0:-1], x, x[..., -2 : -pad - 2 : -1]], axis=-1)          # reflect padding
    frames_n = 1 + (x.shape[-1] - spec.n_fft) // spec.hop_length
    step = x.strides[-1]
    frames = np.lib.stride_tricks.as_strided(
        x, x.shape[:-1] + (frames_n, spec.n_fft), x.strides[:-1] + (step * spec.hop_length, step))  # (..., T, n_fft)
    spectrum = np.fft.rfft(frames * hann_window(spec.n_fft), axis=-1)                        # (..., T, F) complex64
    power = spectrum.real ** 2 + spectrum.imag ** 2
    fb = mel_filter_bank(spec.sample_rate, spec.n_fft, spec.n_mels, spec.f_min, spec.f_max)  # (F, M)
    mel = matmul_single_thread(power.reshape(-1, power.shape[-1]), fb)                         # (... · T, M)
    mel = np.swapaxes(mel.reshape(power.shape[:-1] + (fb.shape[1],)), -1, -2)                 # (..., M, T)
    out = (np.log(mel + np.float32(spec.log_offset)) - np.float32(spec.norm_mean)) / np.float32(spec.norm_std)
    return out.astype(np.float32, copy=False)


def preprocess_audio(item: Any, spec: AudioSpec, sample_rate: int | None = None) -> np.ndarray:
    """One clip (any accepted form) → (1, n_mels, frames) float32 normalised log-mel."""
    return log_mel(load_waveform(item, spec, sample_rate), spec)[None]


# ----------------------------------------------------------------------------- text


class TextEncoder:
    """The bundle's tokenizer with the training-side encoding contract (module docstring)."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        self.tok = tokenizer
        self.max_length = max_length
        pad = tokenizer.token_to_id("[PAD]")
        if pad is None or tokenizer.token_to_id("[CLS]") is None or tokenizer.token_to_id("[SEP]") is None:
            raise BundleError("the bundle's tokenizer lacks the [PAD]/[CLS]/[SEP] special tokens")
        self.vocab_size = tokenizer.get_vocab_size()
        self.tok.enable_truncation(max_length)
        self.tok.enable_padding(pad_id=pad, pad_token="[PAD]", length=max_length)

    @classmethod
    def from_file(cls, path: Path, max_length: int) -> "TextEncoder":
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as e:
            raise BundleError(f"{path}: not a valid tokenizer.json ({e})") from None
        return cls(tok, max_length)

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """texts → (ids (B, L) int64, attention mask (B, L) int64)."""
        texts = [check_text(t) for t in texts]
        enc = self.tok.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        return ids, mask
