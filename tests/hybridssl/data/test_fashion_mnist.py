import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from hybridssl.data.fashion_mnist import CLASS_NAMES, DEFAULT_ROOT, FashionMNIST, read_idx


def write_idx(path: Path, magic: int, array: np.ndarray, cut: int = 0, extra: bytes = b"") -> None:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes() + extra
    with gzip.open(path, "wb") as f:
        f.write(raw[: len(raw) - cut])


def make_split(root: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / f"{prefix}-images-idx3-ubyte.gz", 2051, images)
    write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", 2049, labels)


@pytest.fixture
def fake(tmp_path):
    rng = np.random.default_rng(0)
    train_x = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    train_y = np.array([0, 9, 1, 3, 9], np.uint8)
    test_x = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    test_y = np.array([2, 8, 5], np.uint8)
    make_split(tmp_path, "train", train_x, train_y)
    make_split(tmp_path, "t10k", test_x, test_y)
    return tmp_path, train_x, train_y, test_x, test_y


def reference_idx(path: Path) -> np.ndarray:
    """Slow reference: parse the header field by field and copy pixels one by one."""
    raw = gzip.open(path).read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim)]
    flat = np.zeros(int(np.prod(dims)), np.uint8)
    for j in range(flat.size):
        flat[j] = raw[4 + 4 * ndim + j]
    return flat.reshape(dims)


def test_read_idx_matches_reference(fake):
    root, train_x, *_ = fake
    p = root / "train-images-idx3-ubyte.gz"
    got = read_idx(p, 2051, 3)
    assert got.shape == (5, 28, 28)
    np.testing.assert_array_equal(got, reference_idx(p))
    np.testing.assert_array_equal(got, train_x)


def test_items_shapes_labels(fake):
    root, train_x, train_y, test_x, test_y = fake
    ds = FashionMNIST(root, split="train")
    assert len(ds) == 5 and ds.modalities == ("image",) and ds.label_names == CLASS_NAMES
    assert ds.labels() == train_y.tolist()
    s = ds[1]
    assert s.image.shape == (28, 28, 3) and s.image.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(s.image[:, :, c], train_x[1])
    assert s.label == 9 and s.caption is None and s.meta["label_name"] == "Ankle boot"
    assert s.uid == "fashion-mnist/train/00001"
    assert list(ds.captions()) == []
    test = FashionMNIST(root, split="test")
    assert len(test) == 3 and test.labels() == test_y.tolist()
    np.testing.assert_array_equal(test[-1].image[:, :, 0], test_x[2])


def test_items_do_not_alias_the_cache(fake):
    root, train_x, *_ = fake
    ds = FashionMNIST(root)
    ds[0].image[:] = 0
    np.testing.assert_array_equal(ds[0].image[:, :, 0], train_x[0])


def test_captions_and_prompts(fake):
    root, *_ = fake
    ds = FashionMNIST(root, split="train", captions=True)
    assert ds.modalities == ("image", "text")
    assert ds[2].caption == "a photo of a trouser"
    assert ds.caption_at(1) == "a photo of an ankle boot"
    assert ds.caption_at(0) == "a photo of a t-shirt or top"
    assert list(ds.captions())[:3] == ["a photo of a t-shirt or top", "a photo of an ankle boot", "a photo of a trouser"]
    prompts = ds.class_prompts()
    assert list(prompts) == CLASS_NAMES  # label order: zero-shot relies on it
    assert prompts["Trouser"] == ["a photo of a trouser", "a trouser", "a picture of a trouser"]
    assert prompts["Ankle boot"][1] == "an ankle boot"


def test_out_of_range_label_is_skipped(tmp_path):
    images = np.zeros((3, 28, 28), np.uint8)
    make_split(tmp_path, "train", images, np.array([1, 12, 4], np.uint8))
    ds = FashionMNIST(tmp_path)
    assert len(ds) == 2 and ds.labels() == [1, 4]
    assert ds.load_report.skipped["unknown_label"] == 1
    assert ds[1].uid == "fashion-mnist/train/00002"


def test_bad_magic_names_the_file(fake):
    root, train_x, *_ = fake
    write_idx(root / "train-images-idx3-ubyte.gz", 2049, train_x)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: bad IDX magic number 2049 \(expected 2051\)"):
        FashionMNIST(root)
    write_idx(root / "train-labels-idx1-ubyte.gz", 1234, np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz: bad IDX magic number 1234"):
        read_idx(root / "train-labels-idx1-ubyte.gz", 2049, 1)


@pytest.mark.parametrize("cut, extra, what", [(10, b"", "truncated"), (0, b"xx", "trailing bytes"), (0, b"", None)])
def test_size_is_validated(tmp_path, cut, extra, what):
    p = tmp_path / "x.gz"
    write_idx(p, 2051, np.zeros((2, 28, 28), np.uint8), cut=cut, extra=extra)
    if what is None:
        assert read_idx(p, 2051, 3).shape == (2, 28, 28)
    else:
        with pytest.raises(ValueError, match=f"x.gz: {what}"):
            read_idx(p, 2051, 3)


def test_header_shorter_than_16_bytes(tmp_path):
    p = tmp_path / "short.gz"
    p.write_bytes(gzip.compress(struct.pack(">II", 2051, 2)))
    with pytest.raises(ValueError, match="short.gz: truncated IDX file"):
        read_idx(p, 2051, 3)


def test_truncated_gzip_stream_names_the_file(fake):
    root, *_ = fake
    p = root / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-40])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz: not a complete gzip file"):
        FashionMNIST(root)
    p.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        FashionMNIST(root)


def test_count_mismatch(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", 2051, np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", 2049, np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="3 images but .* 2 labels"):
        FashionMNIST(tmp_path)


def test_missing_root_and_files(tmp_path, fake):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*bash scripts/install_datasets\.sh"):
        FashionMNIST(tmp_path / "nowhere")
    root, *_ = fake
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz.*install_datasets"):
        FashionMNIST(root, split="test")


def test_bad_split_and_index(fake):
    root, *_ = fake
    with pytest.raises(ValueError, match="split"):
        FashionMNIST(root, split="val")
    with pytest.raises(IndexError):
        FashionMNIST(root)[5]


@pytest.mark.skipif(not Path(DEFAULT_ROOT).is_dir(), reason=f"{DEFAULT_ROOT} absent (bash scripts/install_datasets.sh)")
def test_real_fashion_mnist():
    train, test = FashionMNIST(split="train"), FashionMNIST(split="test")
    assert (len(train), len(test)) == (60000, 10000)
    assert train.load_report.total_skipped == 0 and test.load_report.total_skipped == 0
    assert np.bincount(train.labels(), minlength=10).tolist() == [6000] * 10
    assert np.bincount(test.labels(), minlength=10).tolist() == [1000] * 10
    s = test[0]
    assert s.image.shape == (28, 28, 3) and s.label == 9  # the first test item is an ankle boot
