"""The soundtrack of a synthetic scene (:mod:`hybridssl.data.synthetic`): every attribute is audible.

* shape    → timbre (:data:`TIMBRES`): sine, square, triangle, FM bell, sawtooth, breathy (0.7·sine +
  uniform noise in ±0.3), organ (harmonics 1–6), tremolo (30 Hz amplitude modulation).
* colour   → pitch: ``f0 = 220 · 2^(3k/12)`` Hz for colour index ``k`` (3 semitones apart, 220–740 Hz),
  jittered by ±0.25 semitone.
* size     → loudness and note length: amplitude ``0.8`` (large) vs ``0.35`` (small), times a random
  gain in ``[0.7, 1]``; the note lengths of :data:`RHYTHMS`.
* position → onset of the first note: ``ONSETS[p] · T`` for a clip of ``T`` seconds (±8 ms · T).
* texture  → rhythm: solid = one sustained note, striped = 3 evenly spaced notes, dotted = 6 blips.

All times are fractions of the clip length ``T`` (the defaults are written for ``T = 1 s``). Each note
has a 5 ms linear attack and a ``min(20 ms, len/4)`` linear release. White noise is added at
``snr_db`` (``P_noise = P_signal · 10^(−snr/10)``, ``snr_db = inf`` → none), then the waveform is scaled
down to a peak of 0.9 if it exceeds it. Output: ``(round(T · sample_rate),)`` ``float32``.
"""

from __future__ import annotations

import math

import numpy as np

TIMBRES: tuple[str, ...] = ("sine", "square", "triangle", "fm_bell", "sawtooth", "breathy", "organ", "tremolo")
PITCHES_HZ: tuple[float, ...] = tuple(220.0 * 2.0 ** (3 * k / 12) for k in range(8))
ONSETS: tuple[float, ...] = (0.02, 0.38, 0.11, 0.29, 0.20)  # left, right, top, bottom, centre
#: per texture: (note count, spacing between onsets, note length small, note length large), fractions of T
RHYTHMS: tuple[tuple[int, float, float, float], ...] = (
    (1, 0.0, 0.35, 0.55),
    (3, 0.18, 0.08, 0.14),
    (6, 0.09, 0.035, 0.06),
)
AMPLITUDES: tuple[float, float] = (0.35, 0.8)  # small, large
PEAK = 0.9
_TABLE_SIZE = 4096  # wavetable length (power of two)
_ATTACK_S = 0.005
_RELEASE_S = 0.02


def _wavetable(harmonics: dict[int, float]) -> np.ndarray:
    """One period of ``Σ a_n sin(2π n x)``, peak-normalised to 1: ``(_TABLE_SIZE,)`` float32."""
    x = np.arange(_TABLE_SIZE) / _TABLE_SIZE  # (N,)
    wave = sum(a * np.sin(2 * np.pi * n * x) for n, a in harmonics.items())
    return (wave / np.abs(wave).max()).astype(np.float32)


_TABLES: dict[str, np.ndarray] = {
    "sine": _wavetable({1: 1.0}),
    "square": _wavetable({n: 1.0 / n for n in range(1, 10, 2)}),
    "triangle": _wavetable({n: (-1.0) ** ((n - 1) // 2) / n**2 for n in range(1, 10, 2)}),
    "sawtooth": _wavetable({n: 1.0 / n for n in range(1, 10)}),
    "organ": _wavetable({n: 0.8 ** (n - 1) for n in range(1, 7)}),
}


def _lookup(table: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """``table`` at ``phase`` cycles (≥ 0): ``(n,)``."""
    return table[(phase * _TABLE_SIZE).astype(np.int64) & (_TABLE_SIZE - 1)]


def _tone(timbre: str, f0: float, t: np.ndarray, phase0: float, rng: np.random.Generator) -> np.ndarray:
    """The raw oscillator of ``timbre`` at ``f0`` Hz over local times ``t`` (seconds): ``(n,)`` float32."""
    phase = (f0 * t + phase0).astype(np.float32)  # (n,) cycles
    if timbre in _TABLES:
        return _lookup(_TABLES[timbre], phase)
    if timbre == "fm_bell":  # carrier f0, modulator 1.41·f0, index decaying from 1.2
        dur = max(float(t[-1]), 1e-3)
        index = 1.2 * np.exp(-3.0 * t / dur)
        tone = np.sin(2 * np.pi * phase + index * np.sin(2 * np.pi * 1.41 * phase))
        return (tone * np.exp(-2.5 * t / dur)).astype(np.float32)
    sine = _lookup(_TABLES["sine"], phase)
    if timbre == "breathy":
        return 0.7 * sine + rng.uniform(-0.3, 0.3, size=(t.shape[0],)).astype(np.float32)
    if timbre == "tremolo":
        return sine * (0.75 + 0.25 * np.sin(2 * np.pi * 30.0 * t)).astype(np.float32)
    raise ValueError(f"unknown timbre {timbre!r}")


def envelope(n: int, sample_rate: int) -> np.ndarray:
    """Linear attack (5 ms) and release (``min(20 ms, n/4)``): ``(n,)`` float32 in ``[0, 1]``."""
    k = np.arange(n, dtype=np.float32)  # (n,)
    attack = max(1.0, _ATTACK_S * sample_rate)
    release = max(1.0, min(_RELEASE_S * sample_rate, n / 4))
    return np.minimum(1.0, np.minimum(k / attack, (n - 1 - k) / release)).clip(0.0, 1.0)


def render_audio(
    scene: tuple[int, ...],
    rng: np.random.Generator,
    sample_rate: int = 16000,
    seconds: float = 1.0,
    snr_db: float = 10.0,
) -> np.ndarray:
    """The waveform of ``scene`` = (shape, colour, size, position, texture) value indices: ``(T,)`` float32."""
    shape, colour, size, position, texture = scene
    total = int(round(seconds * sample_rate))
    # all random draws of the scene first, in a fixed order
    f0 = PITCHES_HZ[colour] * 2.0 ** (rng.uniform(-0.25, 0.25) / 12)
    onset = (ONSETS[position] + rng.uniform(-0.008, 0.008)) * seconds
    tempo = rng.uniform(0.95, 1.05)
    gain = AMPLITUDES[size] * rng.uniform(0.7, 1.0)
    phase0 = rng.random()
    count, spacing, short, long = RHYTHMS[texture]
    length = (long if size == 1 else short) * seconds * tempo
    n_note = max(8, int(round(length * sample_rate)))
    out = np.zeros(total, dtype=np.float32)  # (T,)
    env = envelope(n_note, sample_rate)  # (n_note,)
    for k in range(count):
        start = int(round((onset + k * spacing * seconds * tempo) * sample_rate))
        stop = min(total, start + n_note)
        if start >= stop:
            break
        t = np.arange(stop - start, dtype=np.float32) / sample_rate  # (n,) local seconds
        out[start:stop] += gain * env[: stop - start] * _tone(TIMBRES[shape], f0, t, phase0, rng)
    if math.isfinite(snr_db):
        power = float(np.mean(out * out))
        out += rng.standard_normal(total, dtype=np.float32) * np.float32(math.sqrt(power * 10 ** (-snr_db / 10)))
    peak = float(np.abs(out).max()) if total else 0.0
    if peak > PEAK:
        out *= np.float32(PEAK / peak)
    return out
