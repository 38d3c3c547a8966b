"""The built-in sensor stream: deterministic, variable length, the promised factors in frequency and
phase, and switching it on changes nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from hybridssl.data.synthetic import SyntheticScenes
from hybridssl.data.synthetic_sensor import CHANNELS, WAVEFORMS, render_sensor, waveform


def test_deterministic_variable_length_six_channels():
    a, b = SyntheticScenes(20, sensor=True), SyntheticScenes(20, sensor=True)
    lengths = set()
    for i in range(20):
        x = a[i].features["sensor"]
        assert x.dtype == np.float32 and x.shape[1] == CHANNELS and 72 <= x.shape[0] <= 96
        np.testing.assert_array_equal(x, b[i].features["sensor"])
        lengths.add(x.shape[0])
    assert len(lengths) > 5
    assert a.modalities == ("image", "text", "audio", "seq_sensor") and a[0].modalities[-1] == "seq_sensor"


def test_switching_the_sensor_on_changes_nothing_else():
    off, on = SyntheticScenes(8), SyntheticScenes(8, sensor=True)
    for i in range(8):
        assert off[i].caption == on[i].caption and off[i].features is None
        np.testing.assert_array_equal(off[i].image, on[i].image)
        np.testing.assert_array_equal(off[i].audio, on[i].audio)


@pytest.mark.parametrize("colour, position", [(0, 0), (3, 2), (7, 4)])
def test_colour_is_the_frequency_and_position_the_lag(colour, position):
    frames = 96
    scene = (WAVEFORMS.index("sine"), colour, 1, position, 0)
    x = render_sensor(scene, np.random.default_rng(colour * 10 + position), frames, noise=0.0)
    t = x.shape[0]
    spectrum = np.fft.rfft(x[:, 2] * np.hanning(t))
    cycles = np.argmax(np.abs(spectrum)) * frames / t                     # cycles per F frames
    assert abs(cycles - (2 + colour)) <= 0.75 * frames / t
    k = np.argmax(np.abs(spectrum))
    c0, c1 = np.fft.rfft(x[:, 0] * np.hanning(t))[k], np.fft.rfft(x[:, 1] * np.hanning(t))[k]
    lag = np.angle(c0 / c1) % (2 * np.pi)
    want = 2 * np.pi * position / 5
    assert min(abs(lag - want), 2 * np.pi - abs(lag - want)) < 0.45


def test_shapes_have_distinct_waveforms():
    phase = np.linspace(0, 4 * np.pi, 200)
    waves = np.stack([waveform(s, phase) for s in range(len(WAVEFORMS))])
    corr = np.corrcoef(waves)
    assert (np.abs(corr[~np.eye(len(WAVEFORMS), dtype=bool)]) < 0.995).all()
    with pytest.raises(ValueError):
        render_sensor((0, 0, 0, 0, 0), np.random.default_rng(0), frames=8)
