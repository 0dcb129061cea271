"""Image reading by content: formats, bit depths, channel layouts, DICOM, and refusals."""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from spinescan.errors import ImageReadError, MissingExtraError
from spinescan.radiograph import imageio
from spinescan.radiograph.imageio import is_image_candidate, read_image, sniff_format
from spinescan.radiograph.preprocess import Preprocessing, preprocess

RNG = np.random.default_rng(0)


def _pixels(dtype: type, channels: int, shape: tuple[int, int] = (40, 36)) -> np.ndarray:
    high = 65535 if dtype == np.uint16 else 255
    full = (*shape, channels) if channels > 1 else shape
    return RNG.integers(0, high, size=full, dtype=dtype)


def _write(path: Path, image: np.ndarray, ext: str) -> Path:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


LOSSLESS = [
    (fmt, ext, dtype, channels)
    for fmt, ext, depths in (
        ("png", ".png", (np.uint8, np.uint16)),
        ("tiff", ".tiff", (np.uint8, np.uint16)),
        ("bmp", ".bmp", (np.uint8,)),
    )
    for dtype in depths
    for channels in (1, 3, 4)
    if not (fmt == "bmp" and channels == 4)
]


@pytest.mark.parametrize(("fmt", "ext", "dtype", "channels"), LOSSLESS)
def test_lossless_formats_round_trip(tmp_path: Path, fmt: str, ext: str, dtype: type, channels: int) -> None:
    image = _pixels(dtype, channels)
    path = _write(tmp_path / f"im{ext}", image, ext)
    assert sniff_format(path) == fmt
    out = read_image(path)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, image)


def test_float32_tiff_keeps_its_dtype(tmp_path: Path) -> None:
    image = RNG.normal(size=(40, 36)).astype(np.float32)
    path = _write(tmp_path / "f.tif", image, ".tiff")
    out = read_image(path)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_grey_and_colour(tmp_path: Path, channels: int) -> None:
    base = np.tile(np.linspace(0, 255, 36, dtype=np.uint8), (40, 1))
    image = base if channels == 1 else np.dstack([base] * 3)
    path = _write(tmp_path / "im.jpg", image, ".jpg")
    out = read_image(path)
    assert sniff_format(path) == "jpeg"
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - image.astype(int)).mean() < 3


def test_format_comes_from_content_not_extension(tmp_path: Path) -> None:
    """The original project's sample '001.jpg' is an RGBA PNG."""
    image = _pixels(np.uint8, 4)
    path = _write(tmp_path / "001.jpg", image, ".png")
    assert sniff_format(path) == "png"
    np.testing.assert_array_equal(read_image(path), image)


def test_extensionless_files_are_sniffed_and_hidden_files_ignored(tmp_path: Path) -> None:
    image = _pixels(np.uint8, 1)
    bare = _write(tmp_path / "IM0001", image, ".png")
    (tmp_path / "notes").write_text("not an image")
    hidden = _write(tmp_path / "._im.png", image, ".png")
    assert is_image_candidate(bare)
    assert not is_image_candidate(tmp_path / "notes")
    assert not is_image_candidate(hidden)
    np.testing.assert_array_equal(read_image(bare), image)


# --- refusals ----------------------------------------------------------------------------------


