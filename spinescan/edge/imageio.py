"""Read one radiograph from disk, by its content, refusing what cannot be trusted.

Part of the light "predictor island": numpy and OpenCV only (pydicom is imported only when a
DICOM file turns up), never TensorFlow, so the edge predictor and the trainer decode files the
same way.

Why not just ``cv2.imread``? It picks the decoder by content but says nothing about *why* a file
failed, silently returns the top part of a truncated JPEG, and would happily allocate gigabytes
for a crafted header. Here the format is sniffed from magic bytes (the original project's sample
``001.jpg`` is really an RGBA PNG), the header dimensions are checked against a pixel limit
before anything is decoded (decompression-bomb guard), truncated PNG/JPEG/BMP files are refused
rather than half-read, and every failure is an :class:`~spinescan.errors.ImageReadError` of the
form ``"<file>: <reason>"``.

Colour images keep OpenCV's BGR(A) channel order: :func:`spinescan.edge.preprocess.to_grey` expects it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np

from spinescan.errors import ImageReadError, MissingExtraError

SUPPORTED = ("png", "jpeg", "bmp", "tiff", "dicom")

# Extensions considered when scanning a folder; files without any extension are sniffed too.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"})

_DEFAULT_MAX_PIXELS = 100_000_000


def _env_max_pixels() -> int | None:
    raw = os.environ.get("SPINESCAN_MAX_PIXELS")
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


# A full-spine film at 0.1 mm/pixel is about 4,000 x 10,000 = 40 Mpx; 100 Mpx leaves headroom
# while refusing the multi-gigapixel headers that decompression bombs use.
MAX_PIXELS: int = _env_max_pixels() or _DEFAULT_MAX_PIXELS

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"
_JPEG_MAGIC = b"\xff\xd8\xff"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# JPEG start-of-frame markers (all coding processes); C4, C8 and CC are DHT, JPG and DAC.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def sniff_format(path: str | os.PathLike[str]) -> str | None:
    """The format named by the file's magic bytes (one of :data:`SUPPORTED`), or ``None``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return None
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
    return suffix == "" and path.is_file() and sniff_format(path) is not None


def _limit(max_pixels: int | None) -> int:
    if max_pixels is not None:
        return int(max_pixels)
    return _env_max_pixels() or MAX_PIXELS


