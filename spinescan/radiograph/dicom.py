"""DICOM films: the display pipeline (modality LUT, VOI LUT or window, MONOCHROME1 inversion).

Light island; pydicom is imported only when a DICOM file turns up (the ``dicom`` extra).
"""

from __future__ import annotations

from io import BytesIO

import numpy as np

from spinescan.errors import ImageReadError, MissingExtraError
from spinescan.radiograph.formats import Header
from spinescan.radiograph.limits import check_header


def read_dicom(data: bytes, name: str, limit: int) -> np.ndarray:
    """DICOM display pipeline: modality LUT, then VOI LUT or window, then MONOCHROME1 inversion.

    Returns float32 (the modality LUT makes values physical, e.g. signed or fractional).
    """
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError as exc:
        raise MissingExtraError("dicom", "pydicom", "Reading DICOM files") from exc
    try:
        ds = pydicom.dcmread(BytesIO(data))
    except Exception as exc:  # pydicom raises many types for bad files
        raise ImageReadError(f"{name}: corrupt dicom ({exc})") from None
    if "PixelData" not in ds:
        raise ImageReadError(f"{name}: dicom without pixel data")
    _dicom_header_checks(ds, name, limit)
    try:
        raw = ds.pixel_array
    except Exception as exc:  # missing codec, truncated pixel data...
        raise ImageReadError(f"{name}: cannot decode dicom pixel data ({exc})") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        if raw.ndim == 3 and raw.shape[2] == 3 and photometric in ("RGB", "YBR_FULL", "YBR_FULL_422"):
            if photometric != "RGB":
                from pydicom.pixels import convert_color_space

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


def _dicom_header_checks(ds, name: str, limit: int) -> None:
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


def _modality_range(ds, raw: np.ndarray) -> tuple[float, float]:
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


def _voi_range(ds, lo: float, hi: float) -> tuple[float, float]:
    """The output range of the VOI stage: a VOI LUT's bit depth, or the window's (pydicom maps a
    window onto the modality output range)."""
    if ds.get("VOILUTSequence"):
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    return lo, hi
