"""Tests for hybridssl.data.features: the offsets layout, validation, skips and the writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hybridssl.data.features import FeatureSequenceDataset, write_feature_npz


def _seqs(lengths: list[int], dim: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((t, dim)).astype(np.float32) for t in lengths]


def test_round_trip(tmp_path: Path) -> None:
    vision, acoustic = _seqs([3, 1, 4, 2], 5, 0), _seqs([2, 0, 6, 1], 3, 1)  # item 1 has no acoustic frames
    path = write_feature_npz(
        tmp_path / "mosei_feats",  # no .npz suffix: written exactly there
        {"vision": vision, "acoustic": acoustic},
        labels=[1, 0, -1, 2],
        ids=["s0", "s1", "s2", "s3"],
        label_names=["neg", "neu", "pos"],
    )
    assert path == tmp_path / "mosei_feats" and path.is_file()
    d = FeatureSequenceDataset(path)
    assert len(d) == 4 and d.modalities == ("seq_acoustic", "seq_vision") and d.feature_dims == {"acoustic": 3, "vision": 5}
    assert d.label_names == ["neg", "neu", "pos"] and d.labels() == [1, 0, None, 2]
    assert list(d.captions()) == []
    assert d.load_report.repaired["empty_sequence_dropped"] == 1 and d.load_report.total_skipped == 0
    for i in range(4):
        s = d[i]
        assert s.uid == f"s{i}" and s.image is None and s.caption is None and s.audio is None
        np.testing.assert_array_equal(s.features["vision"], vision[i])
        assert s.features["vision"].dtype == np.float32
        if i == 1:
            assert "acoustic" not in s.features
        else:
            np.testing.assert_array_equal(s.features["acoustic"], acoustic[i])
    s = d[0]
    s.features["vision"][:] = 0  # a copy: the dataset is not modified
    np.testing.assert_array_equal(d[0].features["vision"], vision[0])


def test_offsets_layout_matches_reference(tmp_path: Path) -> None:
    seqs = _seqs([2, 0, 3], 2, 2)
    write_feature_npz(tmp_path / "f.npz", {"text": seqs}, labels=None)
    z = np.load(tmp_path / "f.npz", allow_pickle=False)
    ref_offsets = [0]
    for s in seqs:
        ref_offsets.append(ref_offsets[-1] + s.shape[0])
    assert z["text_offsets"].tolist() == ref_offsets and z["text_offsets"].dtype == np.int64
    assert z["text"].shape == (5, 2) and sorted(z.files) == ["text", "text_offsets"]
    d = FeatureSequenceDataset(tmp_path / "f.npz")
    assert d.label_names is None and d.labels() == [None, None]  # item 1 (all empty) skipped
    assert d.load_report.skipped["no_modality"] == 1 and [d[i].uid for i in range(2)] == ["0", "2"]


def test_regression_targets_and_non_finite(tmp_path: Path) -> None:
    v = _seqs([2, 2, 2, 2], 3, 3)
    v[1][1, 2] = np.nan
    write_feature_npz(tmp_path / "r.npz", {"vision": v}, labels=[0.5, -1.0, np.inf, 2.0])
    d = FeatureSequenceDataset(tmp_path / "r.npz")
    assert dict(d.load_report.skipped) == {"non_finite_features": 1, "non_finite_label": 1}
    assert len(d) == 2 and d.label_names is None
    assert d[0].label is None and d[0].meta["target"] == 0.5 and d[1].meta["target"] == 2.0

    write_feature_npz(tmp_path / "m.npz", {"vision": v[:1] + v[2:]}, labels=np.eye(3, 6, dtype=np.float32))
    d = FeatureSequenceDataset(tmp_path / "m.npz")
    np.testing.assert_array_equal(d[1].meta["target"], np.eye(3, 6)[1])


def test_pickle_needing_file_rejected(tmp_path: Path) -> None:
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros((2, 3)), np.zeros((4, 3))
    np.savez(tmp_path / "p.npz", vision=ragged, vision_offsets=np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="pickle"):
        FeatureSequenceDataset(tmp_path / "p.npz")
    np.save(tmp_path / "obj.npy", ragged, allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        FeatureSequenceDataset(tmp_path / "obj.npy")


def _raw(tmp_path: Path, **arrays: np.ndarray) -> Path:
    np.savez(tmp_path / "raw.npz", **arrays)
    return tmp_path / "raw.npz"


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"v": np.zeros((5, 2)), "v_offsets": np.array([0, 3, 2, 5])}, "decreases"),
        ({"v": np.zeros((5, 2)), "v_offsets": np.array([1, 3, 5])}, r"\[0\] must be 0"),
        ({"v": np.zeros((5, 2)), "v_offsets": np.array([0, 3, 4])}, "has 5 frames"),
        ({"v": np.zeros((5, 2)), "v_offsets": np.array([0.0, 5.0])}, "integer"),
        ({"v": np.zeros((5, 2)), "v_offsets": np.array([0])}, "N \\+ 1"),
        ({"v": np.zeros(5), "v_offsets": np.array([0, 5])}, "2-D"),
        ({"v_offsets": np.array([0, 5])}, "missing"),
        ({"v": np.zeros((5, 2))}, "unexpected arrays"),
        ({"v": np.zeros((5, 2)), "v_offsets": np.array([0, 5]), "extra": np.zeros(1)}, "unexpected arrays"),
        ({"v": np.zeros((2, 2)), "v_offsets": np.array([0, 1, 2]), "a": np.zeros((2, 2)),
          "a_offsets": np.array([0, 2])}, "disagree"),
        ({"v": np.zeros((2, 2)), "v_offsets": np.array([0, 1, 2]), "labels": np.array([0, 5]),
          "label_names": np.array(["a", "b"])}, "must lie in"),
        ({"v": np.zeros((2, 2)), "v_offsets": np.array([0, 1, 2]), "labels": np.array([0, -2])}, "must lie in"),
        ({"v": np.zeros((2, 2)), "v_offsets": np.array([0, 1, 2]), "labels": np.array([0])}, "2 rows"),
        ({"v": np.zeros((2, 2)), "v_offsets": np.array([0, 1, 2]), "ids": np.array([1, 2])}, "unicode"),
        ({"v": np.zeros((2, 2)), "v_offsets": np.array([0, 1, 2]), "label_names": np.array(["a"])}, "without"),
        ({"v": np.zeros((2, 2)), "v_offsets": np.array([0, 1, 2]), "labels": np.array([0.5, 1.0]),
          "label_names": np.array(["a"])}, "regression"),
    ],
)
def test_malformed_files(tmp_path: Path, arrays: dict[str, np.ndarray], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FeatureSequenceDataset(_raw(tmp_path, **arrays))


def test_missing_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        FeatureSequenceDataset(tmp_path / "nope.npz")
    (tmp_path / "g.npz").write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(ValueError):
        FeatureSequenceDataset(tmp_path / "g.npz")
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(ValueError, match="single .npy"):
        FeatureSequenceDataset(tmp_path / "a.npy")


def test_writer_validation(tmp_path: Path) -> None:
    out = tmp_path / "w.npz"
    with pytest.raises(ValueError, match="empty"):
        write_feature_npz(out, {}, labels=None)
    with pytest.raises(ValueError, match="no items"):
        write_feature_npz(out, {"v": []}, labels=None)
    with pytest.raises(ValueError, match="disagree"):
        write_feature_npz(out, {"v": _seqs([1, 2], 2, 0), "a": _seqs([1], 2, 0)}, labels=None)
    with pytest.raises(ValueError, match="same D"):
        write_feature_npz(out, {"v": [np.zeros((1, 2)), np.zeros((1, 3))]}, labels=None)
    with pytest.raises(ValueError, match="same D"):
        write_feature_npz(out, {"v": [np.zeros(3)]}, labels=None)
    with pytest.raises(ValueError, match="invalid modality name"):
        write_feature_npz(out, {"labels": [np.zeros((1, 2))]}, labels=None)
    with pytest.raises(ValueError, match="invalid modality name"):
        write_feature_npz(out, {"v_offsets": [np.zeros((1, 2))]}, labels=None)
    with pytest.raises(ValueError, match="labels must"):
        write_feature_npz(out, {"v": [np.zeros((1, 2))]}, labels=[0, 1])
    with pytest.raises(ValueError, match="ids must"):
        write_feature_npz(out, {"v": [np.zeros((1, 2))]}, labels=None, ids=[3])
    with pytest.raises(ValueError, match="without labels"):
        write_feature_npz(out, {"v": [np.zeros((1, 2))]}, labels=None, label_names=["a"])
    write_feature_npz(out, {"v": [np.ones((1, 2))]}, labels=[0], compress=True)
    assert FeatureSequenceDataset(out).label_names == ["0"]
