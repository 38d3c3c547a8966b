import numpy as np
import pytest
import torch
import torchaudio

from hybridssl.preprocessing import (
    AudioSpec,
    ImageSpec,
    PreprocessSpec,
    fit_waveform,
    log_mel,
    preprocess_audio,
    preprocess_image,
)


def test_image_resize_crop_normalise():
    spec = ImageSpec(size=16, resize=20, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    img = np.full((40, 80, 3), 255, np.uint8)
    x = preprocess_image(img, spec)
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert torch.allclose(x, torch.full_like(x, 2.0))  # (1 - .5) / .25


def test_image_centre_crop_keeps_the_middle():
    img = np.zeros((32, 64, 3), np.uint8)
    img[:, 16:48] = 255  # the middle half is white
    x = preprocess_image(img, ImageSpec(size=32, resize=32, mean=(0, 0, 0), std=(1, 1, 1)))
    assert float(x.min()) == 1.0


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 4), np.uint8)])
def test_image_rejects_wrong_layout(bad):
    with pytest.raises(ValueError, match="uint8 RGB"):
        preprocess_image(bad, ImageSpec())


def test_log_mel_matches_its_formula():
    spec = AudioSpec(sample_rate=8000, clip_seconds=0.5, n_fft=256, hop_length=80, n_mels=20, norm_mean=-3.0, norm_std=2.0)
    wave = torch.randn(spec.num_samples) * 0.1
    mel = torchaudio.transforms.MelSpectrogram(8000, n_fft=256, hop_length=80, n_mels=20, mel_scale="htk", norm=None)
    expected = (torch.log(mel(wave) + spec.log_offset) + 3.0) / 2.0
    got = log_mel(wave, spec)
    assert got.shape == (20, spec.num_frames)
    assert torch.allclose(got, expected, atol=1e-5)


def test_waveform_resampled_cropped_and_padded():
    spec = AudioSpec(sample_rate=16000, clip_seconds=1.0)
    long, resampled = fit_waveform(torch.randn(44100 * 2), 44100, spec)
    assert resampled and long.shape == (16000,)
    short, resampled = fit_waveform(torch.ones(1000), 16000, spec)
    assert not resampled and short.shape == (16000,) and float(short[1000:].abs().sum()) == 0.0


def test_resampling_keeps_the_pitch():
    spec = AudioSpec(sample_rate=16000, clip_seconds=1.0)
    t = np.arange(44100) / 44100
    wave, _ = fit_waveform(torch.from_numpy(np.sin(2 * np.pi * 440 * t).astype(np.float32)), 44100, spec)
    peak_hz = np.argmax(np.abs(np.fft.rfft(wave.numpy()))) * 16000 / 16000
    assert abs(peak_hz - 440) <= 1


def test_audio_rejects_empty_and_multichannel():
    spec = AudioSpec()
    with pytest.raises(ValueError, match="mono"):
        preprocess_audio(np.zeros((0,), np.float32), 16000, spec)
    with pytest.raises(ValueError, match="mono"):
        preprocess_audio(np.zeros((100, 2), np.float32), 16000, spec)


def test_spec_round_trip():
    spec = PreprocessSpec()
    spec.audio.norm_mean = -4.25
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
