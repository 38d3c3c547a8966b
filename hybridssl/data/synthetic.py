"""SyntheticScenes: a built-in, procedurally generated image–text–audio dataset (no files, no download).

Each sample shows ONE main object with five independent, uniformly drawn attributes
(:data:`~hybridssl.data.synthetic_text.ATTRIBUTES`): shape (8) × colour (8) × size (2) × position (5) ×
texture (3) = 1,920 scenes. All three modalities are rendered from the same attributes:

* image   — ``(S, S, 3)`` ``uint8``: a smooth dark or light grey gradient background, up to
  ``distractors`` smaller grey objects of other shapes away from the main one, the main object
  (radius ``0.14·S`` small / ``0.23·S`` large, ±8 %; centre at a position anchor ±``0.04·S``; rotation
  ±0.2 rad; palette colour ±12 per channel) with texture solid / stripes (alternating bands) / dots (a
  lattice of small discs) drawn at 0.45× the colour, then Gaussian pixel noise of std ``noise·255``.
* caption — a sentence of the grammar in :mod:`~hybridssl.data.synthetic_text` (8 word orders,
  synonyms); it names all five attributes, so it determines the scene; distractors are never named.
* audio   — :func:`~hybridssl.data.synthetic_audio.render_audio`: timbre ← shape, pitch ← colour,
  loudness/length ← size, onset ← position, rhythm ← texture, noise at ``audio_snr_db``.
* sensor  — with ``sensor=True`` (spec ``builtin:sensor=true``): ``features["sensor"]`` ``(T, 6)``,
  :func:`~hybridssl.data.synthetic_sensor.render_sensor` (frequency ← colour, waveform ← shape, phase
  lag ← position, amplitude ← size; ``sensor_frames`` ·¾ to ·1 frames), the tower ``seq_sensor``.
  Its generator is seeded from ``[seed, split_index, i, 1]``, so turning it on changes nothing else.
* paraphrases — with ``paraphrases=K`` (spec ``builtin:paraphrases=K``) each captioned item also
  carries K more captions of its scene (``Sample.paraphrases``: the grammar drawn again from
  ``[seed, split_index, i, 2]``, so turning it on changes nothing else), as COCO gives 5 per image.

``label`` is the value index of ``label_attribute`` (default ``"shape"``). ``meta["key"]`` is the scene
key ``"shape=…|colour=…|size=…|position=…|texture=…"`` and ``meta["attributes"]`` the same as a dict.

How duplicates are scored: with 1,920 scenes, any dataset larger than a few hundred items holds many
items of the same scene (often with the same caption). Cross-modal retrieval on this dataset counts a
retrieved item as correct when it has the same scene key as the query, so retrieving a different item
of an identical scene is never penalised.

Determinism: item ``i`` of ``(seed, split)`` comes from ``rng = np.random.default_rng([seed,
split_index, i])`` alone, whatever the access order. The stream is used in a fixed layout — 5 attribute
uniforms, 6 caption uniforms, 3 uniforms for caption dropout / missing image / missing audio, then two
integer seeds for the image and the audio generators — so the attributes and the caption cost a few
microseconds (:meth:`SyntheticScenes.captions` renders no media) and a knob changes only what it
controls. A modality is dropped when its uniform is below its probability; if all three would be
missing the caption is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.modalities import MODALITIES, sequence_modality
from hybridssl.data.base import MultimodalDataset
from hybridssl.data.sample import Sample
from hybridssl.data.synthetic_audio import render_audio
from hybridssl.data.synthetic_sensor import render_sensor
from hybridssl.data.synthetic_text import ATTRIBUTES, N_CAPTION_DRAWS, make_caption
from hybridssl.data.synthetic_text import class_prompts as _class_prompts

SPLITS = ("train", "val", "test")
#: main-object RGB per colour, in ATTRIBUTES["colour"] order.
PALETTE = np.array(
    [[220, 40, 40], [245, 140, 20], [240, 220, 40], [40, 180, 60],
     [40, 210, 220], [40, 80, 230], [150, 50, 210], [245, 130, 190]],
    dtype=np.float32,
)  # (8, 3)
#: object centre (x, y) as fractions of the image side, in ATTRIBUTES["position"] order.
ANCHORS = np.array([[0.29, 0.5], [0.71, 0.5], [0.5, 0.29], [0.5, 0.71], [0.5, 0.5]], dtype=np.float32)  # (5, 2)
RADII = (0.14, 0.23)  # small, large, fractions of the image side
TEXTURE_SHADE = 0.45
_N_HEADER = len(ATTRIBUTES) + N_CAPTION_DRAWS + 3


# ----------------------------------------------------------------------------- image rendering


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(X, Y)``, each ``(S, S)`` float32 (x → right, y → down)."""
    c = np.arange(size, dtype=np.float32) + 0.5
    return np.meshgrid(c, c)


