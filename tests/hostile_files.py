"""The shared corpus of hostile films (issue #26): generated at test time, never committed, and read
by both Python's ``read_image`` and the browser page (tests/test_web_hostile.py, and the fuzzing
seeds in tests/test_fuzz.py), which must refuse the same files for the same reason.

Each case is a file's bytes and the phrase both refusals contain (lower-cased), or ``None`` for a
file both must read. Only PNG and JPEG cases (and files that are no image at all): those are the
formats the page reads; it refuses BMP, TIFF and DICOM by name.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

#: The inflate bomb of issue #26 declares 64 x 64 and its IDAT inflates to 1.5 GB; libpng inflates
#: all of it (15 s on the 2 shared cores), so the suite's copy inflates to 256 MB: still far over
#: what the header implies, and over the page's old memory (it held the whole inflated stream twice).
BOMB_INFLATED_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Case:
    """One corpus file: its bytes and the phrase both readers' one-line refusal must contain
    (``None``: both must read it). ``big``: worth watching the browser's memory on."""

    data: bytes
    reason: str | None
    big: bool = False


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_raw(width: int, height: int, depth: int, colour: int, idat: bytes, extra: bytes = b"") -> bytes:
    """A PNG from its parts: IHDR, ``extra`` chunks, one IDAT of ``idat`` (already compressed), IEND."""
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + extra + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def _scanlines(grey: np.ndarray) -> bytes:
    return b"".join(b"\0" + row.tobytes() for row in grey)


def _bomb_idat(lines: bytes, total: int) -> bytes:
    """A zlib stream of ``lines`` then zeros up to ``total`` bytes, made in well under a second: one
    16 MB block of zeros deflated once after a full flush is byte-aligned and independent of what
    came before, so it is repeated as is; then an empty final block and the Adler-32 of it all
    (about 1 MB per inflated GB)."""
    block = bytes(2**24)

    def raw(data: bytes) -> bytes:
        comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        return comp.compress(data) + comp.flush(zlib.Z_FULL_FLUSH)

    zeros = total - len(lines)
    whole, rest = divmod(zeros, len(block))
    parts = [b"\x78\xda", raw(lines), raw(block) * whole, raw(block[:rest]), b"\x03\x00"]
    adler = zlib.adler32(lines)
    for _ in range(whole):
        adler = zlib.adler32(block, adler)
    adler = zlib.adler32(block[:rest], adler)
    return b"".join(parts) + struct.pack(">I", adler)


def _encode(image: np.ndarray, ext: str, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, image, params or [])
    assert ok
    return buf.tobytes()


def _set_sof(jpeg: bytes, height: int, width: int) -> bytes:
    """The same JPEG with its frame header declaring another size."""
    data = bytearray(jpeg)
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def film(height: int = 48, width: int = 40, seed: int = 0) -> np.ndarray:
    """A small film-like grey image (a gradient with noise): every reader accepts it."""
    rng = np.random.default_rng(seed)
    ramp = np.add.outer(np.arange(height), np.arange(width)) * 2
    return (ramp + rng.integers(0, 20, (height, width))).astype(np.uint8)


