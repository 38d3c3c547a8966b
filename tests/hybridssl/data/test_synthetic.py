"""Tests for hybridssl.data.synthetic (+ synthetic_text, synthetic_audio): the procedural scenes."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from hybridssl.data.base import MultimodalDataset
from hybridssl.data.synthetic import ANCHORS, PALETTE, RADII, SyntheticScenes, render_image, shape_mask
from hybridssl.data.synthetic_audio import ONSETS, PEAK, PITCHES_HZ, RHYTHMS, envelope, render_audio
from hybridssl.data.synthetic_text import (
    ATTRIBUTES,
    N_CAPTION_DRAWS,
    SYNONYMS,
    TEMPLATES,
    make_caption,
    parse_caption,
)

INF = float("inf")
SR = 16000


def _small(**kw) -> SyntheticScenes:
    """A cheap dataset (tiny images, short audio) for knob statistics."""
    base = dict(image_size=16, sample_rate=8000, audio_seconds=0.25)
    base.update(kw)
    return SyntheticScenes(**base)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- reference helpers


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[\s,:;.]+", text.lower()) if w]


def _mentions(caption: str, phrase: str) -> bool:
    """Slow reference: does the word sequence of ``phrase`` occur contiguously in ``caption``?"""
    cw, pw = _words(caption), _words(phrase)
    return any(cw[k: k + len(pw)] == pw for k in range(len(cw) - len(pw) + 1))


def _reference_parse(caption: str) -> dict[str, set[str]]:
    return {a: {v for v, syns in table.items() if any(_mentions(caption, s) for s in syns)}
            for a, table in SYNONYMS.items()}


def _point_in_polygon(x: float, y: float, verts: list[tuple[float, float]]) -> bool:
    """Ray casting, one vertex pair at a time."""
    inside = False
    for k in range(len(verts)):
        (x1, y1), (x2, y2) = verts[k], verts[(k + 1) % len(verts)]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def _count_notes(x: np.ndarray, hop: int, sr: int = SR) -> tuple[int, float]:
    """(rising edges of the max-pooled envelope above 25 % of its peak, seconds above it)."""
    env = np.abs(x[: len(x) // hop * hop]).reshape(-1, hop).max(axis=1)
    on = env > 0.25 * env.max()
    return int(on[0]) + int(np.sum(on[1:] & ~on[:-1])), float(on.sum() * hop / sr)


# ----------------------------------------------------------------------------- dataset contract


def test_sample_contract_shapes_and_meta() -> None:
    ds = SyntheticScenes(12, seed=5, split="val")
    assert isinstance(ds, MultimodalDataset) and len(ds) == 12
    assert ds.modalities == ("image", "text", "audio") and ds.label_names == list(ATTRIBUTES["shape"])
    for i in range(len(ds)):
        s = ds[i]
        assert s.uid == f"val-{i}" and s.modalities == ("image", "text", "audio")
        assert s.image.shape == (64, 64, 3) and s.image.dtype == np.uint8
        assert s.audio.shape == (16000,) and s.audio.dtype == np.float32 and s.sample_rate == 16000
        assert np.abs(s.audio).max() <= PEAK + 1e-6 and np.isfinite(s.audio).all()
        attrs = ds.attributes(i)
        assert s.meta["attributes"] == attrs and s.meta["key"] == ds.scene_key(i)
        assert s.meta["key"] == "|".join(f"{a}={attrs[a]}" for a in ATTRIBUTES)
        assert s.label == ATTRIBUTES["shape"].index(attrs["shape"])
    assert ds.labels() == [ds[i].label for i in range(len(ds))]
    other = SyntheticScenes(6, image_size=32, sample_rate=8000, audio_seconds=0.5, label_attribute="colour")
    s = other[0]
    assert s.image.shape == (32, 32, 3) and s.audio.shape == (4000,) and s.sample_rate == 8000
    assert other.label_names == list(ATTRIBUTES["colour"])
    assert s.label == other.label_names.index(s.meta["attributes"]["colour"])


def test_determinism_and_independence_of_access_order() -> None:
    a, b = SyntheticScenes(8, seed=3), SyntheticScenes(8, seed=3)
    items_b = {i: b[i] for i in reversed(range(8))}
    for i in range(8):
        sa = a[i]
        assert np.array_equal(sa.image, items_b[i].image) and np.array_equal(sa.audio, items_b[i].audio)
        assert sa.caption == items_b[i].caption and sa.meta == items_b[i].meta
    for other in (SyntheticScenes(8, seed=4), SyntheticScenes(8, seed=3, split="test")):
        assert [other.scene_key(i) for i in range(8)] != [a.scene_key(i) for i in range(8)]
        assert not np.array_equal(other[0].image, a[0].image) and not np.array_equal(other[0].audio, a[0].audio)
    # a larger dataset and other knobs leave the scene, the caption and the other modality unchanged
    big = SyntheticScenes(100, seed=3, missing_audio=0.5, audio_snr_db=0.0)
    for i in range(8):
        assert big.scene_key(i) == a.scene_key(i) and big.caption_at(i) == a.caption_at(i)
        assert np.array_equal(big.image_with_mask(i)[0], a[i].image)


def test_captions_equal_items_and_are_cheap_to_get() -> None:
    ds = _small(size=60, seed=2, caption_dropout=0.3)
    from_items = [s.caption for s in (ds[i] for i in range(len(ds))) if s.caption is not None]
    assert list(ds.captions()) == from_items and 0 < len(from_items) < 60
    fresh = _small(size=60, seed=2, caption_dropout=0.3)  # captions() before any item was rendered
    assert list(fresh.captions()) == from_items


def test_index_and_argument_errors() -> None:
    ds = SyntheticScenes(5)
    for bad in (-1, 5, 100):
        with pytest.raises(IndexError):
            ds[bad]
        with pytest.raises(IndexError):
            ds.scene_key(bad)
    assert ds[np.int64(4)].uid == "train-4"
    with pytest.raises(TypeError):
        ds["0"]  # type: ignore[index]
    with pytest.raises(ValueError, match="split"):
        SyntheticScenes(5, split="dev")
    for kw, match in [
        (dict(size=0), "size"), (dict(seed=-1), "seed"), (dict(noise=1.5), "noise"),
        (dict(missing_image=-0.1), "missing_image"), (dict(caption_dropout=float("nan")), "caption_dropout"),
        (dict(audio_snr_db=float("nan")), "audio_snr_db"), (dict(label_attribute="weight"), "label_attribute"),
        (dict(image_size=8), "image_size"), (dict(audio_seconds=0.1), "audio_seconds"),
        (dict(distractors=-1), "distractors"),
    ]:
        with pytest.raises(ValueError, match=match):
            SyntheticScenes(**kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- captions


def test_captions_determine_the_scene_key() -> None:
    ds = SyntheticScenes(500, seed=11)
    seen: set[str] = set()
    for i, caption in enumerate(ds.captions()):
        truth = ds.attributes(i)
        ref = _reference_parse(caption)
        assert ref == {a: {v} for a, v in truth.items()}, (caption, truth)
        assert parse_caption(caption) == truth
        seen.update(s for a, table in SYNONYMS.items() for s in table[truth[a]] if _mentions(caption, s))
    for attr in ("shape", "colour", "size", "position"):  # every synonym gets used
        assert all(s in seen for syns in SYNONYMS[attr].values() for s in syns), attr
        assert sum(len(syns) >= 2 for syns in SYNONYMS[attr].values()) >= len(SYNONYMS[attr]) / 2


def test_templates_mention_every_attribute_in_distinct_orders() -> None:
    assert len(TEMPLATES) >= 6
    orders = set()
    for t in TEMPLATES:
        fields = re.findall(r"\{(\w+)\}", t)
        assert {"size", "colour", "shape", "pos"} <= set(fields) and ({"tex", "tex_with"} & set(fields))
        orders.add(tuple(fields))
    assert len(orders) == len(TEMPLATES)
    values = {"shape": "star", "colour": "orange", "size": "large", "position": "top", "texture": "dotted"}
    u_last = [0.999999] * N_CAPTION_DRAWS
    assert make_caption(values, u_last) == "in the upper part, a huge polka-dot pentagram in tangerine"
    assert make_caption(values, [0.0] * N_CAPTION_DRAWS) == "a large orange dotted star at the top"
    mixed = make_caption(dict(values, size="small"), [0.99, 0, 0.5, 0, 0, 0])
    assert mixed == "at the top, a small dotted star in tangerine"
    with pytest.raises(ValueError, match="uniforms"):
        make_caption(values, [0.0])
    assert parse_caption("a red blue circle")["colour"] is None and parse_caption("nothing")["shape"] is None
    with pytest.raises(ValueError, match="str"):
        parse_caption(3)  # type: ignore[arg-type]


def test_class_prompts_name_only_their_class() -> None:
    for attr in ATTRIBUTES:
        ds = SyntheticScenes(4, label_attribute=attr)
        prompts = ds.class_prompts()
        assert list(prompts) == ds.label_names
        for value, sentences in prompts.items():
            assert len(sentences) >= 2 and len(set(sentences)) == len(sentences)
            for sentence in sentences:
                parsed = parse_caption(sentence)
                assert parsed[attr] == value, sentence
                assert all(parsed[a] is None for a in ATTRIBUTES if a != attr), sentence
    assert "a disc" in SyntheticScenes(4).class_prompts()["circle"]
    assert "an object on the left" in SyntheticScenes(4, label_attribute="position").class_prompts()["left"]


# ----------------------------------------------------------------------------- missing modalities


def test_missing_modality_rates_and_never_empty() -> None:
    n = 800
    ds = _small(size=n, seed=7, missing_image=0.3, missing_audio=0.6, caption_dropout=0.2)
    items = [ds[i] for i in range(n)]
    no_img = np.mean([s.image is None for s in items])
    no_aud = np.mean([s.audio is None for s in items])
    no_cap = np.mean([s.caption is None for s in items])
    tol = 4 * math.sqrt(0.25 / n)
    assert abs(no_img - 0.3) < tol and abs(no_aud - 0.6) < tol
    # a caption is dropped only when another modality is left: P = 0.2 · (1 − 0.3 · 0.6)
    assert abs(no_cap - 0.2 * (1 - 0.18)) < tol
    assert all(s.modalities for s in items)
    assert all(s.sample_rate is None for s in items if s.audio is None)
    harsh = _small(size=300, missing_image=0.9, missing_audio=0.9, caption_dropout=1.0)
    kept = [harsh[i] for i in range(300)]
    assert all(s.modalities for s in kept)
    assert all((s.caption is not None) == (s.image is None and s.audio is None) for s in kept)
    assert _small(size=3, missing_image=1.0).modalities == ("text", "audio")
    assert all(_small(size=20, missing_audio=1.0)[i].audio is None for i in range(20))


# ----------------------------------------------------------------------------- images


def test_regular_polygons_match_point_in_polygon_reference() -> None:
    g = np.linspace(-1.4, 1.4, 29, dtype=np.float32)
    u, v = np.meshgrid(g, g)
    for name, n, first, scale in (("triangle", 3, math.pi / 2, 1.15), ("hexagon", 6, 0.0, 1.0)):
        # vertices lie between consecutive edge normals, at circumradius `scale`
        angles = [first + (2 * k + 1) * math.pi / n for k in range(n)]
        verts = [(scale * math.cos(a), scale * math.sin(a)) for a in angles]
        mask = shape_mask(ATTRIBUTES["shape"].index(name), u, v)
        for r in range(g.size):
            for c in range(g.size):
                x, y = float(u[r, c]), float(v[r, c])
                # skip points on the boundary, where rounding decides
                if min(abs(x * math.cos(first + 2 * math.pi * k / n) + y * math.sin(first + 2 * math.pi * k / n)
                           - scale * math.cos(math.pi / n)) for k in range(n)) < 1e-4:
                    continue
                assert mask[r, c] == _point_in_polygon(x, y, verts), (name, x, y)


def test_silhouettes_are_distinct() -> None:
    g = (np.arange(96, dtype=np.float32) + 0.5) / 48 - 1.0
    u, v = np.meshgrid(g, g)
    masks = [shape_mask(k, u, v) for k in range(len(ATTRIBUTES["shape"]))]
    for k, mk in enumerate(masks):
        assert 0.2 < mk.mean() < 0.8, ATTRIBUTES["shape"][k]
        for m2 in masks[k + 1:]:
            assert (mk & m2).sum() / (mk | m2).sum() < 0.85


def test_image_colour_position_size_and_texture_are_visible() -> None:
    chroma = PALETTE / PALETTE.sum(axis=1, keepdims=True)  # (8, 3)
    ds = SyntheticScenes(120, seed=1)  # default knobs: noise 0.05, one distractor at most
    areas: dict[str, list[int]] = {"small": [], "large": []}
    for i in range(len(ds)):
        image, mask = ds.image_with_mask(i)
        attrs = ds.attributes(i)
        assert np.array_equal(image, ds[i].image)
        mean = image[mask].astype(np.float64).mean(axis=0)  # (3,)
        colour = int(np.argmin(np.abs(chroma - mean / mean.sum()).sum(axis=1)))
        assert ATTRIBUTES["colour"][colour] == attrs["colour"], (i, mean)
        ys, xs = np.nonzero(mask)
        centre = np.array([xs.mean() + 0.5, ys.mean() + 0.5]) / image.shape[0]
        pos = int(np.argmin(((ANCHORS - centre) ** 2).sum(axis=1)))
        assert ATTRIBUTES["position"][pos] == attrs["position"], (i, centre)
        areas[attrs["size"]].append(int(mask.sum()))
    assert max(areas["small"]) < np.median(areas["large"]) and np.median(areas["small"]) < min(areas["large"])


def test_texture_and_distractors_without_noise() -> None:
    rng = np.random.default_rng(0)
    for texture in range(3):
        for shape in range(8):
            image, mask = render_image((shape, 5, 1, 4, texture), rng, 64, noise=0.0, distractors=3)
            inside = image[mask].astype(np.int64)  # (n, 3)
            dark = (inside.sum(axis=1) < 0.7 * inside.sum(axis=1).max()).mean()
            if texture == 0:
                assert dark == 0.0
            else:
                assert 0.1 < dark < 0.7, (texture, shape, dark)
            outside = image[~mask].astype(np.int64)  # background and grey distractors: desaturated
            assert (outside.max(axis=1) - outside.min(axis=1)).max() <= 40
    sizes = [render_image((0, 0, s, 4, 0), np.random.default_rng(1), 64, 0.0, 0)[1].sum() for s in (0, 1)]
    assert sizes[0] == pytest.approx(math.pi * (RADII[0] * 64) ** 2, rel=0.25)
    assert sizes[1] == pytest.approx(math.pi * (RADII[1] * 64) ** 2, rel=0.25)


# ----------------------------------------------------------------------------- audio


def test_envelope_matches_loop_reference() -> None:
    for n in (8, 50, 2000):
        env = envelope(n, SR)
        attack, release = max(1.0, 0.005 * SR), max(1.0, min(0.02 * SR, n / 4))
        ref = [min(1.0, max(0.0, min(k / attack, (n - 1 - k) / release))) for k in range(n)]
        np.testing.assert_allclose(env, ref, rtol=1e-6, atol=1e-7)


def test_pitch_follows_colour_for_every_timbre() -> None:
    for shape in range(8):
        freqs = []
        for colour in range(8):
            x = render_audio((shape, colour, 1, 4, 0), np.random.default_rng(colour), SR, 1.0, INF)
            spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
            f = np.argmax(spec) * SR / x.size
            assert abs(12 * math.log2(f / PITCHES_HZ[colour])) < 0.5, (shape, colour, f)
            freqs.append(f)
        assert freqs == sorted(freqs)
    assert all(12 * math.log2(b / a) >= 2 for a, b in zip(PITCHES_HZ, PITCHES_HZ[1:]))
    assert 200 <= min(PITCHES_HZ) and max(PITCHES_HZ) <= 900


def test_onset_rhythm_and_size_are_audible() -> None:
    order = np.argsort(ONSETS)
    hop = SR // 200  # 5 ms
    for shape in range(8):
        onsets = []
        for position in range(5):
            x = render_audio((shape, 2, 0, position, 1), np.random.default_rng(position), SR, 1.0, INF)
            onsets.append(np.argmax(np.abs(x) > 0.02 * np.abs(x).max()) / SR)
            assert abs(onsets[-1] - ONSETS[position]) < 0.015, (shape, position, onsets[-1])
        assert list(np.argsort(onsets)) == list(order)
        for texture, (count, *_rest) in enumerate(RHYTHMS):
            small = render_audio((shape, 4, 0, 0, texture), np.random.default_rng(9), SR, 1.0, INF)
            large = render_audio((shape, 4, 1, 0, texture), np.random.default_rng(9), SR, 1.0, INF)
            (n_small, dur_small), (n_large, dur_large) = _count_notes(small, hop), _count_notes(large, hop)
            assert n_small == count and n_large == count, (shape, texture, n_small, n_large)
            assert dur_large > 1.3 * dur_small
            assert np.abs(large).max() > 1.5 * np.abs(small).max()


def test_audio_noise_level_and_peak() -> None:
    scene = (0, 0, 0, 4, 0)  # a quiet sine: no peak normalisation
    clean = render_audio(scene, np.random.default_rng(3), SR, 1.0, INF)
    noisy = render_audio(scene, np.random.default_rng(3), SR, 1.0, 10.0)
    assert np.abs(noisy).max() < PEAK
    snr = 10 * math.log10(np.mean(clean**2) / np.mean((noisy - clean) ** 2))
    assert abs(snr - 10.0) < 0.3
    loud = render_audio((5, 7, 1, 0, 0), np.random.default_rng(3), SR, 1.0, -5.0)
    assert np.abs(loud).max() == pytest.approx(PEAK, abs=1e-6)
    short = render_audio((4, 7, 1, 1, 2), np.random.default_rng(0), 8000, 0.5, INF)
    assert short.shape == (4000,) and _count_notes(short, 8000 // 200, 8000)[0] == 6


def test_label_sets_are_every_attribute_of_every_item():
    ds = SyntheticScenes(size=12, seed=3, split="val", label_attribute="colour")
    sets = ds.label_sets()
    assert list(sets) == list(SyntheticScenes.ATTRIBUTES)
    for name, (names, labels) in sets.items():
        assert names == list(SyntheticScenes.ATTRIBUTES[name]) and labels.shape == (12,)
        assert [names[int(v)] for v in labels] == [ds.attributes(i)[name] for i in range(12)]
    assert sets["colour"][1].tolist() == [ds.label_at(i) for i in range(12)]


def test_paraphrases_describe_the_same_scene_in_other_words() -> None:
    plain, para = _small(size=200, seed=5, caption_dropout=0.3), _small(size=200, seed=5, caption_dropout=0.3, paraphrases=3)
    differ = 0
    for i in range(200):
        a, b = plain[i], para[i]
        assert a.caption == b.caption and a.label == b.label and np.array_equal(a.image, b.image)  # nothing else moves
        assert a.paraphrases == ()
        if b.caption is None:
            assert b.paraphrases == ()
            continue
        assert len(b.paraphrases) == 3 and b.paraphrases == para.paraphrases_at(i)   # deterministic
        assert all(parse_caption(p) == para.attributes(i) for p in b.paraphrases)
        differ += any(p != b.caption for p in b.paraphrases)
    assert differ > 100   # they are other wordings, not copies
    with pytest.raises(ValueError, match="paraphrases"):
        SyntheticScenes(4, paraphrases=-1)
