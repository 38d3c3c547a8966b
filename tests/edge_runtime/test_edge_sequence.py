"""Feature sequences on the device side: naming, the numpy preprocessing contract, validation, the
bundle's sequence spec and the time axis of feeds (torch-free)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_runtime.modalities import is_sequence, ordered_modalities, sequence_modality, sequence_stream
from edge_runtime.schema import BundleError
from edge_runtime.sequence import check_sequence, pad_sequences, preprocess_sequences
from edge_runtime.spec import PreprocessSpec, SequenceSpec, sequence_spec
from edge_runtime.validate import InputError, check_feed, check_frame_feed

SPEC = SequenceSpec(dim=3, max_frames=10, patch=4, mean=(1.0, 0.0, -1.0), std=(2.0, 1.0, 0.5))


def test_names_and_order():
    assert sequence_modality("sensor") == "seq_sensor" and sequence_stream("seq_sensor") == "sensor"
    assert is_sequence("seq_a1") and not is_sequence("seq_") and not is_sequence("seq_1x") and not is_sequence("image")
    assert ordered_modalities(["seq_b", "audio", "seq_a", "image", "video"]) == ("image", "audio", "seq_a", "seq_b")
    with pytest.raises(ValueError):
        sequence_stream("audio")


def test_normalise_pad_and_mask_follow_the_contract():
    a = np.arange(15, dtype=np.float64).reshape(5, 3)
    b = np.ones((2, 3), dtype=np.float32)
    feed = preprocess_sequences([a, b], SPEC)
    frames, mask = feed["frames"], feed["frame_mask"]
    assert frames.dtype == np.float32 and mask.dtype == np.int64
    assert frames.shape == (2, 8, 3) and mask.shape == (2, 8)          # 5 frames → padded to a multiple of patch 4
    assert mask.tolist() == [[1] * 5 + [0] * 3, [1] * 2 + [0] * 6]
    want = (a - np.array(SPEC.mean)) / np.array(SPEC.std)
    np.testing.assert_allclose(frames[0, :5], want, rtol=1e-6)
    assert not frames[0, 5:].any() and not frames[1, 2:].any()


@pytest.mark.parametrize("bad, message", [
    (np.full((4, 3), np.nan, np.float32), "NaN or inf in 4"),
    (np.zeros((4, 2)), "2 channels, the model takes 3"),
    (np.zeros((11, 3)), "11 frames, the model takes at most 10"),
    (np.zeros((0, 3)), "no frame"),
    (np.zeros((2, 2, 3)), "must be (T, 3)"),
    ([[0.0, 1.0, 2.0]], "numpy array"),
    (np.zeros((4, 3), dtype=bool), "real numbers"),
])
def test_bad_sequences_are_refused_in_one_line(bad, message):
    with pytest.raises(InputError) as e:
        check_sequence(bad, SPEC)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_single_channel_stream_takes_a_vector():
    spec = SequenceSpec(dim=1, max_frames=8)
    assert check_sequence(np.zeros(5), spec).shape == (5, 1)


def test_empty_batch_is_refused():
    with pytest.raises(InputError):
        pad_sequences([], SPEC)


def test_spec_round_trip_and_the_strict_bundle_reader():
    spec = PreprocessSpec(sequences={"imu": SPEC})
    again = PreprocessSpec.from_dict(spec.to_dict())
    assert again.sequences["imu"] == SPEC
    prep = spec.to_dict()
    assert sequence_spec(prep, "imu") == SPEC
    for key, value in (("std", [1.0, 0.0, 1.0]), ("mean", [0.0, 0.0]), ("patch", 0), ("max_frames", 10 ** 6),
                       ("mean", [float("nan"), 0.0, 0.0])):
        broken = spec.to_dict()
        broken["sequences"]["imu"][key] = value
        with pytest.raises(BundleError):
            sequence_spec(broken, "imu")
    with pytest.raises(BundleError, match="no entry"):
        sequence_spec(prep, "eeg")


def test_feed_time_axes_must_agree_and_fit_the_tower():
    inputs = [{"name": "frames", "shape": ["batch", "time", 3], "dtype": "float32"},
              {"name": "frame_mask", "shape": ["batch", "time"], "dtype": "int64"}]
    ok = {"frames": np.zeros((2, 8, 3), np.float32), "frame_mask": np.ones((2, 8), np.int64)}
    check_feed(ok, inputs)
    with pytest.raises(InputError, match="time size"):
        check_feed({**ok, "frame_mask": np.ones((2, 4), np.int64)}, inputs)
    with pytest.raises(InputError, match="batch size"):
        check_feed({**ok, "frame_mask": np.ones((3, 8), np.int64)}, inputs)
    check_frame_feed(ok["frames"], ok["frame_mask"], SPEC)
    with pytest.raises(InputError, match="multiple of 4"):
        check_frame_feed(np.zeros((2, 6, 3), np.float32), np.ones((2, 6), np.int64), SPEC)
    with pytest.raises(InputError, match="at least one real frame"):
        check_frame_feed(ok["frames"], np.zeros((2, 8), np.int64), SPEC)
    with pytest.raises(InputError, match="only 0 and 1"):
        check_frame_feed(ok["frames"], np.full((2, 8), 2, np.int64), SPEC)


def test_the_module_is_numpy_only():
    source = (Path(__file__).resolve().parents[2] / "edge_runtime" / "sequence.py").read_text()
    assert "torch" not in source.replace("torch-free", "")