def corpus(bomb_bytes: int = BOMB_INFLATED_BYTES) -> dict[str, Case]:
    """The shared corpus, name -> :class:`Case` (names are file names with their extension)."""
    grey = film()
    colour = cv2.merge([grey, (grey * 0.8).astype(np.uint8), grey // 2])
    png = _encode(grey, ".png")
    jpeg = _encode(grey, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90])
    sos = jpeg.index(b"\xff\xda")
    sof = jpeg.index(b"\xff\xc0")
    sof_segment = jpeg[sof : sof + 2 + struct.unpack(">H", jpeg[sof + 2 : sof + 4])[0]]
    big = film(64, 64, seed=1)
    grey_end = grey.copy()
    grey_end[40:, 32:] = 128  # the last 8 x 8 block exactly mid-grey, as libjpeg fills a cut scan
    idat_short = zlib.compress(_scanlines(grey)[:-200])
    crc_bad = bytearray(png)
    idat_at = png.index(b"IDAT")
    crc_bad[idat_at + 10] ^= 0x55  # a byte of the compressed data: the IDAT CRC no longer matches
    cases = {
        # read by both
        "ok-grey.png": Case(png, None),
        "ok-grey16.png": Case(_encode(grey.astype(np.uint16) * 250, ".png"), None),
        "ok-rgba.png": Case(_encode(cv2.cvtColor(colour, cv2.COLOR_BGR2BGRA), ".png"), None),
        "ok-grey.jpg": Case(jpeg, None),
        "ok-colour.jpg": Case(_encode(colour, ".jpg"), None),
        "ok-progressive.jpg": Case(_encode(grey, ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), None),
        # a genuine film ending on a mid-grey block: Python reads it (libjpeg did not warn), so must
        # the page (which cannot see the warning: it decodes again with padding before the EOI)
        "ends-on-grey.jpg": Case(_encode(grey_end, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95]), None),
        # issue #26, defect 2: 64 x 64 declared, IDAT inflating to 1.5 GB. libpng stops at the last
        # row and ignores the rest (Python reads the 64 x 64 film): the page must stop there too.
        "inflate-bomb.png": Case(
            png_raw(64, 64, 8, 0, _bomb_idat(_scanlines(big), bomb_bytes)), None, big=True
        ),
        # issue #26, defect 1
        "one-pixel.png": Case(_encode(np.full((1, 1), 7, np.uint8), ".png"), "smaller than the minimum"),
        "constant.png": Case(_encode(np.full((48, 40), 90, np.uint8), ".png"), "constant image"),
        "cut-mid-scan-eoi.jpg": Case(jpeg[: sos + (len(jpeg) - sos) // 2] + b"\xff\xd9", "truncated jpeg"),
        # issue #26, defect 3: sizes declared by headers, refused before decoding
        "rgba16-10000.png": Case(
            png_raw(10000, 10000, 16, 6, zlib.compress(bytes(4096))), "decoded, over the"
        ),
        "grey-20000.png": Case(png_raw(20000, 20000, 8, 0, zlib.compress(bytes(4096))), "exceeds the limit"),
        "sof-60000.jpg": Case(_set_sof(jpeg, 60000, 60000), "exceeds the limit", big=True),
        "sof-rgb-10000.jpg": Case(
            _set_sof(_encode(colour, ".jpg"), 10000, 10000), "decoded, over the", big=True
        ),
        # headers that could be read two ways, or say nothing
        "ihdr-twice.png": Case(
            png_raw(3000, 3000, 8, 0, zlib.compress(bytes(2048)), png_chunk(b"IHDR", png[16:29])),
            "more than one ihdr",
        ),
        "sof-twice.jpg": Case(jpeg[:sos] + sof_segment + jpeg[sos:], "more than one frame header"),
        "dnl-height-0.jpg": Case(_set_sof(jpeg, 0, 40), "dnl"),
        "sof-width-0.jpg": Case(_set_sof(jpeg, 48, 0), "corrupt header"),
        "png-width-0.png": Case(png_raw(0, 48, 8, 0, zlib.compress(bytes(100))), "corrupt header"),
        "bad-depth.png": Case(png_raw(40, 48, 7, 0, zlib.compress(bytes(100))), "corrupt png"),
        # incomplete or damaged
        "cut-half.png": Case(png[: len(png) // 2], "truncated png"),
        "cut-no-eoi.jpg": Case(jpeg[: len(jpeg) - 100], "truncated jpeg"),
        "idat-short.png": Case(png_raw(40, 48, 8, 0, idat_short), "corrupt png"),
        "idat-crc.png": Case(bytes(crc_bad), "corrupt png"),
        "magic-only.png": Case(b"\x89PNG\r\n\x1a\n" + bytes(64), "corrupt png"),
        "empty.png": Case(b"", "empty file"),
        "text.jpg": Case(b"these are not pixels\n" * 8, "not a supported image"),
    }
    return cases
