import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from hybridssl.data.openclipart import DEFAULT_ROOT, Openclipart, make_caption, png_text_chunks
from hybridssl.data.sample import BadItem

REAL_ROOT = Path(os.environ.get("HSSL_OPENCLIPART_ROOT", DEFAULT_ROOT))


def clip(path: Path, rgba=(0, 128, 0, 255), **text: str | bytes) -> None:
    """A PNG with Inkscape-style text chunks (str → Latin-1/iTXt via Pillow, bytes → raw tEXt)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "www.inkscape.org")
    for key, value in text.items():
        info.add_text(key, value)
    Image.new("RGBA", (5, 3), rgba).save(path, pnginfo=info)


@pytest.fixture
def tree(tmp_path):
    r = tmp_path / "png"
    clip(r / "animals" / "frogs_01.png", Title="2 dead frogs", Description="2 dead frogs... nothing more...",
         Author="Lumen Design Studio")
    clip(r / "animals" / "amphibian" / "toad_01.png", rgba=(0, 0, 0, 0), Title="Toad", Author="Sérgio".encode())
    clip(r / "computer" / "floppy_01.png", Title="Floppy", Description="floppy")  # same text → title only
    clip(r / "computer" / "icons" / "no_meta.png")  # Software only
    clip(r / "computer" / "desc_only.png", Description="Ícone de aviso".encode())
    (r / "signs_and_symbols" / "hazard").mkdir(parents=True)
    os.symlink("../../animals/frogs_01.png", r / "signs_and_symbols" / "hazard" / "frogs_01.png")
    (r / "computer" / "fake.png").write_bytes(b"GIF89a not a png")
    (r / "computer" / "readme.txt").write_text("not an image")
    return r


def test_index_labels_captions(tree):
    ds = Openclipart(tree)
    uids = [c.uid for c in ds._records]
    assert uids == ["animals/amphibian/toad_01", "animals/frogs_01", "computer/desc_only", "computer/floppy_01"]
    assert ds.label_names == ["animals", "computer"]  # signs_and_symbols only held a duplicate
    assert ds.labels() == [0, 0, 1, 1]
    assert list(ds.captions()) == [
        "Toad", "2 dead frogs. 2 dead frogs... nothing more...", "Ícone de aviso", "Floppy",
    ]
    assert ds.modalities == ("image", "text")


def test_load_report(tree):
    rep = Openclipart(tree).load_report
    assert dict(rep.skipped) == {"duplicate": 1, "no_metadata": 1, "unreadable_image": 1}
    assert rep.examples["duplicate"] == ["signs_and_symbols/hazard/frogs_01: same file as animals/frogs_01"]
    assert rep.examples["no_metadata"][0].startswith("computer/icons/no_meta")


def test_without_dedupe_links_are_items(tree):
    ds = Openclipart(tree, dedupe=False)
    assert len(ds) == 5 and ds.label_names == ["animals", "computer", "signs_and_symbols"]
    assert "duplicate" not in ds.load_report.skipped
    assert ds[4].caption == ds[1].caption and ds[4].meta["subcategory"] == "hazard"


def test_dedupe_keeps_the_real_file_even_when_the_link_sorts_first(tmp_path):
    clip(tmp_path / "zoo" / "x.png", Title="X")
    (tmp_path / "aaa").mkdir()
    os.symlink("../zoo/x.png", tmp_path / "aaa" / "x.png")
    ds = Openclipart(tmp_path)
    assert [c.uid for c in ds._records] == ["zoo/x"] and ds[0].meta["also_in"] == ["aaa/x"]


def test_sample_content(tree):
    ds = Openclipart(tree)
    frogs = ds[1]
    assert frogs.image.shape == (3, 5, 3) and frogs.image.dtype == np.uint8
    assert tuple(frogs.image[0, 0]) == (0, 128, 0)
    assert frogs.meta["also_in"] == ["signs_and_symbols/hazard/frogs_01"]
    assert frogs.meta["author"] == "Lumen Design Studio" and frogs.meta["subcategory"] is None
    toad = ds[0]
    assert (toad.image == 255).all()  # transparent → white
    assert toad.meta["author"] == "Sérgio"  # UTF-8 bytes in tEXt, as Inkscape writes them
    assert toad.meta["subcategory"] == "amphibian" and toad.meta["label_name"] == "animals"
    assert ds[2].meta["title"] is None


def test_corrupt_pixels_are_baditem(tree):
    p = tree / "computer" / "floppy_01.png"
    raw = p.read_bytes()
    idat = raw.index(b"IDAT")
    p.write_bytes(raw[: idat + 8] + b"\x00" * 8 + raw[idat + 16 :])  # same layout, broken zlib data
    ds = Openclipart(tree)
    with pytest.raises(BadItem) as e:
        ds[3]
    assert e.value.reason == "unreadable_image"


def test_png_text_chunks_agrees_with_pillow(tmp_path):
    p = tmp_path / "x.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "Zebra")
    info.add_itxt("Description", "ünïcode ✓ description", lang="en", tkey="Beschreibung")
    info.add_itxt("Compressed", "zz" * 300, zip=True)
    info.add_text("Keywords", "a, b, c" * 50, zip=True)  # zTXt
    Image.new("RGB", (4, 4)).save(p, pnginfo=info)
    ours = png_text_chunks(p)
    with Image.open(p) as im:
        im.load()
        assert ours == dict(im.text)
    assert ours["Description"] == "ünïcode ✓ description"


@pytest.mark.parametrize("cut", [5, 20])
def test_png_text_chunks_rejects_broken_files(tmp_path, cut):
    p = tmp_path / "x.png"
    clip(p, Title="T")
    p.write_bytes(p.read_bytes()[:-cut])  # IEND (and more) missing
    with pytest.raises(ValueError, match="x.png: truncated"):
        png_text_chunks(p)
    p.write_bytes(b"JFIF....")
    with pytest.raises(ValueError, match="not a PNG"):
        png_text_chunks(p)


@pytest.mark.parametrize(
    "title, desc, caption",
    [
        ("Turkey", None, "Turkey"),
        ("Turkey", "", "Turkey"),
        ("Turkey", "turkey", "Turkey"),
        ("Turkey", "A roast bird", "Turkey. A roast bird"),
        ("Stop!", "A road sign", "Stop! A road sign"),
        (None, "Only a description", "Only a description"),
        (None, None, None),
    ],
)
def test_make_caption(title, desc, caption):
    assert make_caption(title, desc) == caption


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing_here.*bash scripts/install_datasets\.sh"):
        Openclipart(tmp_path / "nothing_here")


@pytest.mark.skipif(not REAL_ROOT.is_dir(), reason=f"{REAL_ROOT} absent (bash scripts/install_datasets.sh)")
def test_real_openclipart():
    ds = Openclipart(REAL_ROOT)
    assert len(ds.label_names) == 22 and len(ds) > 6000
    assert ds.load_report.skipped["duplicate"] > 1000 and ds.load_report.skipped["no_metadata"] < 100
    s = ds[0]
    assert s.image.ndim == 3 and s.caption
