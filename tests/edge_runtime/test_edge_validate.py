"""Every input-validation path gives a clear InputError (or the documented trim/truncation), and a
hypothesis fuzz test drives random malformed inputs through every public function."""

from __future__ import annotations

import io
import json
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from edge_runtime import validate as V
from edge_runtime.bundle import BundleError, read_bundle
from edge_runtime.index import EmbeddingIndex
from edge_runtime.model import EdgeModel
from edge_runtime.preprocess import preprocess_audio
from edge_runtime.validate import InputError

# ----------------------------------------------------------------------------- images


@pytest.mark.parametrize("bad,match", [
    (np.zeros((8, 8, 3), np.float32), "uint8"),
    (np.zeros((8, 8), np.uint8), r"\(H, W, 3\)"),
    (np.zeros((8, 8, 4), np.uint8), r"\(H, W, 3\)"),
    (np.zeros((1, 8, 3), np.uint8), "too small"),
    (np.zeros((0, 8, 3), np.uint8), "too small"),
    (42, "cannot read an image from a int"),
    (b"", "bytes are empty"),
    (b"not an image at all", "cannot decode"),
    ("/no/such/file.png", "file not found"),
    ("bad\x00path.png", "file not found"),
])
def test_bad_images(edge_model, bad, match):
    with pytest.raises(InputError, match=match):
        edge_model.embed_image(bad)


def test_corrupt_empty_and_huge_image_files(edge_model, media, tmp_path):
    with pytest.raises(InputError, match="cannot decode"):
        edge_model.embed_image(media["corrupt_png"])
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="file is empty"):
        edge_model.embed_image(tmp_path / "empty.png")
    with pytest.raises(InputError, match="file not found"):
        edge_model.embed_image(tmp_path)  # a folder
    bomb = Image.new("1", (8000, 6000))  # 48 M pixels > 40 M: a few KB as a PNG
    buf = io.BytesIO()
    bomb.save(buf, format="PNG")
    assert len(buf.getvalue()) < 100_000
    for item in (buf.getvalue(), bomb):
        with pytest.raises(InputError, match="exceeds the limit of 40000000 pixels"):
            edge_model.embed_image(item)
    truncated = media["rgb_jpg"].read_bytes()[:200]
    with pytest.raises(InputError, match="cannot decode"):
        edge_model.embed_image(truncated)
    with pytest.raises(InputError, match="batch is empty"):
        edge_model.embed_image([])


# ----------------------------------------------------------------------------- audio


@pytest.mark.parametrize("bad,rate,match", [
    (np.zeros(100, np.int16), 16000, "floating point"),
    (np.zeros(0, np.float32), 16000, "empty"),
    (np.array([0.0, np.nan, 0.1], np.float32), 16000, "non-finite"),
    (np.zeros((2, 3, 4), np.float32), 16000, "mono"),
    (np.zeros((16000, 2), np.float32), 16000, r"looks like \(frames, channels\)"),   # stereo, not 16000 clips
    ((np.zeros((8000, 2), np.float32), 8000), None, r"looks like \(frames, channels\)"),
    (np.zeros(100, np.float32), None, "needs its sample rate"),
    (np.zeros(100, np.float32), 500, "outside"),
    (np.zeros(100, np.float32), 16000.5, "whole number"),
    (np.zeros(100, np.float32), True, "must be a number"),
    (np.zeros(100, np.float32), float("nan"), "whole number"),
    ((np.zeros(100, np.float32), "16k"), None, "must be a number"),
    (3.5, None, "cannot read audio"),
    (b"RIFF\x00\x00WAVEjunk", None, "cannot decode"),
])
def test_bad_audio(edge_model, bad, rate, match):
    with pytest.raises(InputError, match=match):
        edge_model.embed_audio(bad, sample_rate=rate)


def test_a_batch_of_mono_clips_is_still_a_batch(edge_model):
    clips = np.random.default_rng(0).uniform(-0.5, 0.5, (3, 4000)).astype(np.float32)
    assert edge_model.embed_audio(clips, sample_rate=16000).shape == (3, edge_model.embed_dim)


