"""A feature-sequence dataset through the whole chain: ``features:FILE.npz`` trains, ``evaluate`` reports
accuracy, macro-F1 and weighted F1 on the sequence tower, a ``seq_tcn`` student distils, exports to ONNX
with a dynamic time axis, and ``EdgeModel.embed_sequence`` embeds variable-length items torch-free with
fp32 parity >= 0.9999 cosine against the PyTorch student."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import distill
import export
import hybridssl
from cli.main import main
from edge_runtime.modalities import sequence_stream
from edge_runtime.model import EdgeModel
from edge_runtime.schema import tower_io
from edge_runtime.sequence import preprocess_sequences
from edge_runtime.validate import InputError
from export.tensorrt_graph import BatchProfile, axis_ranges, check_graph, int32_inputs
from hybridssl.data.features import write_feature_npz
from hybridssl.data.synthetic import SyntheticScenes
from hybridssl.runs import load_run


@pytest.fixture(scope="module")
def feature_file(tmp_path_factory):
    """A MOSEI-shaped file: the built-in sensor stream + a short 'words' stream, imbalanced labels."""
    ds = SyntheticScenes(240, sensor=True, label_attribute="colour")
    rng = np.random.default_rng(0)
    words = [np.eye(8, dtype=np.float32)[[ds.label_at(i)] * int(rng.integers(2, 9))] for i in range(240)]
    labels = np.array([min(ds.label_at(i), 3) for i in range(240)])            # class 3 holds half the items
    path = tmp_path_factory.mktemp("features") / "feats.npz"
    write_feature_npz(path, {"sensor": [ds.sensor_at(i) for i in range(240)], "words": words}, labels,
                      label_names=["red", "orange", "yellow", "other"])
    return path


@pytest.mark.slow
def test_features_file_trains_evaluates_distils_exports_and_runs_torch_free(feature_file, tmp_path):
    run = hybridssl.train("tiny", out=tmp_path / "teacher", data=f"features:{feature_file}", steps=6,
                          train__batch_size=16, train__eval_size=32)
    assert set(run.metrics["parameters"]) == {"seq_sensor", "seq_words"}
    assert "seq_sensor->seq_words" in run.retrieval
    spec = json.loads(json.dumps(run.metrics))  # the run is JSON-clean
    assert spec["steps"] == 6

    ev = hybridssl.evaluate(run.run_dir, fractions=(0.2,), seeds=(0,), finetune=False, pool_size=160, test_size=48,
                            modality="seq_sensor")
    probe = ev.protocols["linear_probe"]["0.2"]
    assert {"accuracy", "macro_f1", "weighted_f1"} <= set(probe)
    assert 0 <= probe["weighted_f1"]["mean"] <= 100 and probe["macro_f1"]["mean"] <= 100

    student = distill.distill(run.run_dir, tmp_path / "student", modalities=["seq_sensor", "seq_words"], steps=3,
                              train__batch_size=16)
    loaded = load_run(student.run_dir)
    assert loaded.state["student"]["towers"] == {"seq_sensor": "seq_tcn", "seq_words": "seq_tcn"}

    bundle = export.export(student.run_dir, tmp_path / "bundle", target="onnx", eval_size=16)
    manifest = json.loads((bundle.bundle_dir / "manifest.json").read_text())
    assert manifest["modalities"]["seq_sensor"]["inputs"][0]["shape"][:2] == ["batch", "time"]
    assert set(manifest["preprocessing"]["sequences"]) == {"sensor", "words"}
    for m in ("seq_sensor", "seq_words"):               # TensorRT: the time axis gets its profile range
        graph = int32_inputs(bundle.bundle_dir / f"{m}.onnx", tmp_path / f"{m}.trt.onnx")
        io = tower_io(m, loaded.spec, int(manifest["embed_dim"]))
        check = check_graph(graph, io, BatchProfile(), axis_ranges(m, loaded.spec))
        assert check["ok"], check["problems"]
        assert check["profile"]["shapes"]["frames"]["max"][1] == loaded.spec.sequences[sequence_stream(m)].padded_frames

    model = EdgeModel.load(bundle.bundle_dir)
    items = [SyntheticScenes(6, sensor=True, split="test").sensor_at(i) for i in range(6)]
    assert len({x.shape[0] for x in items}) > 1
    edge = model.embed_sequence(items, "seq_sensor")                               # (6, E), one padded batch
    alone = np.stack([model.embed_sequence(x, "seq_sensor") for x in items])       # each at its own length
    feed = preprocess_sequences(items, loaded.cfg.preprocess.sequences["sensor"])
    with torch.no_grad():
        ref = loaded.model.embed("seq_sensor", torch.from_numpy(feed["frames"]),
                                 torch.from_numpy(feed["frame_mask"]).bool()).numpy()
    assert (edge * ref).sum(1).min() >= 0.9999
    assert (alone * edge).sum(1).min() >= 0.9999                                   # padding changes nothing
    with pytest.raises(InputError, match="pass modality"):
        model.embed_sequence(items[0])                                              # two sequence towers
    with pytest.raises(InputError, match="NaN"):
        model.embed_sequence(np.full((10, 6), np.nan, np.float32), "seq_sensor")
    with pytest.raises(InputError, match="channels"):
        model.embed_sequence(np.zeros((10, 5), np.float32), "seq_sensor")
    with pytest.raises(InputError, match="at most"):
        model.embed_sequence(np.zeros((10 ** 4, 6), np.float32), "seq_sensor")

    # `hssl embed BUNDLE window.npy`: a .npy is a sequence for the bundle's one sequence tower
    one = export.export(student.run_dir, tmp_path / "one", target="onnx", eval_size=16, modalities=["seq_sensor"])
    np.save(tmp_path / "w.npy", items[0])
    assert main(["embed", str(one.bundle_dir), str(tmp_path / "w.npy"), "--out", str(tmp_path / "e.npy")]) == 0
    assert float(np.load(tmp_path / "e.npy")[0] @ alone[0]) >= 0.9999
    np.save(tmp_path / "p.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert main(["embed", str(one.bundle_dir), str(tmp_path / "p.npy"), "--out", str(tmp_path / "p_out.npy")]) == 2


def test_builtin_sensor_trains_with_four_towers(tmp_path):
    run = hybridssl.train("tiny", out=tmp_path / "run", data="builtin:sensor=true", steps=2, data__train_size=64,
                          data__val_size=32, train__batch_size=8, train__eval_size=32)
    assert "seq_sensor" in run.metrics["parameters"] and "mfm/seq_sensor" in run.metrics.get("last_parts", {
        k for line in (run.run_dir / "metrics.jsonl").read_text().splitlines() for k in json.loads(line)["parts"]})
    assert "seq_sensor" in run.metrics["heldout"]["zero_shot"]
