"""The bundle contract end to end: what ``export_run`` writes, the torch-free ``edge_runtime`` loads,
verifies and runs — giving the embeddings PyTorch gives on the same raw inputs."""

import numpy as np
import pytest
import torch

from hybridssl.preprocessing import preprocess_audio, preprocess_image
from hybridssl.runs import load_run


def test_edge_runtime_reproduces_pytorch_on_an_exported_bundle(tiny_run, ort_bundle):
    from edge_runtime.model import EdgeModel

    bundle, report = ort_bundle
    run = load_run(tiny_run)
    edge = EdgeModel.load(bundle, backend="onnxruntime", precision="fp32", threads=1)
    assert set(edge.modalities) == set(run.model.modalities)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 52, 3), dtype=np.uint8) for _ in range(3)]
    texts = ["a red square", "a blue thing", "green"]
    rate = run.spec.audio.sample_rate
    clips = [rng.standard_normal(rate // 2).astype(np.float32) * 0.1 for _ in range(2)]
    with torch.inference_mode():
        ref_img = run.model.embed("image", torch.stack([preprocess_image(im, run.spec.image) for im in images]))
        ids, attn = run.tokenizer.encode(texts)
        ref_txt = run.model.embed("text", torch.from_numpy(ids), torch.from_numpy(attn))
        mel = torch.stack([preprocess_audio(c, rate, run.spec.audio)[0] for c in clips])
        ref_aud = run.model.embed("audio", mel)
    for got, ref in ((edge.embed_image(images), ref_img), (edge.embed_text(texts), ref_txt),
                     (edge.embed_audio(clips, sample_rate=rate), ref_aud)):
        cos = np.sum(got * ref.numpy(), axis=1)
        assert got.shape == tuple(ref.shape) and cos.min() > 0.9999, cos


def test_edge_runtime_refuses_a_tampered_export(ort_bundle, tmp_path):
    import shutil

    from edge_runtime.bundle import BundleError
    from edge_runtime.model import EdgeModel

    bundle, _ = ort_bundle
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    model_file = next(copy.glob("image*.onnx"))
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=model_file.name):
        EdgeModel.load(copy)
