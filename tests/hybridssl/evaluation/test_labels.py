from __future__ import annotations

import json

import numpy as np
import pytest

from hybridssl.evaluation.labels import label_fraction_split, load_splits, save_splits


def _labels(sizes: list[int], n_unlabelled: int = 0, seed: int = 123) -> np.ndarray:
    y = np.concatenate([np.full(n, c) for c, n in enumerate(sizes)] + [np.full(n_unlabelled, -1)])
    return np.random.default_rng(seed).permutation(y).astype(np.int64)


def _per_class(labels: np.ndarray, idx: np.ndarray, n_classes: int) -> list[int]:
    return np.bincount(labels[idx], minlength=n_classes).tolist()


Y = _labels([100, 50, 30], n_unlabelled=20)


def test_structure_disjoint_sorted_no_unlabelled():
    s = label_fraction_split(Y, 0.1, seed=0)
    assert set(s) == {"train", "val", "missing_classes"}
    for key in ("train", "val"):
        idx = s[key]
        assert idx.dtype == np.int64
        assert np.all(np.diff(idx) > 0)                      # sorted, no duplicates
        assert np.all(Y[idx] >= 0)                           # −1 never selected
    assert np.intersect1d(s["train"], s["val"]).size == 0
    assert s["missing_classes"].dtype == np.int64 and s["missing_classes"].size == 0


def test_stratified_counts_by_hand():
    s = label_fraction_split(Y, 0.1, seed=0)
    # val: round(0.1 · n_c) = 10, 5, 3 → rest 90, 45, 27 (n_rest = 162)
    assert _per_class(Y, s["val"], 3) == [10, 5, 3]
    # T = round(16.2) = 16; quotas 9.0, 4.5, 2.7 → floors 9, 4, 2 (=15); one left → largest
    # remainder is class 2 (0.7 > 0.5 > 0.0) → 9, 4, 3
    assert _per_class(Y, s["train"], 3) == [9, 4, 3]


def test_largest_remainder_tie_goes_to_smaller_class():
    s = label_fraction_split(Y, 0.5, seed=0)
    # rest 90, 45, 27; quotas 45, 22.5, 13.5; T = 81; floors 80; tie 0.5 = 0.5 → class 1
    assert _per_class(Y, s["train"], 3) == [45, 23, 13]


def test_deterministic_and_seed_dependent():
    a, b = label_fraction_split(Y, 0.1, seed=7), label_fraction_split(Y, 0.1, seed=7)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    c = label_fraction_split(Y, 0.1, seed=8)
    assert not np.array_equal(a["train"], c["train"])
    assert not np.array_equal(a["val"], c["val"])


def test_val_shared_across_fractions_and_train_nested():
    splits = [label_fraction_split(Y, f, seed=3) for f in (0.1, 0.5, 1.0)]
    for s in splits[1:]:
        np.testing.assert_array_equal(s["val"], splits[0]["val"])
    assert np.all(np.isin(splits[0]["train"], splits[1]["train"]))
    assert np.all(np.isin(splits[1]["train"], splits[2]["train"]))
    # fraction 1: train ∪ val is the whole labelled pool
    full = np.union1d(splits[2]["train"], splits[2]["val"])
    np.testing.assert_array_equal(full, np.flatnonzero(Y >= 0))


def test_tiny_fraction_reports_missing_classes():
    s = label_fraction_split(Y, 0.01, seed=0)
    # n_rest = 162; 1.62 < 3 classes; T = 2; quotas 0.9, 0.45, 0.27 → classes 0 and 1 get one each
    assert _per_class(Y, s["train"], 3) == [1, 1, 0]
    np.testing.assert_array_equal(s["missing_classes"], [2])
    assert np.intersect1d(s["train"], s["val"]).size == 0


def test_at_least_one_per_class_when_budget_allows():
    y = _labels([200, 3, 3])
    s = label_fraction_split(y, 0.05, seed=0, val_fraction=0.0)
    # no val; n_rest = 206; 0.05 · 206 = 10.3 >= 3; T = 10; quotas 10, 0.15, 0.15 → 10, 0, 0;
    # classes 1 and 2 each take one from class 0 → 8, 1, 1
    assert s["val"].size == 0
    assert _per_class(y, s["train"], 3) == [8, 1, 1]
    assert s["missing_classes"].size == 0


def test_val_min_one_and_singletons():
    y = _labels([1, 2, 40])
    s = label_fraction_split(y, 1.0, seed=0, val_fraction=0.1)
    # class 0 (1 item): no val; class 1 (2 items): round(0.2)=0 → at least 1; class 2: 4
    assert _per_class(y, s["val"], 3) == [0, 1, 4]
    assert _per_class(y, s["train"], 3) == [1, 1, 36]


def test_total_matches_rounded_fraction_on_random_pools():
    rng = np.random.default_rng(0)
    for trial in range(20):
        sizes = rng.integers(1, 60, size=rng.integers(2, 8)).tolist()
        y = _labels(sizes, n_unlabelled=5, seed=trial)
        f = float(rng.choice([0.01, 0.05, 0.1, 0.37, 1.0]))
        s = label_fraction_split(y, f, seed=trial)
        n_rest = int((y >= 0).sum()) - s["val"].size
        assert s["train"].size == int(np.floor(f * n_rest + 0.5))
        counts = np.bincount(y[s["train"]], minlength=len(sizes))
        np.testing.assert_array_equal(s["missing_classes"], np.flatnonzero(counts == 0))
        if f * n_rest >= len(sizes):
            assert s["missing_classes"].size == 0


@pytest.mark.parametrize(
    "labels, fraction, seed, val_fraction",
    [
        (np.zeros((2, 3), dtype=np.int64), 0.1, 0, 0.1),
        (np.array([0.0, 1.0]), 0.1, 0, 0.1),
        (np.array([0, -2, 1]), 0.1, 0, 0.1),
        (np.array([-1, -1]), 0.1, 0, 0.1),
        (np.array([], dtype=np.int64), 0.1, 0, 0.1),
        (Y, 0.0, 0, 0.1),
        (Y, 1.5, 0, 0.1),
        (Y, float("nan"), 0, 0.1),
        (Y, 0.1, 0, 1.0),
        (Y, 0.1, -1, 0.1),
    ],
)
def test_bad_input_raises(labels, fraction, seed, val_fraction):
    with pytest.raises(ValueError):
        label_fraction_split(labels, fraction, seed, val_fraction)


def test_save_load_round_trip(tmp_path):
    splits = {f"{f}/seed{s}": label_fraction_split(Y, f, seed=s) for f in (0.01, 0.1) for s in (0, 1)}
    path = tmp_path / "splits.json"
    save_splits(path, splits)
    back = load_splits(path)
    assert set(back) == set(splits)
    for name, split in splits.items():
        assert set(back[name]) == set(split)
        for key, arr in split.items():
            assert back[name][key].dtype == np.int64
            np.testing.assert_array_equal(back[name][key], arr)


def test_save_load_reject_bad_content(tmp_path):
    with pytest.raises(ValueError):
        save_splits(tmp_path / "a.json", {"x": {"train": np.array([0.5, 1.5])}})
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps({"x": {"train": [1, "2"]}}))
    with pytest.raises(ValueError):
        load_splits(bad)
