"""Is a PNG complete? Pillow decodes a PNG whose compressed image data end early (a valid zlib
stream holding only the first rows, then IEND) without complaint and fills the missing rows with
zeros; both the training reader and the runtime must refuse such a file instead of learning from or
embedding a mostly black image.

Rule: the IDAT chunks, inflated, must hold every filtered scanline the IHDR promises —
``Σ_passes rows·(1 + ceil(cols·channels·depth / 8))``, one pass for a plain PNG and the seven
Adam7 passes of an interlaced one (PNG spec §8.2). Inflation streams in bounded pieces.

The check inflates the data a second time (+50–70 % of a decode), so :func:`file_problem` keeps
the verdict per file (path, size, modification time): a training run that reads the same PNG every
epoch pays for it once.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zlib
from functools import lru_cache
from typing import BinaryIO

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type → samples per pixel
# Adam7: (first row, first column, row step, column step) of each pass
ADAM7 = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2), (1, 0, 2, 1))
PIECE = 1 << 20


def expected_scanline_bytes(width: int, height: int, depth: int, colour_type: int, interlaced: bool) -> int:
    """Bytes of filtered scanlines (filter byte + packed samples per row) the image data must hold."""
    bits = CHANNELS[colour_type] * depth
    passes = ADAM7 if interlaced else ((0, 0, 1, 1),)
    total = 0
    for row0, col0, drow, dcol in passes:
        rows, cols = max(0, math.ceil((height - row0) / drow)), max(0, math.ceil((width - col0) / dcol))
        if rows and cols:
            total += rows * (1 + math.ceil(cols * bits / 8))
    return total


def png_problem(stream: BinaryIO) -> str | None:
    """None for a complete PNG, else what is wrong (the stream is read from its current position)."""
    if stream.read(8) != SIGNATURE:
        return "not a PNG"
    inflate = zlib.decompressobj()
    expected: int | None = None
    produced = 0
    while True:
        head = stream.read(8)
        if len(head) < 8:
            return "the file ends before its IEND chunk"
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IHDR":
            data = stream.read(length)
            if len(data) < 13:
                return "a short IHDR chunk"
            w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[:13])
            if colour not in CHANNELS:
                return f"unknown colour type {colour}"
            expected = expected_scanline_bytes(w, h, depth, colour, interlace == 1)
            stream.read(4)
        elif kind == b"IDAT":
            left = length
            while left:
                piece = stream.read(min(left, PIECE))
                if not piece:
                    return "the file ends inside an IDAT chunk"
                left -= len(piece)
                try:
                    out = inflate.decompress(piece, PIECE)
                    produced += len(out)
                    while inflate.unconsumed_tail:
                        produced += len(inflate.decompress(inflate.unconsumed_tail, PIECE))
                except zlib.error as e:
                    return f"corrupt image data ({e})"
                if expected is not None and produced >= expected:
                    return None  # every scanline is there; what follows is the decoder's business
            stream.read(4)
        elif kind == b"IEND":
            break
        else:
            stream.seek(length + 4, io.SEEK_CUR)
    if expected is None:
        return "no IHDR chunk"
    if produced < expected:
        return f"the image data end early ({produced} of {expected} bytes of scanlines)"
    return None


def file_problem(path: str | os.PathLike[str]) -> str | None:
    """:func:`png_problem` of the PNG file at ``path``, computed once per (path, size, mtime)."""
    st = os.stat(path)
    return _file_problem(os.fspath(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=1 << 16)
def _file_problem(path: str, size: int, mtime_ns: int) -> str | None:
    with open(path, "rb") as f:
        return png_problem(f)