def shape_mask(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of shape index ``shape`` at object coordinates ``(u, v)`` (units of the radius,
    v down): ``(S, S)`` bool. Every shape fits in the unit disc (roughly)."""
    name = ATTRIBUTES["shape"][shape]
    if name == "circle":
        return u * u + v * v <= 1.0
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if name in ("triangle", "hexagon"):  # regular n-gon of circumradius R: n_k·(u, v) <= R cos(π/n) for all k
        n, first, R = (3, math.pi / 2, 1.15) if name == "triangle" else (6, 0.0, 1.0)  # triangle points up
        inside = np.ones(u.shape, dtype=bool)
        for k in range(n):
            a = first + 2 * math.pi * k / n  # angle of edge normal k
            inside &= u * math.cos(a) + v * math.sin(a) <= R * math.cos(math.pi / n)
        return inside
    if name == "star":  # radius oscillates between 0.42 and 1 with 5 points, one pointing up
        frac = ((np.arctan2(v, u) + math.pi / 2) * (5 / (2 * math.pi))) % 1.0
        return np.hypot(u, v) <= 0.42 + 0.58 * 2 * np.abs(frac - 0.5)
    if name == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.3) & (av <= 0.92)) | ((av <= 0.3) & (au <= 0.92))
    if name == "diamond":
        return np.abs(u) / 0.7 + np.abs(v) / 1.05 <= 1.0
    if name == "heart":  # (x² + y² − 1)³ − x² y³ <= 0, y up
        x, y = 1.15 * u, 0.15 - 1.1 * v
        q = x * x + y * y - 1.0
        return q * q * q - x * x * y * y * y <= 0.0
    raise ValueError(f"unknown shape index {shape}")


def _object_coords(
    X: np.ndarray, Y: np.ndarray, cx: float, cy: float, r: float, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rotated coordinates around ``(cx, cy)`` in units of ``r``: ``(u, v)``, each ``(S, S)``."""
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = X - cx, Y - cy
    return (dx * c + dy * s) / r, (dy * c - dx * s) / r


def _texture_shade(texture: int, u: np.ndarray, v: np.ndarray, r: float, size: int, offset: float) -> np.ndarray:
    """Brightness factor inside the object: 1 or ``TEXTURE_SHADE`` on stripes / dots: ``(S, S)`` float32."""
    name = ATTRIBUTES["texture"][texture]
    if name == "solid":
        return np.ones(u.shape, dtype=np.float32)
    if name == "striped":  # diagonal bands of half-period max(2, S/18) pixels
        period = max(4.0, size / 9.0) / r
        band = np.floor((u + v) * (1 / math.sqrt(2)) / period + offset).astype(np.int64) & 1
        return np.where(band == 1, TEXTURE_SHADE, 1.0).astype(np.float32)
    spacing = max(4.0, size / 11.0) / r  # dotted: square lattice, dot radius 0.28·spacing
    du = (u / spacing + offset) % 1.0 - 0.5
    dv = (v / spacing + offset) % 1.0 - 0.5
    return np.where(du * du + dv * dv <= 0.28**2, TEXTURE_SHADE, 1.0).astype(np.float32)


def _background(rng: np.random.Generator, X: np.ndarray, Y: np.ndarray, size: int) -> np.ndarray:
    """A dark or light grey linear gradient with a slight tint: ``(S, S, 3)`` float32."""
    level = rng.uniform(15, 70) if rng.random() < 0.5 else rng.uniform(170, 235)
    amp, phi = rng.uniform(15, 40), rng.uniform(0, 2 * math.pi)
    tint = rng.uniform(-10, 10, 3).astype(np.float32)
    ramp = (math.cos(phi) * X + math.sin(phi) * Y) * (2 * amp / size) - amp * (math.cos(phi) + math.sin(phi))
    return (ramp[:, :, None] + (level + tint)).astype(np.float32)  # (S, S, 3)


def _draw_distractors(
    img: np.ndarray, rng: np.random.Generator, count: int, main_shape: int, cx: float, cy: float, r: float,
    X: np.ndarray, Y: np.ndarray,
) -> None:
    """Up to ``count`` small grey objects of other shapes whose centres keep ``r + 0.6·r_d`` from the main."""
    size = img.shape[0]
    for _ in range(count):
        shape = int(rng.integers(0, len(ATTRIBUTES["shape"]) - 1))
        shape += shape >= main_shape  # any shape but the main one
        rd = rng.uniform(0.06, 0.09) * size
        grey = rng.uniform(90, 170) + rng.uniform(-8, 8, 3)
        angle = rng.uniform(-0.3, 0.3)
        for _attempt in range(10):
            dx, dy = rng.uniform(rd, size - rd, 2)
            if math.hypot(dx - cx, dy - cy) >= r + 0.6 * rd:
                img[shape_mask(shape, *_object_coords(X, Y, dx, dy, rd, angle))] = grey
                break


def render_image(
    scene: tuple[int, ...], rng: np.random.Generator, image_size: int = 64, noise: float = 0.05,
    distractors: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """``(image (S, S, 3) uint8, main-object mask (S, S) bool)`` of ``scene`` = value indices in
    ATTRIBUTES order (the main object is drawn last, so the mask shows only its pixels)."""
    shape, colour, size, position, texture = scene
    S = image_size
    X, Y = _grid(S)
    cx, cy = (ANCHORS[position] + rng.uniform(-0.04, 0.04, 2)) * S
    r = RADII[size] * S * rng.uniform(0.92, 1.08)
    angle = rng.uniform(-0.2, 0.2)
    rgb = np.clip(PALETTE[colour] + rng.uniform(-12, 12, 3), 0, 255).astype(np.float32)  # (3,)
    offset = rng.random()
    img = _background(rng, X, Y, S)  # (S, S, 3)
    n_distractors = int(rng.integers(0, distractors + 1))
    _draw_distractors(img, rng, n_distractors, shape, float(cx), float(cy), float(r), X, Y)
    u, v = _object_coords(X, Y, float(cx), float(cy), float(r), angle)
    mask = shape_mask(shape, u, v)  # (S, S)
    shade = _texture_shade(texture, u, v, float(r), S, offset)  # (S, S)
    img[mask] = shade[mask][:, None] * rgb
    if noise > 0:
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise * 255.0)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), mask


