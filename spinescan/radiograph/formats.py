"""What an image file declares before it is decoded: its format (magic bytes), its size fields,
and whether it is complete.

Light island: numpy and OpenCV only. Headers that could be read two ways are refused rather than
guessed (a duplicated TIFF tag, a second PNG IHDR or JPEG frame header): a size checked here must
be the size the decoder will allocate.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import struct
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from spinescan.errors import ImageReadError

SUPPORTED = ("png", "jpeg", "bmp", "tiff", "dicom")

# Extensions considered when scanning a folder; files without any extension are sniffed too.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"})

HEAD = 132  # enough for every magic number (DICOM's is at offset 128)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# JPEG start-of-frame markers (all coding processes); C4, C8 and CC are DHT, JPG and DAC.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# The next marker after entropy-coded data: FF (fill bytes allowed) then anything but a stuffed
# zero or a restart marker.
_JPEG_NEXT_MARKER = re.compile(rb"\xff+[^\x00\xd0-\xd7\xff]")


def sniff_bytes(head: bytes) -> str | None:
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    if head.startswith(b"BM") and len(head) >= 26:
        return "bmp"
    if head[:4] in _TIFF_MAGICS:
        return "tiff"
    if head[128:132] == b"DICM":
        return "dicom"
    return None


@dataclass(frozen=True)
class Header:
    """What a file's header declares, read before decoding: the figures the limits apply to."""

    width: int
    height: int
    channels: int  # as decoded with IMREAD_UNCHANGED (an upper bound where the decoder converts)
    bytes_per_sample: int
    frames: int = 1

    @property
    def decoded_bytes(self) -> int:
        return self.width * self.height * self.channels * self.bytes_per_sample * self.frames


# --- header dimensions, read before any decoding ------------------------------------------------


def read_header(data: bytes, fmt: str, name: str) -> Header:
    try:
        if fmt == "png":
            return _png_header(data, name)
        if fmt == "jpeg":
            return _jpeg_header(data, name)
        if fmt == "bmp":
            return _bmp_header(data, name)
        return _tiff_header(data, name)
    except struct.error:
        raise ImageReadError(f"{name}: truncated {fmt} header") from None


def _png_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """``(type, payload offset, length)`` of each chunk, walking the length prefixes."""
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        yield kind, pos + 8, length
        if kind == b"IEND":
            return
        pos += 12 + length


# IHDR colour type -> channels as OpenCV decodes it unchanged (palette may gain alpha via tRNS).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 4, 4: 4, 6: 4}


def _png_header(data: bytes, name: str) -> Header:
    if data[12:16] != b"IHDR":
        raise ImageReadError(f"{name}: corrupt png (no IHDR chunk)")
    found = None
    for kind, pos, length in _png_chunks(data):
        if kind == b"IHDR":
            if found is not None:
                raise ImageReadError(f"{name}: corrupt png (more than one IHDR chunk)")
            if length != 13:
                raise ImageReadError(f"{name}: corrupt png (IHDR of {length} bytes)")
            found = struct.unpack(">IIBB", data[pos : pos + 10])
    width, height, depth, colour = found  # type: ignore[misc]
    if colour not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16):
        raise ImageReadError(f"{name}: corrupt png (bit depth {depth}, colour type {colour})")
    return Header(width, height, _PNG_CHANNELS[colour], 2 if depth == 16 else 1)


def _jpeg_segments(data: bytes, name: str) -> Iterator[tuple[int, int]]:
    """Yield ``(marker, payload offset)`` for every marker segment of the whole file, skipping
    entropy-coded data after each start-of-scan, up to and including the end-of-image marker.

    An EXIF thumbnail (with its own scan and EOI) sits inside an APP1 segment, which is skipped
    by its length, so it never counts as the main image's.
    """
    pos, n = 2, len(data)
    while pos < n:
        if data[pos] != 0xFF:
            raise ImageReadError(f"{name}: corrupt jpeg (bad marker at byte {pos})")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            return
        marker = data[pos]
        pos += 1
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            continue
        yield marker, pos
        if marker == 0xD9:  # end of image
            return
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2:
            raise ImageReadError(f"{name}: corrupt jpeg (segment length {length} at byte {pos})")
        pos += length
        if marker == 0xDA:  # entropy-coded data runs to the next real marker
            match = _JPEG_NEXT_MARKER.search(data, pos)
            if match is None:
                return
            pos = match.end() - 2


