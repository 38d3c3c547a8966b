"""EdgeModel end to end: embeddings equal the torch model's on the same raw inputs, single vs batch
shapes, zero-shot and head classification, precisions, back-end choice and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_runtime import backends as B
from edge_runtime.backends import BackendError, choose_backend
from edge_runtime.bundle import BundleError
from edge_runtime.model import EdgeModel, infer_modality
from edge_runtime.validate import InputError
from hybridssl.data.readers import read_audio, read_image
from hybridssl.preprocessing import preprocess_audio, preprocess_image

# float32 embeddings of two implementations (torch vs a back end, each with its CPU's kernels) differ
# by rounding only: < ~2e-5 per element of a unit-norm embedding of these tiny towers on any CPU.
COS = 1e-4


@torch.no_grad()
def _torch_image(loaded, paths):
    x = torch.stack([preprocess_image(read_image(p, "x"), loaded.spec.image) for p in paths])
    return loaded.model.embed("image", x).numpy()


@torch.no_grad()
def _torch_audio(loaded, paths):
    x = torch.stack([preprocess_audio(*read_audio(p, "x")[:2], loaded.spec.audio)[0] for p in paths])
    return loaded.model.embed("audio", x).numpy()


@torch.no_grad()
def _torch_text(loaded, texts):
    ids, attn = loaded.tokenizer.encode(texts)
    return loaded.model.embed("text", torch.from_numpy(ids), torch.from_numpy(attn)).numpy()


def test_embeddings_match_the_torch_model(edge_model, edge_loaded, media):
    images = [media["rgb_png"], media["exif_jpg"], media["rgba_png"]]
    np.testing.assert_allclose(edge_model.embed_image(images), _torch_image(edge_loaded, images), atol=COS)
    clips = [media["mono_wav"], media["stereo_flac"]]
    np.testing.assert_allclose(edge_model.embed_audio(clips), _torch_audio(edge_loaded, clips), atol=COS)
    texts = ["a red circle", "a blue square with stripes " * 10]
    np.testing.assert_allclose(edge_model.embed_text(texts), _torch_text(edge_loaded, texts), atol=COS)


def test_single_items_and_batches(edge_model, media):
    E = edge_model.embed_dim
    img = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    one = edge_model.embed_image(img)
    assert one.shape == (E,) and one.dtype == np.float32
    assert np.linalg.norm(one) == pytest.approx(1.0, abs=1e-5)
    batch = edge_model.embed_image(np.stack([img, img[::-1].copy()]))
    assert batch.shape == (2, E)
    np.testing.assert_allclose(batch[0], one, atol=1e-6)
    assert edge_model.embed_text("a circle").shape == (E,)
    assert edge_model.embed_text(("a circle", "a square")).shape == (2, E)
    wave = np.sin(np.arange(12000) / 10).astype(np.float32)
    a = edge_model.embed_audio(wave, sample_rate=24000)
    np.testing.assert_allclose(edge_model.embed_audio((wave, 24000)), a, atol=1e-6)
    assert edge_model.embed_audio([(wave, 24000), media["mono_wav"]]).shape == (2, E)
    assert edge_model.embed_audio(np.stack([wave, wave]), sample_rate=24000).shape == (2, E)
    assert edge_model.embed(str(media["mono_wav"])).shape == (E,)
    assert edge_model.embed(media["rgb_png"].read_bytes()).shape == (E,)
    assert edge_model.embed(media["mono_wav"].read_bytes()).shape == (E,)


def test_batches_are_chunked(edge_bundle):
    small = EdgeModel.load(edge_bundle, backend="onnxruntime", threads=1, batch_size=2, modalities=["text"])
    texts = [f"a shape number {i}" for i in range(5)]
    full = EdgeModel.load(edge_bundle, backend="onnxruntime", threads=1, modalities=["text"])
    np.testing.assert_allclose(small.embed_text(texts), full.embed_text(texts), atol=1e-6)
    assert small.modalities == ("text",)
    with pytest.raises(InputError, match="no image tower"):
        small.embed_image(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError, match="cannot load towers"):
        EdgeModel.load(edge_bundle, modalities=["video"])


def test_zero_shot_scores_are_the_documented_softmax(edge_model):
    img = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    labels = ["circle", "square", "star"]
    ranked = edge_model.classify(img, labels=labels)
    assert [n for n, _ in ranked] != [] and sum(s for _, s in ranked) == pytest.approx(1.0, abs=1e-5)
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    # reference: prompts from the manifest templates, mean of unit rows, renormalised
    templates = edge_model.bundle.manifest["labels"]["templates"]
    w = []
    for label in labels:
        p = edge_model.embed_text([t.format(label) for t in templates])
        m = p.mean(0)
        w.append(m / np.linalg.norm(m))
    logits = edge_model.logit_scale * (np.stack(w) @ edge_model.embed_image(img))
    ref = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert dict(ranked) == pytest.approx(dict(zip(labels, ref)), abs=1e-5)
    assert edge_model.logit_scale == edge_model.bundle.manifest["logit_scale"]
    key = (tuple(labels), None)
    assert key in edge_model._label_cache  # cached per label set
    assert len(edge_model.classify([img, img], labels=labels, top_k=2)) == 2
    assert len(edge_model.classify(img, labels=labels, top_k=2)) == 2
    custom = edge_model.classify(img, labels=labels, templates=["{}"])
    assert {n for n, _ in custom} == set(labels)


def test_manifest_prompts_override_templates(bundle_copy):
    import json

    m = json.loads((bundle_copy / "manifest.json").read_text())
    m["labels"]["prompts"] = {"circle": ["a round thing"]}
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    model = EdgeModel.load(bundle_copy, backend="onnxruntime", threads=1, modalities=["text"])
    np.testing.assert_allclose(model.label_embeddings(["circle"])[0], model.embed_text("a round thing"), atol=1e-6)
    squares = model.embed_text([t.format("square") for t in m["labels"]["templates"]]).mean(0)
    np.testing.assert_allclose(model.label_embeddings(["square"])[0], squares / np.linalg.norm(squares), atol=1e-6)


def test_head_classification_uses_the_logits(edge_model, edge_loaded, media):
    ranked = edge_model.classify(media["rgb_png"])
    names = edge_model.bundle.manifest["head"]["names"]
    assert sorted(n for n, _ in ranked) == sorted(names)
    # reference: the fixture's head is a fixed linear map of the torch embedding
    emb = _torch_image(edge_loaded, [media["rgb_png"]])[0]
    head = torch.randn(len(names), edge_model.embed_dim, generator=torch.Generator().manual_seed(0)).numpy()
    logits = head @ emb
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert dict(ranked) == pytest.approx(dict(zip(names, probs)), abs=1e-4)
    # audio has no head: zero-shot over the manifest's label names
    assert sorted(n for n, _ in edge_model.classify(media["mono_wav"])) == sorted(names)


def test_int8_variant_and_openvino(edge_bundle, edge_ov_bundle, edge_model, media):
    q = EdgeModel.load(edge_bundle, backend="onnxruntime", threads=1, precision={"image": "int8"}, modalities=["image"])
    assert q.precisions == {"image": "int8"}
    cos = float(q.embed_image(media["rgb_png"]) @ edge_model.embed_image(media["rgb_png"]))
    assert 0.9 < cos < 1.0 + 1e-6
    with pytest.raises(BundleError, match="no int8 model of the text tower"):
        EdgeModel.load(edge_bundle, precision="int8")
    ov = EdgeModel.load(edge_ov_bundle, threads=1)  # IR files: auto picks OpenVINO
    assert ov.backends == {"image": "openvino", "text": "openvino", "audio": "openvino"}
    np.testing.assert_allclose(ov.embed_image(media["rgb_png"]), edge_model.embed_image(media["rgb_png"]), atol=COS)
    np.testing.assert_allclose(ov.embed_audio(media["mono_wav"]), edge_model.embed_audio(media["mono_wav"]), atol=COS)
    np.testing.assert_allclose(ov.embed_text("a red star"), edge_model.embed_text("a red star"), atol=COS)
    assert ov.classify(media["rgb_png"])[0][0] == edge_model.classify(media["rgb_png"])[0][0]
    on_onnx = EdgeModel.load(edge_bundle, backend="openvino", threads=1, modalities=["image"])  # OpenVINO reads .onnx
    np.testing.assert_allclose(on_onnx.embed_image(media["rgb_png"]), edge_model.embed_image(media["rgb_png"]), atol=COS)


def test_backend_choice_and_missing_backends(monkeypatch, tmp_path, edge_bundle):
    onnx, xml, plan = tmp_path / "m.onnx", tmp_path / "m.xml", tmp_path / "m.plan"
    assert choose_backend(onnx) == "onnxruntime"
    assert choose_backend(onnx, hint="openvino") == ("openvino" if B.is_installed("openvino") else "onnxruntime")
    with pytest.raises(BackendError, match="cannot run m.xml"):
        choose_backend(xml, "onnxruntime")
    with pytest.raises(BackendError, match="unknown back end 'mxnet'"):
        choose_backend(onnx, "mxnet")
    with pytest.raises(BackendError, match="unknown model file type"):
        choose_backend(tmp_path / "m.pt")
    installed = {"onnxruntime": False, "openvino": True, "tensorrt": False}
    monkeypatch.setattr(B, "is_installed", lambda name: installed[name])
    assert choose_backend(onnx) == "openvino"  # .onnx falls back to OpenVINO when only it is installed
    with pytest.raises(BackendError, match=r"^TensorRT is not installed: pip install 'hssl\[tensorrt\]'"):
        choose_backend(plan)
    with pytest.raises(BackendError, match=r"^ONNX Runtime is not installed: pip install 'hssl\[runtime\]'$"):
        choose_backend(onnx, "onnxruntime")
    installed["openvino"] = False
    with pytest.raises(BackendError, match=r"^ONNX Runtime is not installed"):
        EdgeModel.load(edge_bundle)


def test_tensorrt_absent_gives_one_line(edge_bundle, tmp_path):
    plan = tmp_path / "image.fp16.plan"
    plan.write_bytes(b"not an engine")
    if B.is_installed("tensorrt"):
        pytest.skip("TensorRT is installed here")
    with pytest.raises(BackendError, match=r"^TensorRT is not installed"):
        B.open_backend("tensorrt", plan)


def test_model_file_disagreeing_with_manifest_is_refused(bundle_copy):
    import json

    m = json.loads((bundle_copy / "manifest.json").read_text())
    m["modalities"]["audio"]["inputs"][0]["name"] = "spectrogram"
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="differ from the manifest"):
        EdgeModel.load(bundle_copy, backend="onnxruntime")


def test_infer_modality():
    assert infer_modality("clip.WAV") == "audio" and infer_modality("photo.jpg") == "image"
    assert infer_modality("a photo of a dog") == "text"
    assert infer_modality(np.zeros((4, 4, 3), np.uint8)) == "image"
    assert infer_modality(np.zeros(10, np.float32)) == "audio"
    assert infer_modality(b"RIFF\x00\x00\x00\x00WAVE") == "audio" and infer_modality(b"\x89PNG") == "image"
    with pytest.raises(InputError, match="cannot tell the modality"):
        infer_modality(3.5)
