"""Evaluation figures: PCA against an eigen-decomposition reference, valid PNGs, frame colours."""

import numpy as np
import pytest
from PIL import Image

from hybridssl.app.plots import (
    CORRECT,
    WRONG,
    Panel,
    pca_2d,
    plot_fraction_curves,
    plot_projection,
    plot_retrieval_grid,
)


def _reference_pca(x):
    """Eigenvectors of the covariance matrix, loops for the centring and the projection."""
    n, d = x.shape
    mean = [sum(x[i, j] for i in range(n)) / n for j in range(d)]
    xc = np.array([[x[i, j] - mean[j] for j in range(d)] for i in range(n)])
    cov = xc.T @ xc / (n - 1)
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1][:2]
    out = np.zeros((n, 2))
    for c, k in enumerate(order):
        v = vecs[:, k]
        v = v * np.sign(v[np.argmax(np.abs(v))])  # the documented sign convention
        for i in range(n):
            out[i, c] = sum(xc[i, j] * v[j] for j in range(d))
    return out


def _png(path):
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
        return np.asarray(im.convert("RGB"))


def test_pca_matches_the_covariance_eigenvectors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 5)) @ np.diag([5.0, 3.0, 1.0, 0.5, 0.1]) + 2.0
    y = pca_2d(x)
    np.testing.assert_allclose(y, _reference_pca(x), atol=1e-9)
    assert abs(np.corrcoef(y.T)[0, 1]) < 1e-9 and y[:, 0].var() >= y[:, 1].var()


def test_pca_edge_cases():
    y = pca_2d(np.array([[1.0], [3.0], [2.0]]))
    np.testing.assert_allclose(y, [[-1.0, 0.0], [1.0, 0.0], [0.0, 0.0]], atol=1e-12)
    with pytest.raises(ValueError, match="N >= 2"):
        pca_2d(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="N >= 2"):
        pca_2d(np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        pca_2d(np.array([[0.0, 1.0], [np.nan, 0.0]]))


def test_fraction_curves_png(tmp_path):
    summary = lambda m, s: {"mean": m, "std": s}  # noqa: E731
    protocols = {
        "linear_probe": {"0.01": {"accuracy": summary(20, 3), "macro_f1": summary(15, 2)},
                         "1": {"accuracy": summary(60, 1), "macro_f1": summary(55, 1)}},
        "knn": {"0.01": {"accuracy": None, "macro_f1": None}, "1": {"accuracy": summary(50, 2), "macro_f1": summary(45, 2)}},
    }
    path = plot_fraction_curves(protocols, tmp_path / "sub" / "f.png", chance=12.5)
    _png(path)
    with pytest.raises(ValueError, match="no protocol"):
        plot_fraction_curves({}, tmp_path / "g.png")


def test_projection_png(tmp_path):
    rng = np.random.default_rng(1)
    emb = {"image": rng.standard_normal((40, 8)), "text": rng.standard_normal((30, 8))}
    labels = {"image": rng.integers(0, 3, 40), "text": np.full(30, -1)}
    _png(plot_projection(emb, labels, ["a", "b", "c"], tmp_path / "p.png", max_points=50))
    with pytest.raises(ValueError, match="no embeddings"):
        plot_projection({"image": np.zeros((0, 8))}, {"image": np.zeros(0)}, None, tmp_path / "q.png")


def _has_colour(img, hex_colour, tol=30):
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return bool(np.any(np.all(np.abs(img.astype(int) - rgb) <= tol, axis=-1)))


def test_retrieval_grid_frames_correct_green_and_wrong_red(tmp_path):
    image = np.full((16, 16, 3), 128, np.uint8)
    spec = np.random.default_rng(0).standard_normal((8, 12))
    rows = [[Panel("image", image, "query"), Panel("text", "a red circle", "#1", True),
             Panel("spectrogram", spec, "#2", False), Panel("none", None, "#3", False)]]
    img = _png(plot_retrieval_grid(rows, tmp_path / "r.png"))
    assert _has_colour(img, CORRECT) and _has_colour(img, WRONG)
    wrong_only = [[Panel("text", "query"), Panel("text", "x", "#1", False)], [Panel("image", image, "q")]]
    img = _png(plot_retrieval_grid(wrong_only, tmp_path / "w.png"))
    assert _has_colour(img, WRONG) and not _has_colour(img, CORRECT)
    with pytest.raises(ValueError, match="no rows"):
        plot_retrieval_grid([], tmp_path / "e.png")
