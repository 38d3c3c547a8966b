"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017, "Fashion-MNIST: a Novel Image Dataset for Benchmarking
Machine Learning Algorithms", arXiv:1708.07747) from the Debian package ``dataset-fashion-mnist``.

Files (gzipped IDX, all integers big-endian ``uint32``)::

    train-images-idx3-ubyte.gz   magic 2051, N, rows, cols, then N·rows·cols uint8 pixels  (offset 16)
    train-labels-idx1-ubyte.gz   magic 2049, N, then N uint8 labels                          (offset 8)
    t10k-images-idx3-ubyte.gz / t10k-labels-idx1-ubyte.gz   the same for the test split

A file of size != header + payload (truncated, or with trailing bytes), a broken gzip stream, a bad
magic number or image / label counts that differ is a ValueError naming the file. The arrays are
decoded once at construction (60k × 784 bytes ≈ 47 MB); ``__getitem__`` only slices them.

Sample: ``image`` = the ``(rows, cols)`` grayscale replicated to ``(rows, cols, 3)`` ``uint8``;
``caption`` = ``None`` (image-only SSL) or, with ``captions=True``, ``"a photo of a <class>"``;
``label`` = the class index into :data:`CLASS_NAMES`. A label byte outside ``[0, 10)`` leaves the item
out, counted as ``unknown_label`` in ``load_report``.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from hybridssl.data.base import MultimodalDataset
from hybridssl.data.sample import Sample

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
INSTALL_HINT = "install it with: bash scripts/install_datasets.sh"
IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension
CLASS_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
PROMPT_TEMPLATES = ("a photo of {}", "{}", "a picture of {}")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def with_article(name: str) -> str:
    """``"Trouser"`` → ``"a trouser"``, ``"Ankle boot"`` → ``"an ankle boot"``, ``"T-shirt/top"`` → ``"a t-shirt or top"``."""
    noun = name.lower().replace("/", " or ")
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def _gunzip(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; EOFError = truncated stream
        raise ValueError(f"{path}: not a complete gzip file ({e.__class__.__name__}: {e})") from None


def read_idx(path: str | Path, magic: int, ndim: int) -> np.ndarray:
    """A gzipped IDX ``uint8`` array of ``ndim`` dimensions, e.g. ``(N, rows, cols)`` for images.

    The header is ``magic`` then ``ndim`` sizes (big-endian ``uint32``); data starts at ``4 + 4·ndim``.
    """
    p = Path(path)
    raw = _gunzip(p)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{p}: truncated IDX file ({len(raw)} bytes, the header alone is {header})")
    got = int.from_bytes(raw[:4], "big")
    if got != magic:
        raise ValueError(f"{p}: bad IDX magic number {got} (expected {magic})")
    dims = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "trailing bytes in"
        raise ValueError(f"{p}: {what} IDX file: {len(raw)} bytes, dims {dims} need {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


class FashionMNIST(MultimodalDataset):
    """The official Fashion-MNIST ``train`` (60,000) or ``test`` (10,000) split (see the module docstring)."""

    label_names = list(CLASS_NAMES)

    def __init__(self, root: str | Path = DEFAULT_ROOT, split: str = "train", captions: bool = False) -> None:
        super().__init__()
        if split not in FILES:
            raise ValueError(f"Fashion-MNIST split must be one of {sorted(FILES)}, got {split!r}")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"Fashion-MNIST not found at {self.root}; {INSTALL_HINT}")
        img_path, lab_path = (self.root / f for f in FILES[split])
        for p in (img_path, lab_path):
            if not p.is_file():
                raise FileNotFoundError(f"Fashion-MNIST file not found: {p}; {INSTALL_HINT}")
        self.split = split
        self.name = f"fashion-mnist-{split}"
        self.with_captions = bool(captions)
        self.modalities = ("image", "text") if captions else ("image",)
        self.label_names = list(CLASS_NAMES)

        images = read_idx(img_path, IMAGES_MAGIC, 3)  # (N, rows, cols) uint8
        labels = read_idx(lab_path, LABELS_MAGIC, 1)  # (N,) uint8
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{img_path} has {images.shape[0]} images but {lab_path} has {labels.shape[0]} labels")
        if min(images.shape[1:]) < 1:
            raise ValueError(f"{img_path}: empty images of size {images.shape[1:]}")
        keep = labels < len(CLASS_NAMES)  # (N,) bool
        for k in np.flatnonzero(~keep):
            self.load_report.skip(self._uid(int(k)), "unknown_label", f"label byte {int(labels[k])} not in [0, 10)")
        self._index = np.flatnonzero(keep)  # (M,) positions in the files
        self._images = images  # (N, rows, cols)
        self._labels = labels.astype(np.int64)  # (N,)
        self._source = str(img_path)

    def _uid(self, k: int) -> str:
        return f"fashion-mnist/{self.split}/{k:05d}"

    def __len__(self) -> int:
        return int(self._index.shape[0])

    def label_at(self, i: int) -> int | None:
        return int(self._labels[self._index[self._check_index(i)]])

    def caption_at(self, i: int) -> str | None:
        if not self.with_captions:
            return None
        label = self.label_at(i)
        return None if label is None else f"a photo of {with_article(CLASS_NAMES[label])}"

    def class_prompts(self) -> dict[str, list[str]]:
        """Zero-shot prompts per class, in label order: ``{name: ["a photo of a <name>", ...]}``."""
        return {name: [t.format(with_article(name)) for t in PROMPT_TEMPLATES] for name in CLASS_NAMES}

    def __getitem__(self, i: int) -> Sample:
        i = self._check_index(i)
        k = int(self._index[i])
        grey = self._images[k]  # (rows, cols)
        image = np.repeat(grey[:, :, None], 3, axis=2)  # (rows, cols, 3) uint8, a fresh array
        label = int(self._labels[k])
        meta: dict[str, Any] = {
            "label_name": CLASS_NAMES[label], "split": self.split, "index": k, "source": self._source,
        }
        return Sample(uid=self._uid(k), image=image, caption=self.caption_at(i), label=label, meta=meta)
