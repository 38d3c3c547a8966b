"""Parity of the numpy preprocessing with the hybridssl (torch) implementation: pixels
identical, log-mel within 1e-4, identical token ids; the resampling kernel and mel filter bank against torchaudio."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from edge_runtime import preprocess as P
from edge_runtime import spec as S
from edge_runtime.validate import InputError
from hybridssl.data.readers import read_audio, read_image
from hybridssl.preprocessing import AudioSpec, ImageSpec, PreprocessSpec, TextSpec, preprocess_audio, preprocess_image

TOL = 1e-4


def _edge_specs(spec: PreprocessSpec):
    d = spec.to_dict()
    return S.image_spec(d), S.audio_spec(d)


@pytest.fixture(scope="module")
def specs():
    spec = PreprocessSpec(image=ImageSpec(size=32, resize=36, mean=(0.48, 0.45, 0.4), std=(0.27, 0.26, 0.28)),
                          audio=AudioSpec(n_mels=32, clip_seconds=0.5, norm_mean=0.25, norm_std=2.1))
    return spec, *_edge_specs(spec)


@pytest.mark.parametrize("name", ["rgb_png", "rgb_jpg", "rgba_png", "grey16_png", "exif_jpg"])
def test_image_files_match_training_decoding_and_preprocessing(media, specs, name):
    spec, ispec, _ = specs
    ref = preprocess_image(read_image(media[name], "x"), spec.image).numpy()
    for source in (media[name], str(media[name]), media[name].read_bytes()):
        got = P.preprocess_image(source, ispec)
        assert got.dtype == np.float32 and got.shape == (3, 32, 32)
        np.testing.assert_array_equal(got, ref)


def test_exif_orientation_is_applied_like_training(media):
    decoded = P.decode_image(media["exif_jpg"])
    assert decoded.shape == (56, 40, 3)  # stored 40×56 (H×W), displayed rotated
    np.testing.assert_array_equal(decoded, read_image(media["exif_jpg"], "x"))


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize("shape", [(50, 70, 3), (32, 32, 3), (100, 33, 3), (7, 9, 3)])
def test_image_arrays_and_pil_match(interpolation, shape):
    spec = ImageSpec(size=24, resize=28, interpolation=interpolation)
    espec = S.image_spec({"image": spec.__dict__})
    img = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    ref = preprocess_image(img, spec).numpy()
    np.testing.assert_array_equal(P.preprocess_image(img, espec), ref)
    np.testing.assert_array_equal(P.preprocess_image(Image.fromarray(img), espec), ref)


def _stereo_bytes(rate: int, seconds: float, fmt: str = "WAV") -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    x = np.stack([0.4 * np.sin(2 * np.pi * 330 * t), 0.1 * np.random.default_rng(1).standard_normal(t.size)], 1)
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), rate, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("rate,n", [(16000, 16000), (16000, 3000), (22050, 22050), (22050, 5000), (44100, 88200),
                                    (48000, 9000), (11025, 20000)])
def test_log_mel_of_waveforms_matches(specs, rate, n):
    spec, _, aspec = specs
    wave = (0.3 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
    ref, resampled = preprocess_audio(wave, rate, spec.audio)
    got = P.preprocess_audio(wave, aspec, rate)
    assert resampled == (rate != 16000)
    assert got.shape == tuple(ref.shape) == (1, 32, 51) and got.dtype == np.float32
    assert np.abs(got - ref.numpy()).max() <= TOL


@pytest.mark.parametrize("name", ["mono_wav", "stereo_flac"])
def test_audio_files_match_training_decoding(media, specs, name):
    """The stereo file is 22.05 kHz: mono mix + resample 22050 → 16000 + trim 2 s → 0.5 s."""
    spec, _, aspec = specs
    wave, rate, _ = read_audio(media[name], "x")
    ref = preprocess_audio(wave, rate, spec.audio)[0].numpy()
    for source in (media[name], media[name].read_bytes()):
        assert np.abs(P.preprocess_audio(source, aspec) - ref).max() <= TOL


def test_reading_only_the_needed_frames_is_exact(specs):
    """Long audio is trimmed before resampling; the first clip_seconds come out the same."""
    _, _, aspec = specs
    data = _stereo_bytes(22050, 3.0)
    full, rate = P.read_audio(data)
    part, _ = P.read_audio(data, aspec)
    assert part.shape[0] < full.shape[0]
    n = aspec.num_samples
    np.testing.assert_array_equal(P.resample(part, rate, 16000)[:n], P.resample(full, rate, 16000)[:n])


def test_upsampling_8k_is_as_close_to_exact_as_torch(specs):
    """8 kHz → 16 kHz leaves the mel bands above 4 kHz nearly silent, where float32 rounding is
    amplified by the log: torch itself is ~1e-4 from a float64 reference there. The numpy front end
    must be at least as close to that reference as torch is."""
    import torchaudio

    spec, _, aspec = specs
    wave = (0.3 * np.random.default_rng(3).standard_normal(8000)).astype(np.float32)
    ref = preprocess_audio(wave, 8000, spec.audio)[0].numpy()
    got = P.preprocess_audio(wave, aspec, 8000)
    a = spec.audio
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=a.sample_rate, n_fft=a.n_fft, win_length=a.n_fft, hop_length=a.hop_length,
                                               n_mels=a.n_mels, power=2.0, center=True, pad_mode="reflect", norm=None,
                                               mel_scale="htk").double()
    w64 = torchaudio.functional.resample(torch.from_numpy(wave).double(), 1, 2)[: a.num_samples]
    exact = ((torch.log(mel(w64) + a.log_offset) - a.norm_mean) / a.norm_std).numpy()[None]
    assert np.abs(got - exact).max() <= np.abs(ref - exact).max() + 1e-6
    assert np.abs(got - ref).max() <= 3e-4


@pytest.mark.parametrize("orig,new", [(22050, 16000), (8000, 16000), (44100, 16000), (16000, 22050), (48000, 44100)])
def test_resample_matches_torchaudio(orig, new):
    import torchaudio.functional as AF

    wave = np.random.default_rng(orig).standard_normal(4321).astype(np.float32)
    ref = AF.resample(torch.from_numpy(wave), orig, new).numpy()
    got = P.resample(wave, orig, new)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-5


def test_resample_kernel_is_the_textbook_formula():
    """Loop reference of the documented kernel formula on a small ratio (3 → 2)."""
    kernel, width = P.sinc_resample_kernel(3, 2)
    o, n = 3, 2
    base = min(o, n) * 0.99
    assert width == math.ceil(6 * o / base)
    for j in range(n):
        for k in range(2 * width + o):
            t = min(max((-j / n + (k - width) / o) * base, -6), 6)
            w = math.cos(t * math.pi / 12) ** 2
            ref = (1.0 if t == 0 else math.sin(math.pi * t) / (math.pi * t)) * w * base / o
            assert kernel[j, k] == pytest.approx(ref, abs=1e-6)


def test_mel_filter_bank_matches_torchaudio():
    from torchaudio.functional import melscale_fbanks

    for sr, n_fft, n_mels, f_min, f_max in [(16000, 400, 64, 0.0, None), (22050, 512, 40, 50.0, 8000.0)]:
        ref = melscale_fbanks(n_fft // 2 + 1, f_min, f_max or float(sr // 2), n_mels, sr, None, "htk").numpy()
        got = P.mel_filter_bank(sr, n_fft, n_mels, f_min, f_max)
        assert np.abs(got - ref).max() <= 2e-5  # torch's float32 pow is not correctly rounded (1 ulp)


def test_oversized_resampling_kernel_is_refused(specs):
    with pytest.raises(InputError, match="common rate"):
        P.preprocess_audio(np.zeros(1000, np.float32), specs[2], 44101)


@pytest.fixture(scope="module")
def tokenizers_pair(edge_loaded, edge_bundle):
    return edge_loaded.tokenizer, P.TextEncoder.from_file(edge_bundle / "tokenizer.json", edge_loaded.cfg.preprocess.text.max_length)


@pytest.mark.parametrize("texts", [["a red circle"], ["A Big BLUE square with STRIPES", "x"],
                                   ["word " * 200], ["naïve café ｆｕｌｌｗｉｄｔｈ", "tab\tand\nnewline", "🙂 emoji ?!"]])
def test_token_ids_are_identical(tokenizers_pair, texts):
    ref_tok, edge_tok = tokenizers_pair
    ids, attn = ref_tok.encode(texts)
    eids, emask = edge_tok.encode(texts)
    assert eids.dtype == np.int64 and emask.dtype == np.int64
    np.testing.assert_array_equal(eids, ids)
    np.testing.assert_array_equal(emask, attn.astype(np.int64))


def test_text_spec_max_length_is_the_bundles(tokenizers_pair):
    _, edge_tok = tokenizers_pair
    ids, mask = edge_tok.encode(["word " * 500])
    assert ids.shape == (1, TextSpec().max_length if edge_tok.max_length == 32 else edge_tok.max_length)
    assert mask.all()