# ----------------------------------------------------------------------------- the dataset


@dataclass(frozen=True)
class _Header:
    """What an item is, without its media: value indices, caption, presence flags, media seeds."""

    scene: tuple[int, ...]
    caption: str | None
    has_image: bool
    has_audio: bool
    image_seed: int
    audio_seed: int


def _check_prob(name: str, p: float) -> float:
    if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


class SyntheticScenes(MultimodalDataset):
    """Procedurally generated one-object scenes as image, caption and audio (module docstring)."""

    ATTRIBUTES: dict[str, tuple[str, ...]] = ATTRIBUTES
    name = "synthetic"

    def __init__(
        self, size: int = 4096, seed: int = 0, split: str = "train", *, image_size: int = 64,
        sample_rate: int = 16000, audio_seconds: float = 1.0, noise: float = 0.05, distractors: int = 1,
        caption_dropout: float = 0.0, missing_image: float = 0.0, missing_audio: float = 0.0,
        audio_snr_db: float = 10.0, label_attribute: str = "shape", sensor: bool = False, sensor_frames: int = 96,
        paraphrases: int = 0,
    ) -> None:
        super().__init__()
        if split not in SPLITS:
            raise ValueError(f"synthetic split must be one of {SPLITS}, got {split!r}")
        if label_attribute not in ATTRIBUTES:
            raise ValueError(f"label_attribute must be one of {tuple(ATTRIBUTES)}, got {label_attribute!r}")
        for knob, value, low in (("size", size, 1), ("seed", seed, 0), ("image_size", image_size, 16),
                                 ("sample_rate", sample_rate, 8000), ("distractors", distractors, 0),
                                 ("sensor_frames", sensor_frames, 16), ("paraphrases", paraphrases, 0)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ValueError(f"{knob} must be an integer >= {low}, got {value!r}")
        if not isinstance(audio_seconds, (int, float)) or not 0.25 <= audio_seconds <= 60:
            raise ValueError(f"audio_seconds must be in [0.25, 60], got {audio_seconds!r}")
        if not isinstance(audio_snr_db, (int, float)) or math.isnan(audio_snr_db) or audio_snr_db == -math.inf:
            raise ValueError(f"audio_snr_db must be a number or +inf (no noise), got {audio_snr_db!r}")
        self.size, self.seed, self.split = int(size), int(seed), split
        self.image_size, self.sample_rate, self.audio_seconds = int(image_size), int(sample_rate), float(audio_seconds)
        self.noise = _check_prob("noise", noise)
        self.distractors = int(distractors)
        self.caption_dropout = _check_prob("caption_dropout", caption_dropout)
        self.missing_image = _check_prob("missing_image", missing_image)
        self.missing_audio = _check_prob("missing_audio", missing_audio)
        self.audio_snr_db = float(audio_snr_db)
        self.label_attribute = label_attribute
        self.label_names = list(ATTRIBUTES[label_attribute])
        present = {"image": self.missing_image < 1.0, "text": True, "audio": self.missing_audio < 1.0}
        self.sensor, self.sensor_frames = bool(sensor), int(sensor_frames)
        self.paraphrases = int(paraphrases)
        self.modalities = tuple(m for m in MODALITIES if present[m]) + ((sequence_modality("sensor"),) if sensor else ())
        self.feature_dims = {"sensor": 6} if sensor else {}
        self._label_pos = list(ATTRIBUTES).index(label_attribute)
        self._headers: list[_Header | None] = [None] * self.size

    def __len__(self) -> int:
        return self.size

    # -- index-only access ----------------------------------------------------------------------------
    def _index(self, i: int) -> int:
        if not isinstance(i, int) and hasattr(i, "__index__") and not isinstance(i, bool):
            i = i.__index__()
        if not isinstance(i, int) or isinstance(i, bool):
            raise TypeError(f"{self.name}: index must be an int, got {type(i).__name__}")
        if not 0 <= i < self.size:
            raise IndexError(f"{self.name}: index {i} out of range for {self.size} items")
        return i

    def _header(self, i: int) -> _Header:
        i = self._index(i)
        header = self._headers[i]
        if header is None:
            header = self._headers[i] = self._draw_header(i)
        return header

    def _draw_header(self, i: int) -> _Header:
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), i])
        u = rng.random(_N_HEADER)  # (_N_HEADER,) fixed layout, see module docstring
        scene = tuple(min(int(u[k] * len(vals)), len(vals) - 1) for k, vals in enumerate(ATTRIBUTES.values()))
        n_attr = len(ATTRIBUTES)
        values = {a: vals[k] for (a, vals), k in zip(ATTRIBUTES.items(), scene)}
        caption = make_caption(values, u[n_attr: n_attr + N_CAPTION_DRAWS])
        u_cap, u_img, u_aud = u[n_attr + N_CAPTION_DRAWS:]
        has_image, has_audio = bool(u_img >= self.missing_image), bool(u_aud >= self.missing_audio)
        keep_caption = u_cap >= self.caption_dropout or not (has_image or has_audio)
        image_seed, audio_seed = (int(s) for s in rng.integers(0, 2**63 - 1, size=2))
        return _Header(scene, caption if keep_caption else None, has_image, has_audio, image_seed, audio_seed)

    def attributes(self, i: int) -> dict[str, str]:
        """Attribute → value of item ``i`` (no media rendered)."""
        return {a: vals[k] for (a, vals), k in zip(ATTRIBUTES.items(), self._header(i).scene)}

    def label_sets(self) -> dict[str, tuple[list[str], np.ndarray]]:
        """Every attribute as a labelling of the whole dataset: ``{attribute: (value names, labels (n,) int64)}``
        (no media rendered). Evaluation probes each one to show which factors a representation captured."""
        scenes = np.array([self._header(i).scene for i in range(self.size)], dtype=np.int64)  # (n, A)
        return {a: (list(vals), scenes[:, k]) for k, (a, vals) in enumerate(ATTRIBUTES.items())}

    def scene_key(self, i: int) -> str:
        """``"shape=…|colour=…|size=…|position=…|texture=…"`` of item ``i`` (no media rendered)."""
        return "|".join(f"{a}={v}" for a, v in self.attributes(i).items())

    def caption_at(self, i: int) -> str | None:
        return self._header(i).caption

    def paraphrases_at(self, i: int) -> tuple[str, ...]:
        """The ``paraphrases`` further captions of item ``i``'s scene (``()`` when it has no caption)."""
        h = self._header(i)
        if h.caption is None or not self.paraphrases:
            return ()
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), self._index(i), 2])
        return tuple(make_caption(self.attributes(i), rng.random(N_CAPTION_DRAWS)) for _ in range(self.paraphrases))

    def label_at(self, i: int) -> int | None:
        return self._header(i).scene[self._label_pos]

    def class_prompts(self) -> dict[str, list[str]]:
        """Zero-shot prompts per class of ``label_attribute`` (``label_names`` order), caption vocabulary."""
        return _class_prompts(self.label_attribute)

    def attribute_prompts(self) -> dict[str, dict[str, list[str]]]:
        """Zero-shot prompts for every attribute: ``{attribute: {value: prompts}}`` (values in order)."""
        return {a: _class_prompts(a) for a in self.ATTRIBUTES}

    @staticmethod
    def key_attributes(key: str) -> dict[str, str]:
        """``"shape=circle|colour=red|..."`` → ``{"shape": "circle", "colour": "red", ...}``."""
        return dict(part.split("=", 1) for part in key.split("|"))

    # -- media ------------------------------------------------------------------------------------------
    def image_with_mask(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Item ``i``'s image (rendered even when the item drops it) and its main-object mask ``(S, S)``."""
        h = self._header(i)
        rng = np.random.default_rng(h.image_seed)
        return render_image(h.scene, rng, self.image_size, self.noise, self.distractors)

    def audio_at(self, i: int) -> np.ndarray:
        """Item ``i``'s waveform ``(T,)`` float32 (rendered even when the item drops it)."""
        h = self._header(i)
        return render_audio(h.scene, np.random.default_rng(h.audio_seed), self.sample_rate, self.audio_seconds,
                            self.audio_snr_db)

    def sensor_at(self, i: int) -> np.ndarray:
        """Item ``i``'s sensor recording ``(T, 6)`` float32 (rendered even when the dataset has no sensor)."""
        i = self._index(i)
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), i, 1])
        return render_sensor(self._header(i).scene, rng, self.sensor_frames)

    def __getitem__(self, i: int) -> Sample:
        h = self._header(i)
        i = self._index(i)
        meta: dict[str, Any] = {"key": self.scene_key(i), "attributes": self.attributes(i), "split": self.split,
                                "index": i}
        audio = self.audio_at(i) if h.has_audio else None
        return Sample(
            uid=f"{self.split}-{i}",
            image=self.image_with_mask(i)[0] if h.has_image else None,
            caption=h.caption,
            audio=audio,
            sample_rate=self.sample_rate if audio is not None else None,
            features={"sensor": self.sensor_at(i)} if self.sensor else None,
            label=h.scene[self._label_pos],
            meta=meta,
            paraphrases=self.paraphrases_at(i),
        )