def _jpeg_header(data: bytes, name: str) -> Header:
    frame = None
    for marker, pos in _jpeg_segments(data, name):
        if marker in _JPEG_SOF:
            if frame is not None:
                raise ImageReadError(f"{name}: corrupt jpeg (more than one frame header)")
            precision, height, width, components = struct.unpack(">BHHB", data[pos + 2 : pos + 8])
            frame = (width, height, components, precision)
        elif marker == 0xDA and frame is None:
            break
    if frame is None:
        raise ImageReadError(f"{name}: corrupt or truncated jpeg (no frame header)")
    width, height, components, precision = frame
    if height == 0:
        raise ImageReadError(f"{name}: unsupported jpeg (height defined after the scan, DNL)")
    if components not in (1, 3, 4):
        raise ImageReadError(f"{name}: corrupt jpeg ({components} colour components)")
    return Header(width, height, components, 2 if precision > 8 else 1)


def _bmp_header(data: bytes, name: str) -> Header:
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER
        width, height, _planes, bpp = struct.unpack("<HHHH", data[18:26])
    else:
        width, height, _planes, bpp = struct.unpack("<iiHH", data[18:30])
    if width <= 0 or height in (0, -(2**31)):
        raise ImageReadError(f"{name}: corrupt bmp header (size {width}x{height})")
    return Header(width, abs(height), 4 if bpp == 32 else 3, 1)


_TIFF_TYPES = {1: "B", 3: "H", 4: "I", 16: "Q"}  # BYTE, SHORT, LONG, LONG8
_TIFF_SIZE_TAGS = {256: "ImageWidth", 257: "ImageLength", 258: "BitsPerSample", 277: "SamplesPerPixel"}


