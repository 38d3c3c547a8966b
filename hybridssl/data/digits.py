"""The scikit-learn handwritten digits (the UCI "Optical Recognition of Handwritten Digits" test set,
Alpaydin & Kaynak, 1998): 1,797 real 8×8 images with 17 grey levels (0..16), 10 classes.

``sklearn.datasets.load_digits`` reads the copy that ships inside scikit-learn (no download); it is
imported lazily, so scikit-learn is an optional dependency of this one loader.

Pixels: ``v ∈ [0, 16]`` → ``round(v · 255 / 16)`` ``uint8``; upscaled by nearest neighbour to
``(size, size)`` with source row/column ``⌊r · 8 / size⌋``, replicated to ``(size, size, 3)``.

Split (stratified, fixed by ``seed``): ``rng = np.random.default_rng(seed)``; for each class ``c`` in
increasing order, its indices are permuted by ``rng.permutation`` and the first
``round(n_c · test_fraction)`` go to ``test``, the rest to ``train``; both lists are sorted.
``split="all"`` keeps every image. ``indices`` holds the positions (in ``load_digits`` order) of the items.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hybridssl.data.base import MultimodalDataset
from hybridssl.data.sample import Sample

SPLITS = ("train", "test", "all")
SOURCE_SIDE = 8
MAX_LEVEL = 16.0


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 8, 8) float64 in [0, 16], targets (N,) int)`` from scikit-learn."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("SklearnDigits needs scikit-learn: pip install scikit-learn") from None
    bunch = load_digits()
    return np.asarray(bunch.images), np.asarray(bunch.target, dtype=np.int64)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train indices, test indices)``, both sorted, per the rule in the module docstring."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)  # (n_c,)
        perm = idx[rng.permutation(idx.shape[0])]
        n_test = int(round(idx.shape[0] * test_fraction))
        test.append(perm[:n_test])
        train.append(perm[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def to_uint8_rgb(image: np.ndarray, size: int) -> np.ndarray:
    """An ``(8, 8)`` image in ``[0, 16]`` → ``(size, size, 3)`` ``uint8`` (nearest-neighbour upscale)."""
    src = np.clip(np.rint(np.asarray(image, dtype=np.float64) * (255.0 / MAX_LEVEL)), 0, 255).astype(np.uint8)
    h, w = src.shape
    rows = (np.arange(size) * h) // size  # (size,)
    cols = (np.arange(size) * w) // size  # (size,)
    big = src[rows[:, None], cols[None, :]]  # (size, size)
    return np.repeat(big[:, :, None], 3, axis=2)  # (size, size, 3)


class SklearnDigits(MultimodalDataset):
    """scikit-learn's 8×8 digits as ``(size, size, 3)`` images with the digit as label (module docstring)."""

    modalities = ("image",)
    label_names = [str(d) for d in range(10)]

    def __init__(self, split: str = "train", seed: int = 0, test_fraction: float = 0.2, size: int = 32) -> None:
        super().__init__()
        if split not in SPLITS:
            raise ValueError(f"digits split must be one of {SPLITS}, got {split!r}")
        if size < SOURCE_SIDE:
            raise ValueError(f"size must be >= {SOURCE_SIDE} (the source is 8x8), got {size}")
        images, labels = _load_digits()  # (N, 8, 8), (N,)
        train, test = stratified_split(labels, test_fraction, seed)
        if split == "all":
            self.indices = np.arange(labels.shape[0])
        else:
            self.indices = train if split == "train" else test
        if self.indices.shape[0] == 0:
            raise ValueError(f"digits split {split!r} is empty with test_fraction={test_fraction}")
        self.split, self.seed, self.test_fraction, self.size = split, seed, test_fraction, size
        self.name = f"digits-{split}"
        self.modalities = ("image",)
        self.label_names = [str(d) for d in range(10)]
        self._images = images
        self._labels = labels

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def label_at(self, i: int) -> int | None:
        return int(self._labels[self.indices[self._check_index(i)]])

    def caption_at(self, i: int) -> str | None:
        self._check_index(i)
        return None

    def __getitem__(self, i: int) -> Sample:
        k = int(self.indices[self._check_index(i)])
        label = int(self._labels[k])
        meta: dict[str, Any] = {"label_name": str(label), "split": self.split, "index": k}
        return Sample(uid=f"digits/{k:04d}", image=to_uint8_rgb(self._images[k], self.size), label=label, meta=meta)
