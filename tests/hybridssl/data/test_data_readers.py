"""Tests for hybridssl.data.readers: every BadItem reason, every conversion, every repair."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from hybridssl.data.readers import clean_caption, read_audio, read_image, require_usable
from hybridssl.data.sample import BadItem, Sample


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _reason(fn, *args, **kwargs) -> str:
    with pytest.raises(BadItem) as ei:
        fn(*args, **kwargs)
    assert ei.value.uid == args[1]
    return ei.value.reason


# ----------------------------------------------------------------------------- images


def test_rgb_png_exact(tmp_path: Path) -> None:
    arr = _rng().integers(0, 256, (7, 5, 3), dtype=np.uint8)
    Image.fromarray(arr, "RGB").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png", "u")
    assert out.dtype == np.uint8 and out.shape == (7, 5, 3)
    np.testing.assert_array_equal(out, arr)


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    arr = _rng().integers(0, 256, (6, 4, 4), dtype=np.uint8)
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    out = read_image(str(tmp_path / "a.png"), "u")
    ref = np.zeros((6, 4, 3), dtype=np.uint8)
    for y in range(6):
        for x in range(4):
            a = arr[y, x, 3] / 255.0
            for c in range(3):
                ref[y, x, c] = int(np.clip(np.rint(a * arr[y, x, c] + (1 - a) * 255.0), 0, 255))
    np.testing.assert_array_equal(out, ref)


def test_la_and_transparent_palette_composited(tmp_path: Path) -> None:
    la = np.stack([np.full((3, 3), 0, np.uint8), np.full((3, 3), 0, np.uint8)], axis=2)  # black, alpha 0
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png", "u"), np.full((3, 3, 3), 255, np.uint8))

    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.putpixel((1, 1), 1)
    pal.info["transparency"] = 0  # index 0 fully transparent → white
    pal.save(tmp_path / "p.png", transparency=0)
    out = read_image(tmp_path / "p.png", "u")
    assert out.shape == (4, 4, 3)
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[1, 1], [200, 100, 50])


def test_grayscale_and_palette(tmp_path: Path) -> None:
    g = _rng().integers(0, 256, (5, 6), dtype=np.uint8)
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png", "u")
    assert out.shape == (5, 6, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], g)

    pal = Image.new("P", (3, 2), 0)
    pal.putpalette([1, 2, 3, 40, 50, 60] + [0] * 762)
    pal.putpixel((2, 1), 1)
    pal.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png", "u")
    np.testing.assert_array_equal(out[0, 0], [1, 2, 3])
    np.testing.assert_array_equal(out[1, 2], [40, 50, 60])


def test_16bit_grey_scaled(tmp_path: Path) -> None:
    v = np.array([[0, 257, 65535], [1000, 30000, 65534]], dtype=np.uint16)
    Image.fromarray(v).save(tmp_path / "g16.png")
    out = read_image(tmp_path / "g16.png", "u")
    ref = np.array([[int(np.rint(x / 257.0)) for x in row] for row in v.tolist()], dtype=np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], ref)


def test_float_grey_and_cmyk(tmp_path: Path) -> None:
    f = np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32)
    Image.fromarray(f, "F").save(tmp_path / "f.tif")
    out = read_image(tmp_path / "f.tif", "u")
    np.testing.assert_array_equal(out[:, :, 0], [[0, 128], [255, 64]])

    Image.new("CMYK", (3, 4), (0, 0, 0, 0)).save(tmp_path / "c.tif")
    out = read_image(tmp_path / "c.tif", "u")
    assert out.shape == (4, 3, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.full((4, 3, 3), 255, np.uint8))


def test_exif_orientation_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (8, 4), (200, 10, 10))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    img.save(tmp_path / "o.jpg", exif=exif.tobytes())
    assert read_image(tmp_path / "o.jpg", "u").shape == (8, 4, 3)


def test_image_bad_items(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _reason(read_image, tmp_path / "nope.png", "u1") == "missing_file"
    assert _reason(read_image, tmp_path, "u1") == "missing_file"  # a directory
    (tmp_path / "empty.png").write_bytes(b"")
    assert _reason(read_image, tmp_path / "empty.png", "u2") == "empty_file"
    (tmp_path / "text.png").write_text("not an image at all")
    assert _reason(read_image, tmp_path / "text.png", "u3") == "unreadable_image"

    noise = _rng().integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    assert _reason(read_image, tmp_path / "cut.png", "u4") == "unreadable_image"

    Image.fromarray(noise).save(tmp_path / "big.png")
    assert _reason(read_image, tmp_path / "big.png", "u5", max_pixels=64 * 64 - 1) == "image_too_large"
    assert read_image(tmp_path / "big.png", "u5", max_pixels=64 * 64).shape == (64, 64, 3)

    Image.fromarray(noise).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 40)  # Pillow would warn: 64x64 > its limit, < twice it
    with warnings.catch_warnings():
        warnings.simplefilter("error")                        # our own limit decides, silently
        assert _reason(read_image, tmp_path / "bomb.png", "u8", max_pixels=64 * 40) == "image_too_large"
        assert read_image(tmp_path / "bomb.png", "u8").shape == (64, 64, 3)
    monkeypatch.undo()

    Image.new("RGB", (1, 5)).save(tmp_path / "thin.png")
    assert _reason(read_image, tmp_path / "thin.png", "u6") == "image_too_small"
    Image.new("RGB", (2, 2)).save(tmp_path / "tiny.png")
    assert read_image(tmp_path / "tiny.png", "u7").shape == (2, 2, 3)


# ----------------------------------------------------------------------------- audio


def test_mono_wav_8k(tmp_path: Path) -> None:
    pcm = _rng().integers(-32768, 32768, 800, dtype=np.int16)
    sf.write(tmp_path / "a.wav", pcm, 8000, subtype="PCM_16")
    wave, sr, repairs = read_audio(tmp_path / "a.wav", "u")
    assert sr == 8000 and repairs == [] and wave.dtype == np.float32 and wave.shape == (800,)
    np.testing.assert_allclose(wave, pcm.astype(np.float64) / 32768.0, atol=1e-7)


def test_stereo_flac_44k_mono_mixed(tmp_path: Path) -> None:
    x = (_rng().uniform(-0.9, 0.9, (441, 2))).astype(np.float32)
    sf.write(tmp_path / "s.flac", x, 44100, subtype="PCM_16")
    wave, sr, repairs = read_audio(tmp_path / "s.flac", "u")
    assert sr == 44100 and repairs == ["mono_mixed"] and wave.shape == (441,) and wave.dtype == np.float32
    stored, _ = sf.read(tmp_path / "s.flac", dtype="int16")  # (T, 2) exact PCM values
    ref = np.array([(int(stored[t, 0]) + int(stored[t, 1])) / 2 / 32768.0 for t in range(441)])
    np.testing.assert_allclose(wave, ref, atol=1e-6)


def test_float_values_kept_as_read(tmp_path: Path) -> None:
    x = np.array([0.0, 1.5, -2.0, 0.25], dtype=np.float32)
    sf.write(tmp_path / "f.wav", np.tile(x, 300), 16000, subtype="FLOAT")
    wave, _, _ = read_audio(tmp_path / "f.wav", "u")
    np.testing.assert_array_equal(wave[:4], x)


def test_audio_bad_items(tmp_path: Path) -> None:
    assert _reason(read_audio, tmp_path / "nope.wav", "a1") == "missing_file"
    (tmp_path / "empty.wav").write_bytes(b"")
    assert _reason(read_audio, tmp_path / "empty.wav", "a2") == "empty_file"
    (tmp_path / "text.wav").write_text("RIFF? no, just text pretending to be audio")
    assert _reason(read_audio, tmp_path / "text.wav", "a3") == "unreadable_audio"
    sf.write(tmp_path / "zero.wav", np.zeros((0,), np.float32), 8000)
    assert _reason(read_audio, tmp_path / "zero.wav", "a4") == "empty_audio"
    sf.write(tmp_path / "long.wav", np.zeros(8000, np.float32), 8000)
    assert _reason(read_audio, tmp_path / "long.wav", "a5", max_seconds=0.5) == "audio_too_long"
    assert read_audio(tmp_path / "long.wav", "a5", max_seconds=1.0)[0].shape == (8000,)
    for bad in (np.nan, np.inf):
        x = np.zeros(1000, np.float32)
        x[500] = bad
        sf.write(tmp_path / "nan.wav", x, 8000, subtype="FLOAT")
        assert _reason(read_audio, tmp_path / "nan.wav", "a6") == "non_finite_audio"
    sf.write(tmp_path / "slow.wav", np.zeros(100, np.float32), 500)
    assert _reason(read_audio, tmp_path / "slow.wav", "a7") == "bad_sample_rate"
    sf.write(tmp_path / "fast.wav", np.zeros(100, np.float32), 400_000)
    assert _reason(read_audio, tmp_path / "fast.wav", "a8") == "bad_sample_rate"


# ----------------------------------------------------------------------------- text / samples


def test_clean_caption() -> None:
    assert clean_caption("  a  dog\t\nruns \r", "c") == "a dog runs"
    assert clean_caption("bell\x07ring\x00s", "c") == "bell ring s"
    assert clean_caption("cafe\u0301", "c") == "caf\u00e9"  # NFC
    assert clean_caption("   \n\t ", "c") is None
    assert clean_caption("", "c") is None
    assert clean_caption(None, "c") is None
    with pytest.raises(BadItem) as ei:
        clean_caption(42, "c9")  # type: ignore[arg-type]
    assert ei.value.reason == "bad_caption" and ei.value.uid == "c9"


def test_require_usable() -> None:
    with pytest.raises(BadItem) as ei:
        require_usable(Sample(uid="x"))
    assert ei.value.reason == "no_usable_modality"
    with pytest.raises(BadItem):
        require_usable(Sample(uid="x", features={"v": np.zeros((0, 3), np.float32)}))
    s = Sample(uid="y", features={"v": np.zeros((2, 3), np.float32)})
    assert require_usable(s) is s
    s = Sample(uid="z", caption="hi")
    assert require_usable(s) is s
