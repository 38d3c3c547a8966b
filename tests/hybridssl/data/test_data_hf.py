"""``hf:PATH``: a Hugging Face dataset saved with save_to_disk, a DatasetDict, a Parquet folder;
column mapping, media cells as bytes / paths / arrays, and the same bad-item accounting as files."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from hybridssl.data.hf import parse_hf_spec
from hybridssl.data.open import open_dataset
from hybridssl.data.sample import BadItem

datasets = pytest.importorskip("datasets")


def _png(value: int, size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _flac(freq: float, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, 0.3 * np.sin(2 * np.pi * freq * np.arange(rate // 4) / rate).astype(np.float32), rate, format="FLAC")
    return buf.getvalue()


@pytest.fixture()
def pairs():
    """Six rows: good, good, corrupt image bytes, empty caption beside an image, nothing at all, good."""
    media = {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}
    features = datasets.Features({"img": datasets.Image(), "text": datasets.Value("string"),
                                  "sound": media, "y": datasets.ClassLabel(names=["cat", "dog"])})
    rows = {"img": [{"bytes": _png(10), "path": None}, {"bytes": _png(200), "path": None},
                    {"bytes": b"not an image", "path": None}, {"bytes": _png(90), "path": None}, None,
                    {"bytes": _png(30), "path": None}],
            "text": ["a cat", "a dog", "broken", "   ", None, "another cat"],
            "sound": [{"bytes": _flac(440), "path": None}, {"bytes": _flac(660), "path": None}, None, None, None,
                      {"bytes": _flac(220), "path": None}],
            "y": [0, 1, 0, 1, 0, 0]}
    # an Audio column as datasets stores it (datasets 4+ encodes audio only through torchcodec: cast instead)
    return datasets.Dataset.from_dict(rows, features=features).cast_column("sound", datasets.Audio(decode=False))


def test_a_saved_dataset_with_mapped_columns(pairs, tmp_path):
    pairs.save_to_disk(str(tmp_path / "saved"))
    ds = open_dataset(f"hf:{tmp_path / 'saved'},image=img,caption=text,audio=sound,label=y")
    assert ds.modalities == ("image", "text", "audio") and ds.label_names == ["cat", "dog"]
    assert len(ds) == 5 and ds.load_report.skipped == {"no_modality": 1}
    assert ds.load_report.repaired == {"empty_caption_dropped": 1}
    s = ds[0]
    assert s.image.shape == (8, 8, 3) and int(s.image[0, 0, 0]) == 10 and s.caption == "a cat" and s.label == 0
    assert s.sample_rate == 8000 and s.audio.shape == (2000,) and s.meta["label_name"] == "cat"
    with pytest.raises(BadItem, match="unreadable_image"):
        ds[2]                                                   # corrupt bytes: refused, like a corrupt file
    assert ds[3].caption is None and ds[3].image is not None
    assert list(ds.captions()) == ["a cat", "a dog", "broken", "another cat"] and ds.labels()[:2] == [0, 1]


def test_a_dataset_dict_and_a_parquet_folder_with_default_columns(pairs, tmp_path):
    renamed = pairs.rename_columns({"img": "image", "text": "caption", "sound": "audio", "y": "label"})
    datasets.DatasetDict({"train": renamed, "test": renamed.select([0, 1])}).save_to_disk(str(tmp_path / "dict"))
    assert len(open_dataset(f"hf:{tmp_path / 'dict'}")) == 5                      # "train" by default
    assert len(open_dataset(f"hf:{tmp_path / 'dict'},split=test")) == 2
    with pytest.raises(ValueError, match="splits"):
        open_dataset(f"hf:{tmp_path / 'dict'},split=val")
    (tmp_path / "pq").mkdir()
    renamed.select([0, 1, 2]).to_parquet(str(tmp_path / "pq" / "part-0.parquet"))
    renamed.select([3, 4, 5]).to_parquet(str(tmp_path / "pq" / "part-1.parquet"))
    ds = open_dataset(f"hf:{tmp_path / 'pq'},cache_dir={tmp_path / 'cache'}")
    assert len(ds) == 5 and ds.label_names == ["cat", "dog"] and ds[4].caption == "another cat"


def test_paths_in_cells_stay_inside_the_folder(tmp_path):
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    (root / "img" / "a.png").write_bytes(_png(50))
    (tmp_path / "secret.png").write_bytes(_png(1))
    table = datasets.Dataset.from_dict({"image": ["img/a.png", "../secret.png", "img/missing.png"],
                                        "caption": ["a", "b", "c"], "label": ["x", "y", "x"]})
    table.to_parquet(str(root / "rows.parquet"))
    ds = open_dataset(f"hf:{root},cache_dir={tmp_path / 'cache'}")
    assert int(ds[0].image[0, 0, 0]) == 50 and ds.label_names == ["x", "y"]
    with pytest.raises(BadItem, match="outside_root"):
        ds[1]
    with pytest.raises(BadItem, match="missing_file"):
        ds[2]
    from hybridssl.data.hf import HFDataset

    assert int(HFDataset(root, allow_outside_paths=True, cache_dir=str(tmp_path / "cache"))[1].image[0, 0, 0]) == 1


def test_clear_errors(pairs, tmp_path):
    pairs.save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(ValueError, match="no column 'picture' \\(for image=\\)"):
        open_dataset(f"hf:{tmp_path / 'saved'},image=picture")
    pairs.select_columns(["sound", "y"]).save_to_disk(str(tmp_path / "no-defaults"))
    with pytest.raises(ValueError, match="no image, caption or audio column"):
        open_dataset(f"hf:{tmp_path / 'no-defaults'}")                            # "sound" is not a default name
    assert open_dataset(f"hf:{tmp_path / 'no-defaults'},audio=sound").modalities == ("audio",)
    with pytest.raises(FileNotFoundError, match="not found"):
        open_dataset(f"hf:{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="parquet"):
        open_dataset(f"hf:{tmp_path / 'empty'}")
    with pytest.raises(ValueError, match="is not one of"):
        parse_hf_spec("data,image=img,colour=red")
    assert parse_hf_spec("my,data/x,image=img,caption=t") == ("my,data/x", {"image": "img", "caption": "t"})


def test_hssl_train_reads_hf_data(tmp_path):
    from hybridssl.app.train import train_run
    from hybridssl.config import load_config

    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
    rows = {"image": [], "caption": [], "label": []}
    for i in range(24):
        name = list(colours)[i % 3]
        buf = io.BytesIO()
        Image.fromarray(np.full((16, 16, 3), colours[name], np.uint8)).save(buf, "PNG")
        rows["image"].append({"bytes": buf.getvalue(), "path": None})
        rows["caption"].append(f"a {name} square")
        rows["label"].append(name)
    features = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string"),
                                  "label": datasets.Value("string")})
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "pairs"))
    cfg = load_config("tiny", [f"data.train=hf:{tmp_path / 'pairs'}", "model.modalities=image,text", "train.steps=2",
                               "train.batch_size=8", "train.eval_size=8", "train.ckpt_every=0", "train.threads=1"])
    metrics = train_run(cfg, tmp_path / "run")
    assert metrics["steps"] == 2 and "image->text" in metrics["heldout"]["retrieval"]
