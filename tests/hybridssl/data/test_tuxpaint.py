import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from hybridssl.data.sample import BadItem
from hybridssl.data.tuxpaint import DEFAULT_ROOT, TuxPaintStamps, parse_stamp_text

BLACKBIRD_TXT = "A blackbird.\nach.utf8=Winyo macol.\nca@valencia.utf8=Una merla.\nen_GB.utf8=A blackbird.\nfr.utf8=Un merle.\npt_BR.utf8=Um melro-preto.\n"
REAL_ROOT = Path(os.environ.get("HSSL_TUXPAINT_ROOT", DEFAULT_ROOT))


def png(path: Path, rgba=(255, 0, 0, 255), size=(6, 4)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", size, rgba).save(path)


def ogg(path: Path, seconds: float, rate: int = 22050) -> None:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, format="OGG", subtype="VORBIS")


@pytest.fixture
def stamps(tmp_path):
    r = tmp_path / "stamps"
    birds = r / "animals" / "birds"
    png(birds / "blackbird.png", rgba=(0, 0, 0, 0))  # fully transparent → white
    (birds / "blackbird.txt").write_text(BLACKBIRD_TXT, encoding="utf-8")
    (birds / "blackbird.dat").write_text("noflip\n")
    ogg(birds / "blackbird_desc.ogg", 0.5)
    ogg(birds / "blackbird_desc_fr.ogg", 0.25)
    ogg(birds / "blackbird.ogg", 0.1)  # sound effect, not speech
    ogg(birds / "blackbird_desc_ru.ogg", 0.1)
    png(r / "animals" / "cat.png", rgba=(10, 20, 30, 255))
    (r / "animals" / "cat.txt").write_bytes("\ufeffA cat.\r\nfr.utf8=Un chat.\r\n".encode())
    ogg(r / "animals" / "cat_desc_fr.ogg", 0.2)
    (birds / "swallow.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (birds / "swallow.txt").write_text("A swallow.\n")
    png(r / "vehicles" / "truck.png")  # no .txt
    png(r / "vehicles" / "truck_mirror.png")
    png(r / "vehicles" / "both.png")
    (r / "vehicles" / "both.svg").write_text("<svg/>")
    (r / "vehicles" / "both.txt").write_text("Both formats.\n")
    (r / "seasonal" / "christmas").mkdir(parents=True)
    (r / "seasonal" / "christmas" / "gift.txt").write_text("A gift.\n")
    ogg(r / "seasonal" / "christmas" / "gift_desc_fr.ogg", 0.1)
    (r / "vehicles" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (r / "vehicles" / "broken.txt").write_text("A broken stamp.\n")
    return r


def test_index_order_labels_captions(stamps):
    ds = TuxPaintStamps(stamps)
    uids = [s.uid for s in ds._records]
    assert uids == ["animals/cat", "animals/birds/blackbird", "vehicles/both", "vehicles/broken", "vehicles/truck"]
    assert ds.label_names == ["animals", "vehicles"]
    assert ds.labels() == [0, 0, 1, 1, 1]
    assert [ds.caption_at(i) for i in range(len(ds))] == ["A cat.", "A blackbird.", "Both formats.", "A broken stamp.", None]
    assert list(ds.captions()) == ["A cat.", "A blackbird.", "Both formats.", "A broken stamp."]
    assert ds.modalities == ("image", "text", "audio")


def test_load_report(stamps):
    rep = TuxPaintStamps(stamps).load_report
    assert dict(rep.skipped) == {"svg_only": 1, "mirror_variant": 1, "no_image": 1}
    assert rep.examples["svg_only"] == ["animals/birds/swallow: SVG stamps are not rasterised"]
    assert rep.examples["no_image"][0].startswith("seasonal/christmas/gift")
    assert rep.repaired["no_caption"] == 1  # truck: kept, caption None
    assert rep.repaired["no_speech"] == 4  # only the blackbird has English speech


def test_sample_content(stamps):
    ds = TuxPaintStamps(stamps)
    bird = ds[1]
    assert bird.image.shape == (4, 6, 3) and bird.image.dtype == np.uint8
    assert (bird.image == 255).all()  # transparent RGBA composited on white
    assert bird.audio.dtype == np.float32 and bird.audio.ndim == 1
    assert bird.sample_rate == 22050 and abs(bird.audio.shape[0] - 11025) < 200
    assert bird.meta["speech_language"] == "en"
    assert bird.meta["sound"].endswith("birds/blackbird.ogg")
    assert bird.meta["subcategory"] == "birds" and bird.meta["label_name"] == "animals"
    assert bird.meta["translations"]["fr"] == "Un merle." and bird.meta["translations"]["ca@valencia"] == "Una merla."
    cat = ds[0]
    assert cat.meta["subcategory"] is None and cat.audio is None
    assert tuple(cat.image[0, 0]) == (10, 20, 30)
    truck = ds[4]
    assert truck.caption is None and truck.modalities == ("image",)
    assert ds[2].meta["source"].endswith("both.png")


def test_languages_order_and_speech_off(stamps):
    fr = TuxPaintStamps(stamps, languages=("fr",))
    assert fr[1].meta["speech_language"] == "fr" and abs(fr[1].audio.shape[0] - 5512) < 200
    assert fr[0].meta["speech_language"] == "fr"
    de_ru = TuxPaintStamps(stamps, languages=["de", "ru", "fr"])
    assert de_ru[1].meta["speech_language"] == "ru" and de_ru[0].meta["speech_language"] == "fr"
    off = TuxPaintStamps(stamps, use_speech=False)
    assert off.modalities == ("image", "text") and off[1].audio is None
    assert "no_speech" not in off.load_report.repaired
    with pytest.raises(ValueError, match="language"):
        TuxPaintStamps(stamps, languages=())


def test_unreadable_image_is_baditem(stamps):
    ds = TuxPaintStamps(stamps)
    with pytest.raises(BadItem) as e:
        ds[3]
    assert e.value.reason == "unreadable_image" and e.value.uid == "vehicles/broken"


def test_unreadable_speech_is_baditem(stamps):
    (stamps / "animals" / "birds" / "blackbird_desc.ogg").write_bytes(b"OggS not really")
    with pytest.raises(BadItem) as e:
        TuxPaintStamps(stamps)[1]
    assert e.value.reason == "unreadable_audio"


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent.*bash scripts/install_datasets\.sh"):
        TuxPaintStamps(tmp_path / "absent")


@pytest.mark.parametrize(
    "text, english, n_trans",
    [
        (BLACKBIRD_TXT, "A blackbird.", 5),
        ("\ufeffA cat.\r\nfr.utf8=Un chat.\r\n", "A cat.", 1),
        ("\n\n  A spaced dog.  \nde.utf8=Ein Hund.\n", "A spaced dog.", 1),
        ("fr.utf8=Un merle.\nen_GB.utf8=A blackbird (GB).\n", "A blackbird (GB).", 2),  # no untagged line
        ("fr.utf8=Un merle.\n", None, 1),
        ("", None, 0),
        ("A lamp.\nnot a translation line\nsr@latin.utf8=Lampa.\n", "A lamp.", 1),
    ],
)
def test_parse_stamp_text(text, english, n_trans):
    got, trans = parse_stamp_text(text)
    assert got == english and len(trans) == n_trans


def test_empty_or_translation_only_txt_counts_no_caption(tmp_path):
    png(tmp_path / "a" / "x.png")
    (tmp_path / "a" / "x.txt").write_text("fr.utf8=Seulement.\n")
    png(tmp_path / "a" / "y.png")
    (tmp_path / "a" / "y.txt").write_text("\x07\n")  # a control character only: cleaned away
    ds = TuxPaintStamps(tmp_path, use_speech=False)
    assert [ds.caption_at(i) for i in range(2)] == [None, None]
    assert ds.load_report.repaired["no_caption"] == 1 and ds.load_report.repaired["empty_caption_dropped"] == 1
    assert ds.modalities == ("image",)


@pytest.mark.skipif(not REAL_ROOT.is_dir(), reason=f"{REAL_ROOT} absent (bash scripts/install_datasets.sh)")
def test_real_stamps():
    ds = TuxPaintStamps(REAL_ROOT)
    assert len(ds.label_names) == 16 and len(ds) > 700
    assert ds.load_report.skipped["svg_only"] > 100
    assert sum(c is not None for c in (ds.caption_at(i) for i in range(len(ds)))) > 0.95 * len(ds)
    s = ds[0]
    assert s.image.ndim == 3 and s.image.shape[2] == 3 and s.caption
