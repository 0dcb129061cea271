"""Read one radiograph from disk, by its content, refusing what cannot be trusted.

Part of the light "predictor island": numpy and OpenCV only (pydicom is imported only when a
DICOM file turns up), never TensorFlow. This is the one image-reading contract of the project:
training, ``spinescan data check``, the edge predictor and the standalone ``predict.py`` all read
files through :func:`read_image` (or :func:`read_file_bytes` + :func:`decode_image`), so a file
one of them refuses is refused by all, for the same one-line reason.

The contract, in the order it is enforced (each failure an :class:`~spinescan.errors.ImageReadError`
of the form ``"<file>: <reason>"``):

1. **Regular files only.** The file is opened with ``O_NONBLOCK`` and ``fstat``-ed before a byte
   is read, so a FIFO cannot hang the reader, ``/dev/zero`` cannot grow memory without bound, and
   folders, sockets and devices get one line each.
2. **Format from the first bytes** (the original project's sample ``001.jpg`` is really an RGBA
   PNG): only the first 132 bytes are read until the magic number is recognised.
3. **File size cap** (:data:`MAX_FILE_BYTES`) from ``fstat``, before the rest is read: a 3 GB sparse
   file named ``.png`` costs nothing.
4. **Every header field that declares a size is checked** before decoding, against a pixel limit
   (:data:`MAX_PIXELS`) *and* a decoded-bytes limit (:data:`MAX_IMAGE_BYTES`, width x height x
   channels x bytes per sample: a 9999 x 9999 16-bit RGBA PNG is 100 Mpx but 800 MB). Headers
   that could be read two ways are refused rather than guessed: a TIFF with a duplicated tag
   (libtiff and a naive parser disagree on which one wins), a PNG with a second IHDR, a JPEG with
   a second frame header, a DICOM whose rows/columns/frames/bits do not fit.
5. **Completeness**: truncated PNG/JPEG/BMP files are refused, including a JPEG cut mid-scan with
   an end-of-image marker glued on (decoders silently fill the rest with mid-grey).
6. **Content**: non-finite pixels (a NaN in a float TIFF poisons training and prediction alike)
   and constant images (nothing to classify) are refused; so are images with a side under
   ``min_side`` (the predictor passes :data:`MIN_SIDE`, the minimum ``data check`` reports).

Colour images keep OpenCV's BGR(A) channel order: :func:`spinescan.edge.preprocess.to_grey` expects it.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import stat
import struct
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np

from spinescan.errors import ImageReadError, MissingExtraError

SUPPORTED = ("png", "jpeg", "bmp", "tiff", "dicom")

# Extensions considered when scanning a folder; files without any extension are sniffed too.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"})

#: The smallest usable side, in pixels: ``spinescan data check --min-size`` defaults to it and
#: lists smaller images, and the predictor refuses them (``read_image(path, min_side=MIN_SIDE)``):
#: a 1 x 1 film has nothing to classify. Training still reads them (phantoms rendered at 128 px
#: are 29 px wide; ``data check`` warns about them), hence a parameter rather than a fixed rule.
MIN_SIDE = 32

_DEFAULT_MAX_PIXELS = 100_000_000
_DEFAULT_MAX_IMAGE_BYTES = 256 * 2**20
_DEFAULT_MAX_FILE_BYTES = 256 * 2**20
_HEAD = 132  # enough for every magic number (DICOM's is at offset 128)


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value > 0 else None


def _env_max_pixels() -> int | None:
    return _env_int("SPINESCAN_MAX_PIXELS")


# A full-spine film at 0.1 mm/pixel is about 4,000 x 10,000 = 40 Mpx; 100 Mpx leaves headroom
# while refusing the multi-gigapixel headers that decompression bombs use.
MAX_PIXELS: int = _env_max_pixels() or _DEFAULT_MAX_PIXELS
#: Decoded size limit in bytes (``SPINESCAN_MAX_IMAGE_BYTES``): a 40 Mpx 16-bit grey film is 80 MB.
#: With it one decoded image, and the float32 copies preprocessing makes of it, stay well
#: under 1 GB, whatever a folder holds (the predictor decodes one file at a time).
MAX_IMAGE_BYTES: int = _env_int("SPINESCAN_MAX_IMAGE_BYTES") or _DEFAULT_MAX_IMAGE_BYTES
#: File size limit in bytes (``SPINESCAN_MAX_FILE_BYTES``), checked with ``fstat`` before reading.
MAX_FILE_BYTES: int = _env_int("SPINESCAN_MAX_FILE_BYTES") or _DEFAULT_MAX_FILE_BYTES

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# JPEG start-of-frame markers (all coding processes); C4, C8 and CC are DHT, JPG and DAC.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# The next marker after entropy-coded data: FF (fill bytes allowed) then anything but a stuffed
# zero or a restart marker.
_JPEG_NEXT_MARKER = re.compile(rb"\xff+[^\x00\xd0-\xd7\xff]")


def sniff_format(path: str | os.PathLike[str]) -> str | None:
    """The format named by the file's magic bytes (one of :data:`SUPPORTED`), or ``None``.

    Never blocks: a FIFO or a device is not a regular file and gives ``None``.
    """
    try:
        fd = _open_regular(Path(path))
    except ImageReadError:
        return None
    try:
        head = os.read(fd, _HEAD)
    except OSError:
        return None
    finally:
        os.close(fd)
    return _sniff_bytes(head)


def _sniff_bytes(head: bytes) -> str | None:
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


def is_image_candidate(path: Path) -> bool:
    """Whether a folder scan should consider ``path``: known extension, or no extension and a
    recognised magic number. Hidden files (dot-files, macOS ``._`` forks) are never images."""
    if path.name.startswith("."):
        return False
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return True
    return suffix == "" and sniff_format(path) is not None


def _limit(max_pixels: int | None) -> int:
    if max_pixels is not None:
        return int(max_pixels)
    return _env_max_pixels() or MAX_PIXELS


def _byte_limit() -> int:
    return _env_int("SPINESCAN_MAX_IMAGE_BYTES") or MAX_IMAGE_BYTES


def _file_limit() -> int:
    return _env_int("SPINESCAN_MAX_FILE_BYTES") or MAX_FILE_BYTES


def _human(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB"


# --- finding images in folders ---------------------------------------------------------------------


def walk_files(folder: Path, warn: Callable[[str], None], skip_hidden_dirs: bool = False) -> Iterator[Path]:
    """Every file below ``folder`` in sorted order, following symlinked folders once.

    A symlink that loops (points to itself, to a folder above it, or to a chain that never ends)
    is reported through ``warn`` with one line and not followed, instead of being skipped in
    silence or walked forever.
    """
    ancestors: set[tuple[int, int]] = set()
    for above in Path(os.path.realpath(folder)).parents:  # a link up to the dataset root loops too
        with contextlib.suppress(OSError):
            st = above.stat()
            ancestors.add((st.st_dev, st.st_ino))

    def visit(directory: Path) -> Iterator[Path]:
        try:
            st = directory.stat()
        except OSError:
            return
        key = (st.st_dev, st.st_ino)
        ancestors.add(key)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            warn(f"{directory}: cannot list folder ({exc.strerror or exc})")
            entries = []
        for entry in entries:
            path = Path(entry.path)
            if entry.is_symlink():
                try:
                    target = path.stat()
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        warn(f"{path}: symlink loop, skipped")
                    continue  # a dangling link is simply not a file
                if stat.S_ISDIR(target.st_mode):
                    if (target.st_dev, target.st_ino) in ancestors:
                        warn(f"{path}: symlink loop (points back to {os.path.realpath(path)}), not followed")
                        continue
                    if not (skip_hidden_dirs and entry.name.startswith(".")):
                        yield from visit(path)
                    continue
                if stat.S_ISREG(target.st_mode):
                    yield path
                continue
            if entry.is_dir(follow_symlinks=False):
                if not (skip_hidden_dirs and entry.name.startswith(".")):
                    yield from visit(path)
            elif entry.is_file(follow_symlinks=False):
                yield path
        ancestors.discard(key)

    yield from visit(folder)


def find_images(folder: Path, warn: Callable[[str], None], skip_hidden_dirs: bool = False) -> list[Path]:
    """The image candidates (:func:`is_image_candidate`) below ``folder``, sorted."""
    return sorted(p for p in walk_files(folder, warn, skip_hidden_dirs) if is_image_candidate(p))


# --- reading bytes --------------------------------------------------------------------------------


_KINDS = (
    (stat.S_ISDIR, "is a folder, not an image"),
    (stat.S_ISFIFO, "is a FIFO (named pipe), not a regular file"),
    (stat.S_ISCHR, "is a character device, not a regular file"),
    (stat.S_ISBLK, "is a block device, not a regular file"),
    (stat.S_ISSOCK, "is a socket, not a regular file"),
)


def _not_regular(mode: int) -> str | None:
    for test, why in _KINDS:
        if test(mode):
            return why
    return None if stat.S_ISREG(mode) else "is not a regular file"


def _open_regular(path: Path) -> int:
    """An fd on ``path`` opened without blocking, after checking it is a regular file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    why = _not_regular(mode)
    if why:
        raise ImageReadError(f"{path}: {why}")
    try:  # O_NONBLOCK: if the path was swapped for a FIFO since the stat, open still returns
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    why = _not_regular(os.fstat(fd).st_mode)
    if why:
        os.close(fd)
        raise ImageReadError(f"{path}: {why}")
    return fd