def _tiff_header(data: bytes, name: str) -> Header:
    """The first IFD's size fields. Any tag present twice is refused: libtiff and this parser
    might each pick a different copy (a small size checked here, a huge one decoded)."""
    endian = "<" if data[:2] == b"II" else ">"
    if data[2:4] in (b"+\x00", b"\x00+"):
        raise ImageReadError(f"{name}: BigTIFF is not supported")
    (ifd,) = struct.unpack(endian + "I", data[4:8])
    (count,) = struct.unpack(endian + "H", data[ifd : ifd + 2])
    if ifd + 2 + 12 * count > len(data):
        raise ImageReadError(f"{name}: truncated tiff header")
    seen: set[int] = set()
    values: dict[int, list[int]] = {}
    photometric = 1
    for i in range(count):
        entry = data[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
        tag, typ, n = struct.unpack(endian + "HHI", entry[:8])
        if tag in seen:
            name_ = _TIFF_SIZE_TAGS.get(tag, f"tag {tag}")
            raise ImageReadError(f"{name}: ambiguous tiff header ({name_} appears more than once)")
        seen.add(tag)
        if tag == 262 and typ == 3:
            photometric = struct.unpack(endian + "H", entry[8:10])[0]
        if tag not in _TIFF_SIZE_TAGS:
            continue
        if typ not in _TIFF_TYPES or n == 0 or n > 16:
            what = _TIFF_SIZE_TAGS[tag]
            raise ImageReadError(f"{name}: corrupt tiff header ({what}: type {typ}, count {n})")
        fmt = endian + _TIFF_TYPES[typ] * n
        size = struct.calcsize(fmt)
        if size <= 4:
            raw = entry[8 : 8 + size]
        else:
            (offset,) = struct.unpack(endian + "I", entry[8:12])
            raw = data[offset : offset + size]
        values[tag] = list(struct.unpack(fmt, raw))
    for tag in (256, 257):
        if tag not in values or len(values[tag]) != 1:
            what = _TIFF_SIZE_TAGS[tag]
            raise ImageReadError(f"{name}: corrupt tiff header ({what} missing or not one value)")
    spp = values.get(277, [1])[0]
    bits = max(values.get(258, [8]))
    if not 1 <= spp <= 16 or not 1 <= bits <= 64:
        raise ImageReadError(f"{name}: corrupt tiff header ({spp} samples of {bits} bits)")
    channels = max(spp, 3 if photometric in (2, 3, 5, 6) else 1)
    return Header(values[256][0], values[257][0], channels, max(1, math.ceil(bits / 8)))


# --- truncation --------------------------------------------------------------------------------


def check_complete(data: bytes, fmt: str, name: str, width: int, height: int) -> None:
    """Refuse files cut short; decoders would otherwise return a partly grey image silently."""
    if fmt == "png" and not _png_has_iend(data):
        raise ImageReadError(f"{name}: truncated png (no IEND chunk)")
    if fmt == "jpeg" and not _jpeg_has_eoi(data, name):
        raise ImageReadError(f"{name}: truncated jpeg (no end-of-image marker)")
    if fmt == "bmp":
        (offset,) = struct.unpack("<I", data[10:14])
        header_size = struct.unpack("<I", data[14:18])[0]
        if header_size == 12:
            return
        bpp, compression = struct.unpack("<HI", data[28:34])
        if compression in (0, 3):  # BI_RGB, BI_BITFIELDS: rows are stored raw
            row = ((bpp * width + 31) // 32) * 4
            if len(data) < offset + row * height:
                raise ImageReadError(
                    f"{name}: truncated bmp ({len(data):,} of {offset + row * height:,} bytes)"
                )


def _png_has_iend(data: bytes) -> bool:
    """Walk the length-prefixed chunks: a search for the bytes 'IEND' could hit compressed data,
    and data appended after IEND (some tools add it) is harmless."""
    return any(kind == b"IEND" for kind, _pos, _n in _png_chunks(data))


def _jpeg_has_eoi(data: bytes, name: str) -> bool:
    """An end-of-image marker reached by walking every segment and scan from the start. Entropy-
    coded data never contains FF D9 (byte stuffing) and some cameras append data after the EOI:
    so neither "the last two bytes" nor "anywhere in the file" would do."""
    try:
        markers = [marker for marker, _pos in _jpeg_segments(data, name)]
    except struct.error:  # a segment length runs past the end of the file
        return False
    return 0xDA in markers and markers[-1] == 0xD9


# libjpeg's own verdict on a scan that ends early: it warns, then fills the rest with mid-grey.
_JPEG_EARLY_END = (b"premature end of data segment", b"Premature end of JPEG file")
_STDERR_LOCK = threading.Lock()


def check_jpeg_scan(data: bytes, image: np.ndarray, name: str) -> None:
    """Refuse a JPEG whose scan was cut short and closed with an end-of-image marker.

    The file is structurally valid, so only the entropy decoder can tell: libjpeg hits the EOI
    before the last MCU, warns "premature end of data segment" and returns uniform mid-grey
    (exactly 128) for the remaining blocks. OpenCV does not surface that warning, so: a decoded
    image whose last 8 x 8 block is exactly mid-grey in every channel is decoded a second time
    with the C-level stderr captured, and refused if libjpeg warned. Genuine films almost never
    end on an exact mid-grey block, so the second decode is rare.
    """
    fill = 2048 if image.dtype == np.uint16 else 128
    corner = image[-8:, -8:]
    if not np.all(corner == fill):
        return
    captured = _decode_capturing_stderr(data)
    if captured is None or any(text in captured for text in _JPEG_EARLY_END):
        raise ImageReadError(f"{name}: truncated jpeg (the scan ends before the last block; grey fill)")


def _decode_capturing_stderr(data: bytes) -> bytes | None:
    """libjpeg's warnings (written to fd 2) during one decode, or ``None`` if fd 2 is unusable."""
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):
            return None
        try:
            with tempfile.TemporaryFile() as sink:
                os.dup2(sink.fileno(), 2)
                try:
                    with contextlib.suppress(cv2.error):
                        cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
                finally:
                    os.dup2(saved, 2)
                sink.seek(0)
                return sink.read(4096)
        finally:
            os.close(saved)
