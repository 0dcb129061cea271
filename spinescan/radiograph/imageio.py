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

Colour images keep OpenCV's BGR(A) channel order: :func:`spinescan.radiograph.preprocess.to_grey` expects it.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np

from spinescan.errors import ImageReadError
from spinescan.radiograph.dicom import read_dicom
from spinescan.radiograph.files import (
    find_images,
    is_image_candidate,
    read_file_bytes,
    sniff_format,
    walk_files,
)
from spinescan.radiograph.formats import (
    HEAD,
    IMAGE_SUFFIXES,
    SUPPORTED,
    Header,
    check_complete,
    check_jpeg_scan,
    read_header,
    sniff_bytes,
)
from spinescan.radiograph.limits import (
    MAX_FILE_BYTES,
    MAX_IMAGE_BYTES,
    MAX_PIXELS,
    MIN_SIDE,
    check_header,
    pixel_limit,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_FILE_BYTES",
    "MAX_IMAGE_BYTES",
    "MAX_PIXELS",
    "MIN_SIDE",
    "SUPPORTED",
    "Header",
    "check_header",
    "check_pixels",
    "decode_image",
    "find_images",
    "is_image_candidate",
    "read_file_bytes",
    "read_image",
    "sniff_format",
    "walk_files",
]


def read_image(path: str | os.PathLike[str], max_pixels: int | None = None, min_side: int = 1) -> np.ndarray:
    """Decode one image in its native dtype (uint8, uint16 or float32), 2-D grey or HxWxC.

    ``max_pixels`` defaults to :data:`MAX_PIXELS` (``SPINESCAN_MAX_PIXELS`` overrides it);
    ``min_side`` is the smallest accepted side (the predictor passes :data:`MIN_SIDE`).
    Raises :class:`ImageReadError` for anything that is not a
    complete, supported, finite, non-constant image within the limits (see the module docstring).
    """
    path = Path(path)
    return decode_image(read_file_bytes(path), str(path), max_pixels, min_side)


def decode_image(
    data: bytes, name: str = "<bytes>", max_pixels: int | None = None, min_side: int = 1
) -> np.ndarray:
    """:func:`read_image` for bytes already in memory (``name`` only labels error messages)."""
    if not data:
        raise ImageReadError(f"{name}: empty file (0 bytes)")
    fmt = sniff_bytes(data[:HEAD])
    if fmt is None:
        raise ImageReadError(f"{name}: not a supported image (expected one of {', '.join(SUPPORTED)})")
    limit = pixel_limit(max_pixels)
    if fmt == "dicom":
        image = read_dicom(data, name, limit)
    else:
        header = read_header(data, fmt, name)
        check_header(header, limit, name)
        try:
            check_complete(data, fmt, name, header.width, header.height)
        except struct.error:  # found by tests/test_fuzz.py: a BMP cut inside its info header
            raise ImageReadError(f"{name}: truncated {fmt} header") from None
        image = _decode(data, fmt, name)
        if image.shape[:2] != (header.height, header.width):
            raise ImageReadError(
                f"{name}: corrupt {fmt} (decoded {image.shape[1]}x{image.shape[0]}, header says "
                f"{header.width}x{header.height})"
            )
        if fmt == "jpeg":
            check_jpeg_scan(data, image, name)
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
