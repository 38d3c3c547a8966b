"""A PNG whose image data end early is refused by the training reader and by the runtime (Pillow
alone decodes it and zero-fills the missing rows)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from edge_runtime.png import expected_scanline_bytes, png_problem
from edge_runtime.preprocess import decode_image
from edge_runtime.validate import InputError


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def short_png(width: int = 16, height: int = 64, rows: int = 4) -> bytes:
    """A well-formed PNG (valid zlib stream, CRCs, IEND) whose data hold only ``rows`` of ``height`` rows."""
    raw = b"".join(b"\x00" + bytes([200, 10, 10] * width) for _ in range(rows))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def test_pillow_alone_accepts_the_short_png():
    with Image.open(io.BytesIO(short_png())) as img:
        img.load()
        assert np.asarray(img)[10:].max() == 0  # the rows that were never there are black


def test_the_runtime_and_the_training_reader_refuse_it(tmp_path):
    from hybridssl.data.readers import read_image
    from hybridssl.data.sample import BadItem

    path = tmp_path / "short.png"
    path.write_bytes(short_png())
    for item in (path, str(path), path.read_bytes()):
        with pytest.raises(InputError, match="truncated or corrupt PNG: the image data end early"):
            decode_image(item)
    with pytest.raises(BadItem, match="truncated PNG") as info:
        read_image(path, "short")
    assert info.value.reason == "unreadable_image"


@pytest.mark.parametrize("mode, size, interlace", [("RGB", (17, 9), False), ("RGBA", (5, 31), True), ("L", (64, 64), False),
                                                    ("P", (13, 7), True), ("1", (33, 3), False), ("I;16", (9, 9), True)])
def test_complete_pngs_of_every_kind_pass(tmp_path, mode, size, interlace):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, "PNG", interlace=interlace)  # Pillow writes Adam7 when asked... or ignores it; both must pass
    assert png_problem(io.BytesIO(buf.getvalue())) is None
    cut = buf.getvalue()
    assert png_problem(io.BytesIO(cut[: len(cut) // 2])) is not None  # cut inside the data: refused too


def test_adam7_scanline_count():
    # 8×8 RGB 8-bit, Adam7 passes: 1×1, 1×1, 2×1, 2×2, 4×2, 4×4, 8×4 (cols × rows)
    passes = [(1, 1), (1, 1), (2, 1), (2, 2), (4, 2), (4, 4), (8, 4)]
    assert expected_scanline_bytes(8, 8, 8, 2, True) == sum(r * (1 + 3 * c) for c, r in passes)
    assert expected_scanline_bytes(8, 8, 8, 2, False) == 8 * (1 + 24)