def test_corrupt_audio_file_and_documented_trim_and_pad(edge_model, media):
    with pytest.raises(InputError, match="cannot decode"):
        edge_model.embed_audio(media["corrupt_wav"])
    spec = edge_model.audio_spec
    n = spec.num_samples
    long = np.random.default_rng(0).standard_normal(10 * n).astype(np.float32)
    np.testing.assert_array_equal(preprocess_audio(long, spec, 16000), preprocess_audio(long[:n], spec, 16000))  # trimmed
    short = long[: n // 3]
    padded = np.concatenate([short, np.zeros(n - short.size, np.float32)])
    np.testing.assert_array_equal(preprocess_audio(short, spec, 16000), preprocess_audio(padded, spec, 16000))
    assert V.check_sample_rate(np.int64(16000)) == 16000 and V.check_sample_rate(Fraction(22050)) == 22050


# ----------------------------------------------------------------------------- text


@pytest.mark.parametrize("bad,match", [("", "empty text"), ("   \n\t", "empty text"), (None, "string or a list"),
                                       (["ok", ""], "empty text"), ([3], "expected a text string"),
                                       ([], "batch is empty"), ("\ud800 lone surrogate", "not valid Unicode")])
def test_bad_text(edge_model, bad, match):
    with pytest.raises(InputError, match=match):
        edge_model.embed_text(bad)


def test_over_long_text_is_truncated(edge_model):
    L = edge_model.text.max_length
    ids, mask = edge_model.text.encode(["word " * 10_000])
    assert ids.shape == (1, L) and mask.all()
    huge = "word " * 100_000  # 500 k characters: cut to MAX_TEXT_CHARS first, same tokens
    np.testing.assert_array_equal(edge_model.text.encode([huge])[0], ids)
    np.testing.assert_allclose(edge_model.embed_text(huge), edge_model.embed_text("word " * 1000), atol=1e-6)


# ----------------------------------------------------------------------------- model inputs, labels, options


def test_bad_feeds(edge_model):
    L = edge_model.text.max_length
    ok_ids, ok_mask = np.full((1, L), 5, np.int64), np.ones((1, L), np.int64)
    cases = [
        ({"input_ids": ok_ids}, "expects inputs"),
        ({"input_ids": ok_ids, "attention_mask": ok_mask, "extra": ok_ids}, "expects inputs"),
        ({"input_ids": ok_ids.astype(np.int32), "attention_mask": ok_mask}, "must be int64"),
        ({"input_ids": ok_ids[:, :5], "attention_mask": ok_mask[:, :5]}, "axis 1"),
        ({"input_ids": ok_ids, "attention_mask": np.ones((2, L), np.int64)}, "disagree on the batch size"),
        ({"input_ids": ok_ids[:0], "attention_mask": ok_mask[:0]}, "empty batch"),
        ({"input_ids": ok_ids + 10**6, "attention_mask": ok_mask}, r"token ids must lie in \[0"),
        ({"input_ids": ok_ids, "attention_mask": ok_mask * 2}, "only 0 and 1"),
        ({"input_ids": ok_ids, "attention_mask": ok_mask * 0}, "at least one real token"),
        ({"input_ids": ok_ids.tolist(), "attention_mask": ok_mask}, "must be a numpy array"),
        ([ok_ids], "must be a dict"),
    ]
    for feed, match in cases:
        with pytest.raises(InputError, match=match):
            edge_model.run("text", feed)
    S = edge_model.image_spec.size
    with pytest.raises(InputError, match="non-finite"):
        edge_model.run("image", {"pixels": np.full((1, 3, S, S), np.inf, np.float32)})
    with pytest.raises(InputError, match="has no video tower"):
        edge_model.run("video", {})


def test_bad_labels_and_options(edge_model, edge_bundle):
    img = np.zeros((8, 8, 3), np.uint8)
    for labels, match in [([], "non-empty list"), ("cat", "non-empty list"), (["a", "a"], "unique"), (["a", ""], "non-empty string"),
                          ([1, 2], "non-empty string")]:
        with pytest.raises(InputError, match=match):
            edge_model.classify(img, labels=labels)
    with pytest.raises(InputError, match="containing"):
        edge_model.classify(img, labels=["a"], templates=["no slot"])
    with pytest.raises(InputError, match="cannot be filled"):
        edge_model.classify(img, labels=["a"], templates=["{} and {}"])
    with pytest.raises(InputError, match="top_k"):
        edge_model.classify(img, labels=["a"], top_k=0)
    with pytest.raises(InputError, match="no video tower"):
        edge_model.embed(img, modality="video")
    with pytest.raises(InputError, match="threads"):
        EdgeModel.load(edge_bundle, threads=-1)
    with pytest.raises(InputError, match="batch_size"):
        EdgeModel.load(edge_bundle, batch_size=0)


# ----------------------------------------------------------------------------- fuzz

_arrays = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.int16, np.int64, np.float16, np.float32, np.float64, np.bool_, np.complex64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6),
    elements=None,
)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
                     st.text(max_size=30), st.binary(max_size=64), st.fractions())