def _read_exactly(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left > 0:
        block = os.read(fd, min(left, 1 << 24))
        if not block:
            break
        chunks.append(block)
        left -= len(block)
    return b"".join(chunks)


def read_file_bytes(path: str | os.PathLike[str], max_file_bytes: int | None = None) -> bytes:
    """The bytes of an image file, read only once it is known to be a regular file of a supported
    format (first bytes) and of a size under :data:`MAX_FILE_BYTES`.

    ``data check`` hashes these bytes and decodes them with :func:`decode_image`: one read per file.
    """
    path = Path(path)
    limit = int(max_file_bytes) if max_file_bytes is not None else _file_limit()
    fd = _open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            raise ImageReadError(f"{path}: empty file (0 bytes)")
        try:
            head = os.read(fd, _HEAD)
        except OSError as exc:
            raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
        if _sniff_bytes(head) is None:
            raise ImageReadError(f"{path}: not a supported image (expected one of {', '.join(SUPPORTED)})")
        if size > limit:
            raise ImageReadError(
                f"{path}: file is {_human(size)}, over the {_human(limit)} limit "
                "(set SPINESCAN_MAX_FILE_BYTES to raise it)"
            )
        try:
            return head + _read_exactly(fd, size - len(head))
        except OSError as exc:
            raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def read_image(path: str | os.PathLike[str], max_pixels: int | None = None, min_side: int = 1) -> np.ndarray:
    """Decode one image in its native dtype (uint8, uint16 or float32), 2-D grey or HxWxC.

    ``max_pixels`` defaults to :data:`MAX_PIXELS` (``SPINESCAN_MAX_PIXELS`` overrides it);
    ``min_side`` is the smallest accepted side (the predictor passes :data:`MIN_SIDE`).
    Raises :class:`ImageReadError` for anything that is not a
    complete, supported, finite, non-constant image within the limits (see the module docstring).
    """
    path = Path(path)
    return decode_image(read_file_bytes(path), str(path), max_pixels, min_side)


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


def decode_image(
    data: bytes, name: str = "<bytes>", max_pixels: int | None = None, min_side: int = 1
) -> np.ndarray:
    """:func:`read_image` for bytes already in memory (``name`` only labels error messages)."""
    if not data:
        raise ImageReadError(f"{name}: empty file (0 bytes)")
    fmt = _sniff_bytes(data[:_HEAD])
    if fmt is None:
        raise ImageReadError(f"{name}: not a supported image (expected one of {', '.join(SUPPORTED)})")
    limit = _limit(max_pixels)
    if fmt == "dicom":
        image = _read_dicom(data, name, limit)
    else:
        header = _header(data, fmt, name)
        check_header(header, limit, name)
        try:
            _check_complete(data, fmt, name, header.width, header.height)
        except struct.error:  # found by tests/test_fuzz.py: a BMP cut inside its info header
            raise ImageReadError(f"{name}: truncated {fmt} header") from None
        image = _decode(data, fmt, name)
        if image.shape[:2] != (header.height, header.width):
            raise ImageReadError(
                f"{name}: corrupt {fmt} (decoded {image.shape[1]}x{image.shape[0]}, header says "
                f"{header.width}x{header.height})"
            )
        if fmt == "jpeg":
            _check_jpeg_scan(data, image, name)
    return check_pixels(_native(image), name, min_side)


def _decode(data: bytes, fmt: str, name: str) -> np.ndarray:
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageReadError(f"{name}: corrupt {fmt} ({str(exc).strip().splitlines()[-1]})") from None
    if image is None or image.size == 0:
        raise ImageReadError(f"{name}: corrupt {fmt} (the decoder could not read it)")
    return image


def _native(image: np.ndarray) -> np.ndarray:
    """Keep uint8/uint16/float32; anything rarer (int16, float64 TIFFs) becomes float32."""
    if image.dtype in (np.uint8, np.uint16, np.float32):
        return image
    return image.astype(np.float32)


def check_header(header: Header, limit: int, name: str) -> None:
    """Refuse a declared size that is corrupt or over the pixel or decoded-bytes limit."""
    width, height = header.width, header.height
    if width <= 0 or height <= 0 or header.frames <= 0:
        raise ImageReadError(f"{name}: corrupt header (size {width}x{height})")
    pixels = width * height * header.frames
    if pixels > limit:
        raise ImageReadError(
            f"{name}: {width}x{height} = {pixels:,} pixels exceeds the limit of {limit:,} "
            "(set SPINESCAN_MAX_PIXELS to raise it)"
        )
    byte_limit = _byte_limit()
    if header.decoded_bytes > byte_limit:
        raise ImageReadError(
            f"{name}: {width}x{height} x {header.channels} channel(s) x {header.bytes_per_sample} "
            f"byte(s) = {_human(header.decoded_bytes)} decoded, over the {_human(byte_limit)} limit "
            "(set SPINESCAN_MAX_IMAGE_BYTES to raise it)"
        )


def check_pixels(image: np.ndarray, name: str, min_side: int = 1) -> np.ndarray:
    """Refuse decoded content no model should see: non-finite values, a side under ``min_side``,
    or one constant value (the alpha channel aside)."""
    height, width = image.shape[:2]
    if min_side and min(height, width) < min_side:
        raise ImageReadError(
            f"{name}: {width}x{height} is smaller than the minimum of {min_side} px on a side"
        )
    if image.dtype.kind == "f":
        rows = max(1, (1 << 22) // max(1, image[0].size))  # about 4 M values at a time
        for top in range(0, height, rows):
            if not np.isfinite(image[top : top + rows]).all():
                raise ImageReadError(f"{name}: non-finite pixel values (NaN or infinity)")
    colour = image
    if image.ndim == 3 and image.shape[2] in (2, 4):
        colour = image[:, :, : image.shape[2] - 1]
    if image.size and colour.min() == colour.max():
        value = colour.flat[0]
        raise ImageReadError(f"{name}: constant image (every pixel is {value!r}); nothing to classify")
    return image


# --- header dimensions, read before any decoding ------------------------------------------------


def _header(data: bytes, fmt: str, name: str) -> Header:
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


def _check_complete(data: bytes, fmt: str, name: str, width: int, height: int) -> None:
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


def _check_jpeg_scan(data: bytes, image: np.ndarray, name: str) -> None:
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


# --- DICOM ---------------------------------------------------------------------------------------


def _read_dicom(data: bytes, name: str, limit: int) -> np.ndarray:
    """DICOM display pipeline: modality LUT, then VOI LUT or window, then MONOCHROME1 inversion.

    Returns float32 (the modality LUT makes values physical, e.g. signed or fractional).
    """
    try:
        import pydicom  # noqa: PLC0415
        from pydicom.pixels import apply_modality_lut, apply_voi_lut  # noqa: PLC0415
    except ImportError as exc:
        raise MissingExtraError("dicom", "pydicom", "Reading DICOM files") from exc
    try:
        ds = pydicom.dcmread(BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for bad files
        raise ImageReadError(f"{name}: corrupt dicom ({exc})") from None
    if "PixelData" not in ds:
        raise ImageReadError(f"{name}: dicom without pixel data")
    _dicom_header_checks(ds, name, limit)
    try:
        raw = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - missing codec, truncated pixel data...
        raise ImageReadError(f"{name}: cannot decode dicom pixel data ({exc})") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        if raw.ndim == 3 and raw.shape[2] == 3 and photometric in ("RGB", "YBR_FULL", "YBR_FULL_422"):
            if photometric != "RGB":
                from pydicom.pixels import convert_color_space  # noqa: PLC0415

                raw = convert_color_space(raw, photometric, "RGB")
            return np.ascontiguousarray(raw[:, :, ::-1]).astype(np.float32)  # BGR, like OpenCV
        raise ImageReadError(f"{name}: unsupported dicom photometric interpretation {photometric}")
    try:
        x = apply_modality_lut(raw, ds)
        lo, hi = _modality_range(ds, raw)
        voi = apply_voi_lut(x, ds)
        if voi is not x:
            lo, hi = _voi_range(ds, lo, hi)
        x = np.asarray(voi, dtype=np.float64)
    except ValueError as exc:
        raise ImageReadError(f"{name}: invalid dicom LUT or window ({exc})") from None
    if photometric == "MONOCHROME1":  # 0 is white: flip within the output range
        x = (lo + hi) - x
    return x.astype(np.float32)


def _dicom_header_checks(ds, name: str, limit: int) -> None:  # noqa: ANN001
    """Rows, columns, frames, samples and bits allocated, all checked before pixel data is
    decoded. The display pipeline works in float64, so 8 bytes per sample is what the limit sees."""
    try:
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(str(ds.get("NumberOfFrames", 1) or 1).strip() or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.get("BitsAllocated", 16) or 16)
    except (TypeError, ValueError) as exc:
        raise ImageReadError(f"{name}: corrupt dicom header ({exc})") from None
    if frames < 1 or samples not in (1, 3) or bits not in (1, 8, 16, 32, 64):
        raise ImageReadError(
            f"{name}: corrupt dicom header ({frames} frame(s), {samples} sample(s) of {bits} bits)"
        )
    if frames > 1:
        raise ImageReadError(f"{name}: multi-frame dicom ({frames} frames) is not a radiograph")
    check_header(Header(cols, rows, samples, 8), limit, name)


def _modality_range(ds, raw: np.ndarray) -> tuple[float, float]:  # noqa: ANN001
    """The value range after the modality LUT, from the header rather than this image's content."""
    if ds.get("ModalityLUTSequence"):
        bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    bits = int(ds.get("BitsStored", raw.dtype.itemsize * 8))
    if int(ds.get("PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, float(2**bits - 1)
    else:
        lo, hi = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    a, b = lo * slope + intercept, hi * slope + intercept
    return min(a, b), max(a, b)


def _voi_range(ds, lo: float, hi: float) -> tuple[float, float]:  # noqa: ANN001
    """The output range of the VOI stage: a VOI LUT's bit depth, or the window's (pydicom maps a
    window onto the modality output range)."""
    if ds.get("VOILUTSequence"):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    return lo, hi
