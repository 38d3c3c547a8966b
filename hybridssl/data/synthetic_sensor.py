"""The sensor stream of a synthetic scene (:mod:`hybridssl.data.synthetic`): six channels of an
IMU-like recording in which some of the scene factors are encoded in frequency and phase.

For a clip of T frames (T drawn uniformly in ``[⌈0.75·F⌉, F]`` for ``frames`` = F, so lengths vary) with
phase ``φ(t) = 2π·c·t / F + φ0`` (``φ0`` uniform — no absolute phase carries information):

* colour   → frequency: ``c = 2 + k`` cycles per F frames for colour index ``k`` (±3 %);
* shape    → waveform ``w`` of channels 0 and 1 (:data:`WAVEFORMS`, at most the 3rd harmonic, so
  nothing aliases at F ≥ 64): sine, square, triangle, sawtooth, double (fundamental + octave),
  rectified, pulse, chirp (frequency rising 1 → 1.6 ×);
* position → the lag of channel 1 behind channel 0: ``Δ = 2π·p / 5`` for position index ``p`` (±0.15 rad);
* size     → amplitude of channels 0 and 1: 0.5 (small) or 1.0 (large), times a gain in [0.8, 1.2];
* texture  → nothing (a factor the sensor does not see, as real sensors miss things).

Channel 2 is a pure sine at the same frequency (colour again, shape-free); channels 3–5 are slow
random-walk drift (nuisance). Every channel gets white noise of std ``noise`` (default 0.3). Output:
``(T, 6)`` float32.
"""

from __future__ import annotations

import math

import numpy as np

WAVEFORMS: tuple[str, ...] = ("sine", "square", "triangle", "sawtooth", "double", "rectified", "pulse", "chirp")
CHANNELS = 6
_TWO_PI = 2.0 * math.pi


def waveform(shape: int, phase: np.ndarray) -> np.ndarray:
    """Waveform ``WAVEFORMS[shape]`` at ``phase`` (radians), band-limited to the 3rd harmonic."""
    name = WAVEFORMS[shape]
    s = np.sin
    if name == "sine":
        return s(phase)
    if name == "square":
        return (4 / math.pi) * (s(phase) + s(3 * phase) / 3)
    if name == "triangle":
        return (8 / math.pi**2) * (s(phase) - s(3 * phase) / 9) * 1.2
    if name == "sawtooth":
        return (2 / math.pi) * (s(phase) - s(2 * phase) / 2 + s(3 * phase) / 3)
    if name == "double":
        return 0.7 * (s(phase) + s(2 * phase))
    if name == "rectified":
        return 2 * np.abs(s(phase / 2)) - 1.27          # |sin| of half the frequency: a bouncing, one-signed wave
    if name == "pulse":
        return 0.6 * (s(phase) + s(2 * phase) + s(3 * phase))
    if name == "chirp":
        return s(phase * (1.0 + 0.3 * phase / (phase.max() + 1e-6)))
    raise ValueError(f"unknown waveform index {shape}")


def render_sensor(scene: tuple[int, ...], rng: np.random.Generator, frames: int = 96, noise: float = 0.3) -> np.ndarray:
    """``(T, 6)`` float32 sensor recording of ``scene`` (value indices in ATTRIBUTES order)."""
    if frames < 16:
        raise ValueError(f"sensor frames must be >= 16, got {frames}")
    shape, colour, size, position, _texture = scene
    t_len = int(rng.integers(math.ceil(0.75 * frames), frames + 1))
    t = np.arange(t_len, dtype=np.float64)
    cycles = (2.0 + colour) * rng.uniform(0.97, 1.03)
    phase = _TWO_PI * cycles * t / frames + rng.uniform(0, _TWO_PI)
    lag = _TWO_PI * position / 5 + rng.uniform(-0.15, 0.15)
    amp = (0.5, 1.0)[size] * rng.uniform(0.8, 1.2)
    out = np.empty((t_len, CHANNELS), dtype=np.float64)
    out[:, 0] = amp * waveform(shape, phase)
    out[:, 1] = amp * waveform(shape, phase - lag)
    out[:, 2] = np.sin(phase)
    out[:, 3:] = np.cumsum(rng.normal(0.0, 0.08, (t_len, CHANNELS - 3)), axis=0)
    out += rng.normal(0.0, noise, out.shape)
    return out.astype(np.float32)