def read_image(path: str | os.PathLike[str], max_pixels: int | None = None) -> np.ndarray:
    """Decode one image in its native dtype (uint8, uint16 or float32), 2-D grey or HxWxC.

    ``max_pixels`` defaults to :data:`MAX_PIXELS` (``SPINESCAN_MAX_PIXELS`` overrides it).
    Raises :class:`ImageReadError` for anything that is not a complete, supported image.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a folder, not an image") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decode_image(data, str(path), max_pixels)


def decode_image(data: bytes, name: str = "<bytes>", max_pixels: int | None = None) -> np.ndarray:
    """:func:`read_image` for bytes already in memory (``name`` only labels error messages).

    The dataset checker reads each file once for both its md5 and this decode.
    """
    if not data:
        raise ImageReadError(f"{name}: empty file (0 bytes)")
    fmt = _sniff_bytes(data[:132])
    if fmt is None:
        raise ImageReadError(f"{name}: not a supported image (expected one of {', '.join(SUPPORTED)})")
    limit = _limit(max_pixels)
    if fmt == "dicom":
        return _read_dicom(data, name, limit)
    width, height = _header_size(data, fmt, name)
    _check_pixels(width, height, limit, name)
    _check_complete(data, fmt, name, width, height)
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageReadError(f"{name}: corrupt {fmt} ({str(exc).strip().splitlines()[-1]})") from None
    if image is None or image.size == 0:
        raise ImageReadError(f"{name}: corrupt {fmt} (the decoder could not read it)")
    return _native(image)


def _native(image: np.ndarray) -> np.ndarray:
    """Keep uint8/uint16/float32; anything rarer (int16, float64 TIFFs) becomes float32."""
    if image.dtype in (np.uint8, np.uint16, np.float32):
        return image
    return image.astype(np.float32)


def _check_pixels(width: int, height: int, limit: int, name: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageReadError(f"{name}: corrupt header (size {width}x{height})")
    if width * height > limit:
        raise ImageReadError(
            f"{name}: {width}x{height} = {width * height:,} pixels exceeds the limit of {limit:,} "
            "(set SPINESCAN_MAX_PIXELS to raise it)"
        )


# --- header dimensions, read before any decoding ------------------------------------------------


def _header_size(data: bytes, fmt: str, name: str) -> tuple[int, int]:
    try:
        if fmt == "png":
            return _png_size(data, name)
        if fmt == "jpeg":
            return _jpeg_size(data, name)
        if fmt == "bmp":
            return _bmp_size(data, name)
        return _tiff_size(data, name)
    except struct.error:
        raise ImageReadError(f"{name}: truncated {fmt} header") from None


def _png_size(data: bytes, name: str) -> tuple[int, int]:
    if data[12:16] != b"IHDR":
        raise ImageReadError(f"{name}: corrupt png (no IHDR chunk)")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _jpeg_markers(data: bytes, name: str) -> Iterator[tuple[int, int]]:
    """Yield ``(marker, payload offset)`` for the header segments, up to and including the first
    start-of-scan (after which entropy-coded data follows)."""
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
        if marker in (0xD9, 0xDA):  # end of image, or start of scan
            return
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        pos += length


def _jpeg_size(data: bytes, name: str) -> tuple[int, int]:
    for marker, pos in _jpeg_markers(data, name):
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[pos + 3 : pos + 7])
            return width, height
    raise ImageReadError(f"{name}: corrupt or truncated jpeg (no frame header)")


def _bmp_size(data: bytes, name: str) -> tuple[int, int]:
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack("<HH", data[18:22])
        return width, height
    width, height = struct.unpack("<ii", data[18:26])
    return width, abs(height)


def _tiff_size(data: bytes, name: str) -> tuple[int, int]:
    endian = "<" if data[:2] == b"II" else ">"
    if data[2:4] in (b"+\x00", b"\x00+"):  # BigTIFF: leave the size check to the decoder's own
        raise ImageReadError(f"{name}: BigTIFF is not supported")
    (ifd,) = struct.unpack(endian + "I", data[4:8])
    (count,) = struct.unpack(endian + "H", data[ifd : ifd + 2])
    width = height = 0
    for i in range(count):
        entry = data[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
        tag, typ, _n = struct.unpack(endian + "HHI", entry[:8])
        if tag not in (256, 257):
            continue
        short = typ == 3  # SHORT or LONG
        (value,) = struct.unpack(endian + ("H" if short else "I"), entry[8:10] if short else entry[8:12])
        if tag == 256:
            width = value
        else:
            height = value
    return width, height


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
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        if data[pos + 4 : pos + 8] == b"IEND":
            return True
        pos += 12 + length
    return False


def _jpeg_has_eoi(data: bytes, name: str) -> bool:
    """An end-of-image marker after the first start-of-scan. Entropy-coded data never contains
    FF D9 (byte stuffing), an EXIF thumbnail (with its own scan and EOI) sits inside a header
    segment that the marker walk skips, and some cameras append data after the EOI: so neither
    "the last two bytes" nor "anywhere in the file" would do."""
    try:
        sos = next((pos for marker, pos in _jpeg_markers(data, name) if marker == 0xDA), -1)
    except struct.error:  # a segment length runs past the end of the file
        return False
    return sos >= 0 and data.find(b"\xff\xd9", sos) >= 0


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
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    _check_pixels(cols, rows, limit, name)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageReadError(f"{name}: multi-frame dicom ({frames} frames) is not a radiograph")
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
