import sys

import numpy as np
import pytest

from hybridssl.data.digits import SklearnDigits, stratified_split, to_uint8_rgb


def reference_upscale(image: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size, size, 3), np.uint8)
    h, w = image.shape
    for r in range(size):
        for c in range(size):
            v = int(round(float(image[r * h // size, c * w // size]) * 255 / 16))
            out[r, c, :] = v
    return out


@pytest.mark.parametrize("size", [8, 32, 20])
def test_upscale_matches_reference(size):
    img = np.random.default_rng(size).integers(0, 17, size=(8, 8)).astype(np.float64)
    np.testing.assert_array_equal(to_uint8_rgb(img, size), reference_upscale(img, size))
    if size == 32:  # nearest neighbour ×4 = every pixel a 4×4 block
        np.testing.assert_array_equal(to_uint8_rgb(img, 32)[::4, ::4, 0], np.rint(img * 255 / 16).astype(np.uint8))


def test_stratified_split_rule():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 3)
    train, test = stratified_split(labels, 0.2, seed=3)
    assert np.intersect1d(train, test).size == 0 and np.union1d(train, test).tolist() == list(range(18))
    assert [int((labels[test] == c).sum()) for c in range(3)] == [2, 1, 1]  # round(n_c · 0.2)
    again = stratified_split(labels, 0.2, seed=3)
    np.testing.assert_array_equal(again[1], test)
    assert any(not np.array_equal(stratified_split(labels, 0.2, seed=s)[1], test) for s in range(4, 8))
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="test_fraction"):
            stratified_split(labels, bad, seed=0)


def test_real_digits_split():
    pytest.importorskip("sklearn")
    train, test = SklearnDigits("train", seed=0), SklearnDigits("test", seed=0)
    assert len(train) + len(test) == 1797 and abs(len(test) - 0.2 * 1797) < 10
    assert np.intersect1d(train.indices, test.indices).size == 0
    assert len(SklearnDigits("all")) == 1797
    counts_all = np.bincount(SklearnDigits("all").labels(), minlength=10)
    counts_test = np.bincount(test.labels(), minlength=10)
    np.testing.assert_array_equal(counts_test, np.rint(counts_all * 0.2).astype(int))
    s = train[0]
    assert s.image.shape == (32, 32, 3) and s.image.dtype == np.uint8 and s.caption is None
    assert s.label == train.label_at(0) and 0 <= s.label <= 9 and train.label_names == [str(d) for d in range(10)]
    from sklearn.datasets import load_digits

    k = int(train.indices[0])
    np.testing.assert_array_equal(s.image, reference_upscale(load_digits().images[k], 32))
    np.testing.assert_array_equal(SklearnDigits("test", seed=0).indices, test.indices)
    assert not np.array_equal(SklearnDigits("test", seed=1).indices, test.indices)
    assert train.modalities == ("image",) and list(train.captions()) == []


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        SklearnDigits("val")
    with pytest.raises(ValueError, match="size"):
        SklearnDigits("train", size=4)


def test_import_error_without_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        SklearnDigits("train")
