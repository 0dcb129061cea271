"""The size limits every image read is held to, and the smallest usable side.

Light island (no numpy needed here). Each limit can be raised by an environment variable, read at
call time so a test or a user can change it without re-importing anything.
"""

from __future__ import annotations

import os

from spinescan.errors import ImageReadError
from spinescan.radiograph.formats import Header

#: The smallest usable side, in pixels: ``spinescan data check --min-size`` defaults to it and
#: lists smaller images, and the predictor refuses them (``read_image(path, min_side=MIN_SIDE)``):
#: a 1 x 1 film has nothing to classify. Training still reads them (phantoms rendered at 128 px
#: are 29 px wide; ``data check`` warns about them), hence a parameter rather than a fixed rule.
MIN_SIDE = 32

_DEFAULT_MAX_PIXELS = 100_000_000
_DEFAULT_MAX_IMAGE_BYTES = 256 * 2**20
_DEFAULT_MAX_FILE_BYTES = 256 * 2**20


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


def pixel_limit(max_pixels: int | None) -> int:
    if max_pixels is not None:
        return int(max_pixels)
    return _env_max_pixels() or MAX_PIXELS


def byte_limit() -> int:
    return _env_int("SPINESCAN_MAX_IMAGE_BYTES") or MAX_IMAGE_BYTES


def file_limit() -> int:
    return _env_int("SPINESCAN_MAX_FILE_BYTES") or MAX_FILE_BYTES


def page_limits() -> dict[str, int]:
    """The limits as they stand now (environment overrides included), for the browser page.

    ``spinescan export`` writes them into the page (``web/limits.js``, see
    :func:`spinescan.export.webpage.limits_module`): the page refuses what :func:`read_image
    <spinescan.radiograph.imageio.read_image>` refuses from one source of numbers, never a copy of them.
    """
    return {
        "max_pixels": pixel_limit(None),
        "max_image_bytes": byte_limit(),
        "max_file_bytes": file_limit(),
        "min_side": MIN_SIDE,
    }


def human_bytes(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB"


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
    most = byte_limit()
    if header.decoded_bytes > most:
        raise ImageReadError(
            f"{name}: {width}x{height} x {header.channels} channel(s) x {header.bytes_per_sample} "
            f"byte(s) = {human_bytes(header.decoded_bytes)} decoded, "
            f"over the {human_bytes(most)} limit "
            "(set SPINESCAN_MAX_IMAGE_BYTES to raise it)"
        )
