"""Fuzzing the image reader and the predictor's input path (hypothesis).

Property: whatever the bytes, :func:`spinescan.radiograph.imageio.decode_image` either returns an image
that honours the reading contract (finite, non-constant, within the limits, 2-D or H x W x C of a
supported dtype) or raises :class:`~spinescan.errors.ImageReadError` (``MissingExtraError`` for
DICOM without pydicom); never another exception, a hang or a huge allocation. And the predictor
turns any file into either a finite classification or one error entry, and its JSON output is
valid JSON.

Inputs are mutations of a seeded corpus: small valid files of every format and the hostile files
of issue #12 (duplicated TIFF tags, a 16-bit RGBA bomb header, a JPEG cut mid-scan with an EOI, a
NaN TIFF, 1 x 1 and constant images...), plus raw random bytes.

The suite runs a short deterministic pass (derandomized, ``SPINESCAN_FUZZ_EXAMPLES`` examples per
property, default 40). A long run is one command::

    SPINESCAN_FUZZ_EXAMPLES=100000 nice -n 5 python -m pytest tests/test_fuzz.py -q \\
        -p no:cacheprovider --hypothesis-show-statistics

(``SPINESCAN_FUZZ_SEED=N`` picks another derandomized stream; ``SPINESCAN_FUZZ_RANDOM=1`` a random one.)
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import zlib

import cv2
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from spinescan.edge import predictor  # noqa: E402
from spinescan.errors import ImageReadError, MissingExtraError  # noqa: E402
from spinescan.radiograph import imageio  # noqa: E402

EXAMPLES = int(os.environ.get("SPINESCAN_FUZZ_EXAMPLES", "40"))
SEED = int(os.environ.get("SPINESCAN_FUZZ_SEED", "12"))
RANDOM = os.environ.get("SPINESCAN_FUZZ_RANDOM") == "1"
# Small limits while fuzzing, so a mutated header can never make the decoder allocate much.
LIMITS = {"SPINESCAN_MAX_PIXELS": "4000000", "SPINESCAN_MAX_IMAGE_BYTES": str(16 * 2**20)}

FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=not RANDOM,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _encode(image: np.ndarray, ext: str, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, image, params or [])
    assert ok
    return buf.tobytes()


def _png(width: int, height: int, depth: int, colour: int, ihdr_twice: bool = False) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
    small = chunk(b"IHDR", struct.pack(">IIBBBBB", 40, 40, 8, 0, 0, 0, 0)) if ihdr_twice else b""
    idat = chunk(b"IDAT", zlib.compress(b"\0" * 2048))
    return b"\x89PNG\r\n\x1a\n" + ihdr + small + idat + chunk(b"IEND", b"")


def _tiff_twice(big: int, small: int) -> bytes:
    pixels = (np.add.outer(np.arange(big), np.arange(big)) % 251).astype(np.uint8)
    strip = zlib.compress(pixels.tobytes(), 9)
    entries = [(256, big), (256, small), (257, big), (257, small), (258, 8), (259, 8), (262, 1)]
    entries += [(273, 0), (277, 1), (278, big), (279, len(strip))]
    offset = 8 + 2 + 12 * len(entries) + 4
    ifd = struct.pack("<H", len(entries))
    for tag, value in entries:
        value = offset if tag == 273 else value
        ifd += struct.pack("<HHII", tag, 4, 1, value)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + strip


def _corpus() -> dict[str, bytes]:
    """Valid films of every format and the hostile files of issue #12 (their numbers in names)."""
    rng = np.random.default_rng(0)
    grey = (np.add.outer(np.arange(48), np.arange(40)) * 2 + rng.integers(0, 20, (48, 40))).astype(np.uint8)
    grey16 = grey.astype(np.uint16) * 250
    rgba = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGRA)
    floaty = grey.astype(np.float32) / 7
    nan = floaty.copy()
    nan[5, 5] = np.nan
    inf = floaty.copy()
    inf[5, 5] = np.inf
    jpeg = _encode(grey, ".jpg")
    sos = jpeg.index(b"\xff\xda")
    corpus = {
        "png8": _encode(grey, ".png"),
        "png16": _encode(grey16, ".png"),
        "png_rgba": _encode(rgba, ".png"),
        "jpeg": jpeg,
        "jpeg_progressive": _encode(grey, ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        "bmp": _encode(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), ".bmp"),
        "tiff16": _encode(grey16, ".tiff"),
        "tiff_float": _encode(floaty, ".tiff"),
        "02_tiff_nan": _encode(nan, ".tiff"),
        "02_tiff_inf": _encode(inf, ".tiff"),
        "03_tiff_size_twice": _tiff_twice(300, 40),
        "04_png_rgba16_bomb_header": _png(9999, 9999, 16, 6),
        "04_png_ihdr_twice": _png(3000, 3000, 8, 0, ihdr_twice=True),
        "05_png_magic_only": b"\x89PNG\r\n\x1a\n" + b"\0" * 64,
        "06_jpeg_cut_mid_scan_eoi": jpeg[: sos + (len(jpeg) - sos) // 2] + b"\xff\xd9",
        "08_one_pixel": _encode(np.full((1, 1), 7, np.uint8), ".png"),
        "08_constant": _encode(np.full((48, 40), 90, np.uint8), ".png"),
        # Found by the long fuzz run: a BMP cut inside its info header (a struct.error escaped).
        "fuzz_bmp_cut_info_header": bytes.fromhex(
            "424db6160000000000003600000028000000280000003000000001001800"
        ),
        # Found by fuzzing the page: a chunk type with a newline in it reached its message.
        "fuzz_png_chunk_type_newline": bytes.fromhex(
            "89504e470d0a1a0a0000000d4948445200000001000000010800000000003a7e9b550000000a4944"
            "4154081d6360070000090008a74452180000000049454e44ae426082"
        ),
        "empty": b"",
        "text": b"not an image at all\n" * 8,
    }
    with contextlib.suppress(ImportError):
        corpus["dicom"] = _dicom(grey16)
    return corpus


def _dicom(pixels: np.ndarray) -> bytes:
    import io

    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("fuzz.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


CORPUS = _corpus()
NAMES = sorted(CORPUS)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A corpus file with a few byte edits, a cut, an insertion or a duplicated slice."""
    data = bytearray(CORPUS[draw(st.sampled_from(NAMES))])
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(("flip", "cut", "insert", "dup", "set16")))
        n = len(data)
        at = draw(st.integers(0, max(0, n - 1)))
        if kind == "flip" and n:
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "dup" and n:
            end = min(n, at + draw(st.integers(1, 64)))
            data[at:at] = data[at:end]
        elif kind == "set16" and n >= 2:  # header fields are 16/32-bit: make one huge or zero
            data[at : at + 2] = draw(st.sampled_from((b"\xff\xff", b"\x00\x00", b"\x7f\xff")))
    return bytes(data)


ANY_BYTES = st.one_of(mutated(), st.binary(max_size=512))


def _check_contract(image: np.ndarray) -> None:
    assert image.dtype in (np.uint8, np.uint16, np.float32)
    assert image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 2, 3, 4))
    assert image.shape[0] * image.shape[1] <= int(LIMITS["SPINESCAN_MAX_PIXELS"])
    assert image.nbytes <= 8 * int(LIMITS["SPINESCAN_MAX_IMAGE_BYTES"])
    if image.dtype == np.float32:
        assert np.isfinite(image).all()
    assert image.min() != image.max() or (image.ndim == 3 and image.shape[2] in (2, 4))


@pytest.fixture(autouse=True)
def _small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in LIMITS.items():
        monkeypatch.setenv(key, value)


def _maybe_seed(test):
    return test if RANDOM else seed(SEED)(test)


def test_corpus_cases_are_refused_or_read_as_documented() -> None:
    """The seeds themselves: hostile ones refused, valid ones read (before any mutation)."""
    for name, data in CORPUS.items():
        hostile = name[:2].isdigit() or name.startswith("fuzz_") or name in ("empty", "text")
        try:
            image = imageio.decode_image(data, name)
        except ImageReadError:
            assert hostile, name
            continue
        except MissingExtraError:
            continue
        assert not hostile, f"{name} was accepted"
        _check_contract(image)


@_maybe_seed
@FUZZ
@given(data=ANY_BYTES)
def test_decode_image_only_ever_refuses_with_one_line(data: bytes) -> None:
    try:
        image = imageio.decode_image(data, "fuzz")
    except (ImageReadError, MissingExtraError) as exc:
        assert "\n" not in str(exc)
        return
    _check_contract(image)


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> list[predictor.OnnxModel]:
    from test_predictor import toy_model, write_manifest

    folder = tmp_path_factory.mktemp("exported")
    toy_model(folder / "toy.onnx")
    write_manifest(folder, "toy.onnx")
    return [predictor.OnnxModel(p) for p in predictor.model_paths(folder)]


@_maybe_seed
@FUZZ
@given(data=ANY_BYTES)
def test_predictor_input_path_gives_a_result_or_one_error(
    data: bytes, toy: list[predictor.OnnxModel], tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("fuzz", numbered=True)
    path = folder / "film.png"
    path.write_bytes(data)
    results = predictor.classify_files(predictor.expand_inputs([str(folder)]), toy)
    assert len(results) == 1
    (result,) = results
    text = json.dumps(results, allow_nan=False)  # raises on NaN/inf: the output must stay JSON
    assert json.loads(text) == results
    if "error" in result:
        assert result["error"].startswith(str(path)) and "\n" not in result["error"]
    else:
        probs = np.array(list(result["probabilities"].values()))
        assert np.isfinite(probs).all() and abs(probs.sum() - 1) < 1e-4
    for leftover in folder.iterdir():
        leftover.unlink()
    folder.rmdir()


# --- the browser page's reader (issue #26): the same seeds, through one Chromium session ----------

#: Examples for the page (each one a round trip to the browser): bounded, as the issue asks.
PAGE_EXAMPLES = int(os.environ.get("SPINESCAN_FUZZ_PAGE_EXAMPLES", str(EXAMPLES)))
PAGE_FUZZ = settings(FUZZ, max_examples=PAGE_EXAMPLES)


def _page_seeds() -> dict[str, bytes]:
    """The seeds above plus the shared hostile corpus (tests/hostile_files.py; its inflate bomb
    made small here: the fuzzing is about parsing, tests/test_web_hostile.py watches memory)."""
    from hostile_files import corpus

    seeds = dict(CORPUS)
    seeds.update({f"hostile_{k}": c.data for k, c in corpus(bomb_bytes=2**20).items()})
    return seeds


@pytest.fixture(scope="module")
def page_reader(tmp_path_factory: pytest.TempPathFactory):
    """``read(bytes) -> dict``: the page's reading of some bytes ({width, height, channels} or
    {error}), in one Chromium for the module, the page written with the fuzzing limits."""
    import base64
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("SPINESCAN_REQUIRE_BROWSER") == "1":
            pytest.fail("SPINESCAN_REQUIRE_BROWSER=1 but Debian chromium is not installed")
        pytest.skip("Debian chromium is not installed")
    from playwright.sync_api import sync_playwright
    from test_web_hostile import serving

    from spinescan.export.webpage import write_web

    root = tmp_path_factory.mktemp("fuzz-page")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in LIMITS.items():
            mp.setenv(key, value)
        assert "written" in write_web(root)
    with serving(root) as origin, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{origin}/web/")
        for _ in range(300):  # not wait_for_function: its string is eval'd, which the page's CSP forbids
            if page.evaluate("!!(window.spineScan && window.spineScan.readBytes)"):
                break
            page.wait_for_timeout(100)

        def read(data: bytes) -> dict:
            return page.evaluate(
                "(s) => window.spineScan.readBytes(Uint8Array.from(atob(s), (c) => c.charCodeAt(0)), 'fuzz')",
                base64.b64encode(data).decode(),
            )

        yield read
        browser.close()


PAGE_SEEDS = _page_seeds()
PAGE_BYTES = st.one_of(mutated(), st.sampled_from(sorted(PAGE_SEEDS.values())), st.binary(max_size=512))


def _python_reads(data: bytes) -> dict:
    """spinescan-predict's reading of the same bytes, in the page's terms."""
    try:
        image = imageio.decode_image(data, "fuzz", min_side=imageio.MIN_SIDE)
    except (ImageReadError, MissingExtraError) as exc:
        return {"error": str(exc)}
    return {"width": image.shape[1], "height": image.shape[0]}


def test_page_reads_the_seeds_as_python_does(page_reader) -> None:
    """Every seed (valid films and hostile files alike): refused by both or read by both at the
    same size (PNG and JPEG; the page refuses the other formats by name)."""
    for name, data in PAGE_SEEDS.items():
        page, python = page_reader(data), _python_reads(data)
        if imageio.sniff_bytes(data[: imageio.HEAD]) not in ("png", "jpeg"):
            assert "error" in page, name
            continue
        assert ("error" in page) == ("error" in python), (name, page, python)
        if "error" not in page:
            assert (page["width"], page["height"]) == (python["width"], python["height"]), name


@_maybe_seed
@PAGE_FUZZ
@given(data=PAGE_BYTES)
def test_page_reader_refuses_with_one_line_as_python_does(data: bytes, page_reader) -> None:
    page = page_reader(data)
    if "error" in page:
        assert page["error"].startswith("fuzz: ") and "\n" not in page["error"], page
    else:
        assert page["width"] * page["height"] <= int(LIMITS["SPINESCAN_MAX_PIXELS"])
        assert min(page["width"], page["height"]) >= imageio.MIN_SIDE
    if imageio.sniff_bytes(data[: imageio.HEAD]) not in ("png", "jpeg"):
        assert "error" in page
        return
    python = _python_reads(data)
    assert ("error" in page) == ("error" in python), (page, python)