def _error(path: Path, **kwargs: object) -> str:
    with pytest.raises(ImageReadError) as info:
        read_image(path, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    return message


def test_missing_zero_byte_and_text_files(tmp_path: Path) -> None:
    assert "not found" in _error(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    assert "empty" in _error(tmp_path / "empty.png")
    (tmp_path / "text.png").write_text("hello, I am a text file\n" * 10)
    assert "not a supported image" in _error(tmp_path / "text.png")
    assert "folder" in _error(tmp_path)


def test_truncated_png_and_jpeg(tmp_path: Path) -> None:
    png = _write(tmp_path / "a.png", _pixels(np.uint8, 1, (200, 200)), ".png")
    png.write_bytes(png.read_bytes()[:-40])
    assert "truncated png" in _error(png)
    jpg = _write(tmp_path / "a.jpg", _pixels(np.uint8, 3, (200, 200)), ".jpg")
    jpg.write_bytes(jpg.read_bytes()[: len(jpg.read_bytes()) // 2])
    assert "truncated jpeg" in _error(jpg)
    bmp = _write(tmp_path / "a.bmp", _pixels(np.uint8, 3, (200, 200)), ".bmp")
    bmp.write_bytes(bmp.read_bytes()[:5000])
    assert "truncated bmp" in _error(bmp)


def test_trailing_data_is_tolerated_but_a_thumbnail_eoi_does_not_hide_truncation(tmp_path: Path) -> None:
    image = _pixels(np.uint8, 1, (120, 80))
    png = _write(tmp_path / "a.png", image, ".png")
    png.write_bytes(png.read_bytes() + b"trailing bytes some tools append" * 200)
    np.testing.assert_array_equal(read_image(png), image)
    jpg = _write(tmp_path / "a.jpg", image, ".jpg")
    data = jpg.read_bytes()
    jpg.write_bytes(data + b"\x00" * 10 + b"camera trailer" * 100)
    assert read_image(jpg).shape == image.shape
    # An EXIF-like APP1 segment holding a whole thumbnail (its own scan and EOI), then the main
    # image cut in half: the thumbnail's EOI must not count as the main image's.
    thumb = _write(tmp_path / "t.jpg", _pixels(np.uint8, 1, (8, 8)), ".jpg").read_bytes()
    app1 = b"\xff\xe1" + struct.pack(">H", len(thumb) + 8) + b"Exif\x00\x00" + thumb
    jpg.write_bytes(data[:2] + app1 + data[2 : len(data) // 2])
    assert "truncated jpeg" in _error(jpg)


def test_corrupt_png_with_intact_ends(tmp_path: Path) -> None:
    png = _write(tmp_path / "a.png", _pixels(np.uint8, 1, (64, 64)), ".png")
    data = bytearray(png.read_bytes())
    data[60:-20] = bytes(len(data) - 80)  # zero the compressed stream, keep IHDR and IEND
    png.write_bytes(bytes(data))
    assert "corrupt png" in _error(png)


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + chunk + iend


def _jpeg_header(width: int, height: int) -> bytes:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 4) + b"\x00\x00" + sof + b"\xff\xd9"


def _bmp_header(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + info


def _tiff_header(width: int, height: int) -> bytes:
    entries = [struct.pack("<HHII", tag, 4, 1, value) for tag, value in ((256, width), (257, height))]
    return b"II*\x00" + struct.pack("<IH", 8, len(entries)) + b"".join(entries) + struct.pack("<I", 0)


@pytest.mark.parametrize("header", [_png_header, _jpeg_header, _bmp_header, _tiff_header])
def test_pixel_limit_is_checked_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, header: object
) -> None:
    """A decompression bomb: a tiny file whose header claims 60,000 x 60,000 pixels."""

    def no_decode(*args: object) -> None:
        raise AssertionError("decoded a file whose header exceeds the pixel limit")

    monkeypatch.setattr(imageio.cv2, "imdecode", no_decode)
    path = tmp_path / "bomb.img"
    path.write_bytes(header(60_000, 60_000))  # type: ignore[operator]
    assert len(path.read_bytes()) < 100
    assert "exceeds the limit" in _error(path)


def test_pixel_limit_argument_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "a.png", _pixels(np.uint8, 1, (100, 100)), ".png")
    assert read_image(path).shape == (100, 100)
    assert "exceeds the limit of 5,000" in _error(path, max_pixels=5000)
    monkeypatch.setenv("SPINESCAN_MAX_PIXELS", "9999")
    assert "exceeds the limit of 9,999" in _error(path)
    assert read_image(path, max_pixels=10_000).shape == (100, 100)


# --- DICOM -------------------------------------------------------------------------------------


def _write_dicom(path: Path, stored: np.ndarray, photometric: str, **tags: object) -> Path:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = stored.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


# Stored values chosen so that windowing the raw values instead of the rescaled ones (the wrong
# order) gives a different answer: raw 0, 50, 100, 200 -> modality -100, 0, 100, 300.
STORED = np.tile(np.array([[0, 50], [100, 200]], dtype=np.uint16), (16, 16))  # 32 x 32, the minimum size
SLOPE, INTERCEPT, CENTER, WIDTH = 2.0, -100.0, 100.0, 201.0
# Output range of the window, from the modality range of 12-bit unsigned data: [0, 4095]*2-100.
Y_MIN, Y_MAX = -100.0, 4095 * 2.0 - 100.0


def _expected_window(x: np.ndarray) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 linear window, written out independently of the reader."""
    c, w = CENTER - 0.5, WIDTH - 1
    y = ((x - c) / w + 0.5) * (Y_MAX - Y_MIN) + Y_MIN
    return np.where(x <= c - w / 2, Y_MIN, np.where(x > c + w / 2, Y_MAX, y))


def test_dicom_modality_lut_then_window(tmp_path: Path) -> None:
    path = _write_dicom(
        tmp_path / "a.dcm",
        STORED,
        "MONOCHROME2",
        RescaleSlope=SLOPE,
        RescaleIntercept=INTERCEPT,
        WindowCenter=CENTER,
        WindowWidth=WIDTH,
    )
    assert sniff_format(path) == "dicom"
    out = read_image(path)
    assert out.dtype == np.float32
    expected = _expected_window(STORED * SLOPE + INTERCEPT)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    wrong_order = _expected_window(STORED.astype(float)) * SLOPE + INTERCEPT
    assert not np.allclose(out, wrong_order)


def test_dicom_monochrome1_is_inverted_after_windowing(tmp_path: Path) -> None:
    path = _write_dicom(
        tmp_path / "m1.dcm",
        STORED,
        "MONOCHROME1",
        RescaleSlope=SLOPE,
        RescaleIntercept=INTERCEPT,
        WindowCenter=CENTER,
        WindowWidth=WIDTH,
    )
    out = read_image(path)
    expected = (Y_MIN + Y_MAX) - _expected_window(STORED * SLOPE + INTERCEPT)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out[0, 0] == out.max()  # the lowest stored value is white in MONOCHROME1


def test_dicom_without_window_inverts_within_the_modality_range(tmp_path: Path) -> None:
    path = _write_dicom(
        tmp_path / "m1.dcm", STORED, "MONOCHROME1", RescaleSlope=SLOPE, RescaleIntercept=INTERCEPT
    )
    np.testing.assert_allclose(read_image(path), (Y_MIN + Y_MAX) - (STORED * SLOPE + INTERCEPT))


def test_dicom_over_pixel_limit_and_missing_pydicom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write_dicom(tmp_path / "a.dcm", STORED, "MONOCHROME2")
    assert "exceeds the limit" in _error(path, max_pixels=3)
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(MissingExtraError, match="dicom"):
        read_image(path)


# --- real films --------------------------------------------------------------------------------


@pytest.mark.real
def test_every_real_film_reads_and_preprocesses(real_dir: Path) -> None:
    films = sorted((real_dir / "fraiwan-kauh-dev").rglob("*.jpg"))
    assert len(films) >= 90
    films.append(real_dir / "lateral-sample" / "lateral_001.png")
    for path in films:
        image = read_image(path)
        assert image.dtype == np.uint8 and min(image.shape[:2]) >= 100, path
        tensor = preprocess(image, (128, 96, 1), Preprocessing())
        assert tensor.shape == (128, 96, 1) and tensor.dtype == np.float32
        # minmax scaling, then area averaging: within [0, 1], and not a blank or flat image.
        assert tensor.min() >= 0.0 and 0.5 < tensor.max() <= 1.0 + 1e-6 and tensor.std() > 0.05, path
    lateral = read_image(films[-1])
    assert sniff_format(films[-1]) == "png" and lateral.shape == (767, 432, 4)