_items = st.one_of(_scalars, _arrays, st.tuples(_arrays, _scalars), st.lists(st.one_of(_scalars, _arrays), max_size=3),
                   st.sampled_from(["/nonexistent.wav", "x.png", "\udfff", "", " ", "a\x00b.jpg", "RIFF", b"RIFF\x00\x00\x00\x00WAVE",
                                    b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"]))
ALLOWED = (InputError, BundleError)
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(item=_items, rate=_scalars)
def test_fuzz_embedding(edge_model, item, rate):
    for call in (lambda: edge_model.embed_image(item), lambda: edge_model.embed_text(item),
                 lambda: edge_model.embed_audio(item, sample_rate=rate), lambda: edge_model.embed(item)):
        try:
            out = call()
        except ALLOWED:
            continue
        assert out.dtype == np.float32 and np.isfinite(out).all()


@FUZZ
@given(item=_items, labels=st.one_of(st.none(), _scalars, st.lists(_scalars, max_size=3)),
       templates=st.one_of(st.none(), st.lists(st.text(max_size=8), max_size=2)), top_k=_scalars,
       modality=st.one_of(st.none(), st.sampled_from(["image", "text", "audio", "video"])))
def test_fuzz_classify(edge_model, item, labels, templates, top_k, modality):
    try:
        edge_model.classify(item, labels=labels, templates=templates, top_k=top_k, modality=modality)
    except ALLOWED:
        pass


@FUZZ
@given(modality=st.sampled_from(["image", "text", "audio", "nope"]),
       feed=st.one_of(_scalars, st.dictionaries(st.sampled_from(["pixels", "input_ids", "attention_mask", "log_mel", "x"]),
                                                st.one_of(_arrays, _scalars), max_size=3)))
def test_fuzz_run(edge_model, modality, feed):
    try:
        edge_model.run(modality, feed)
    except ALLOWED:
        pass


@FUZZ
@given(ids=st.one_of(_scalars, st.lists(_scalars, max_size=3)), emb=st.one_of(_arrays, _scalars),
       meta=st.one_of(st.none(), _scalars, st.lists(st.dictionaries(st.text(max_size=3), _scalars), max_size=3)),
       query=st.one_of(_arrays, _scalars), k=_scalars)
def test_fuzz_index(ids, emb, meta, query, k):
    idx = EmbeddingIndex(4)
    idx.add(["seed"], np.ones(4, np.float32))
    for call in (lambda: idx.add(ids, emb, meta), lambda: idx.search(query, k), lambda: idx.search_batch(query, k),
                 lambda: idx.remove(ids)):
        try:
            call()
        except ALLOWED:
            pass
    assert len(idx) == len(idx.ids) == len(idx._store) == idx.embeddings.shape[0]


_json = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)),
                     lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=8), kids, max_size=4)),
                     max_leaves=12)


@FUZZ
@given(edits=st.dictionaries(st.sampled_from(["format", "format_version", "embed_dim", "precision", "modalities", "files",
                                              "tokenizer", "labels", "head", "variants", "preprocessing", "logit_scale"]),
                             _json, max_size=3),
       raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_fuzz_manifest(edge_bundle, edits, raw):
    manifest = json.loads((edge_bundle / "manifest.json").read_text())
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "manifest.json").write_bytes(raw if raw is not None else json.dumps({**manifest, **edits}).encode())
        try:
            read_bundle(d, verify=False)
        except ALLOWED:
            pass
