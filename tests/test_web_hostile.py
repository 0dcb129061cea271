"""The browser page reads films under Python's contract (issue #26, defects 1-3): the shared hostile
corpus (tests/hostile_files.py) is read by ``read_image`` and by the page in Chromium, and both
must refuse the same files for the same reason (or read the same size); the browser's memory is
watched on the bombs; the page's limits are the ones ``spinescan export`` generates from
spinescan/radiograph/limits.py, so a changed Python limit changes the page.

No model is needed: the page is written by ``write_web`` into folders with no manifest, and its
test hook ``window.spineScan.readBytes`` reads bytes exactly as a dropped film is read. One
Chromium launch for the whole module (Debian's ``chromium`` through Playwright, as tests/test_web.py;
``SPINESCAN_REQUIRE_BROWSER=1`` makes a missing browser a failure).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hostile_files import Case, corpus

from spinescan.errors import ImageReadError
from spinescan.export.webpage import LIMITS_FILE, limits_module, write_web
from spinescan.radiograph.imageio import MIN_SIDE, read_image
from spinescan.radiograph.limits import page_limits

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRE_BROWSER = os.environ.get("SPINESCAN_REQUIRE_BROWSER") == "1"
#: The issue's goal for the page's memory on any single file.
PAGE_MEMORY_LIMIT = 2**30
#: What reading one bomb may add to the renderer's resident memory (the old page added over 512 MB
#: on the 256 MB inflate bomb: the whole inflated stream, twice).
BOMB_GROWTH_LIMIT = 128 * 2**20
#: The lowered limits of the second page (one written with them set in the environment).
SMALL = {"SPINESCAN_MAX_IMAGE_BYTES": "1500", "SPINESCAN_MAX_FILE_BYTES": str(2**20)}


@pytest.fixture(scope="module", autouse=True)
def _browser() -> None:
    if CHROMIUM is None:
        why = "Debian chromium is not installed (.ci/run and scripts/install-system-deps.sh install it)"
        if REQUIRE_BROWSER:
            pytest.fail(f"SPINESCAN_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def cases() -> dict[str, Case]:
    return corpus()


class _Handler(SimpleHTTPRequestHandler):
    extensions_map = {  # (the base class's attribute, replaced)
        **SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
    }

    def log_message(self, *args: object) -> None:  # quiet
        pass


@contextlib.contextmanager
def serving(root: Path) -> Iterator[str]:
    """``root`` over HTTP on 127.0.0.1 (a plain static server: the corpus is no export, so not
    ``spinescan serve``, which serves only an export's files); yields the origin."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Site:
    """Two pages (default and lowered limits) and the corpus, served from one folder, in one
    Chromium; ``read(page, name)`` is what the page makes of a corpus file."""

    def __init__(self, root: Path, origin: str, browser) -> None:
        self.root, self.origin, self.browser = root, origin, browser
        self.pages = {}
        for which in ("default", "small"):
            page = browser.new_page()
            page.goto(f"{origin}/{which}/web/")
            deadline = time.monotonic() + 30
            while not page.evaluate("!!(window.spineScan && window.spineScan.readBytes)"):
                assert time.monotonic() < deadline, "the page did not start"
                page.wait_for_timeout(50)
            self.pages[which] = page

    def read(self, which: str, name: str) -> dict:
        return self.pages[which].evaluate(
            "async (n) => window.spineScan.readBytes(await (await fetch('/corpus/' + n)).arrayBuffer(), n)",
            name,
        )


@pytest.fixture(scope="module")
def site(cases: dict[str, Case], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from playwright.sync_api import sync_playwright

    root = tmp_path_factory.mktemp("hostile-site")
    (root / "corpus").mkdir()
    for name, case in cases.items():
        (root / "corpus" / name).write_bytes(case.data)
    for which in ("default", "small"):
        (root / which).mkdir()
        with pytest.MonkeyPatch.context() as mp:
            for key in ("SPINESCAN_MAX_PIXELS", "SPINESCAN_MAX_IMAGE_BYTES", "SPINESCAN_MAX_FILE_BYTES"):
                mp.delenv(key, raising=False)
            if which == "small":
                for key, value in SMALL.items():
                    mp.setenv(key, value)
            note = write_web(root / which)
        assert "written" in note, note
    with serving(root) as origin, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield Site(root, origin, browser)
        finally:
            browser.close()


class _RendererMemory:
    """The largest resident set of Chromium's renderer processes, sampled every 20 ms while in
    the ``with`` block (psutil over this process's children)."""

    def __enter__(self) -> _RendererMemory:
        import psutil

        self._psutil = psutil
        self.baseline = self._sample()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> int:
        most = 0
        for proc in self._psutil.Process().children(recursive=True):
            try:
                if "--type=renderer" in " ".join(proc.cmdline()):
                    most = max(most, proc.memory_info().rss)
            except self._psutil.Error:
                continue
        return most

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def _python(path: Path) -> dict:
    """What spinescan-predict's reader makes of a file, in the page's terms."""
    try:
        image = read_image(path, min_side=MIN_SIDE)
    except ImageReadError as exc:
        return {"error": str(exc)}
    return {"width": image.shape[1], "height": image.shape[0]}


def _agree(name: str, case: Case, python: dict, page: dict) -> None:
    if case.reason is None:
        assert "error" not in python, (name, python)
        assert "error" not in page, (name, page)
        assert (page["width"], page["height"]) == (python["width"], python["height"]), name
        return
    for who, got in (("python", python), ("page", page)):
        assert "error" in got, f"{name}: {who} read it: {got}"
        message = got["error"]
        assert "\n" not in message, message
        assert case.reason in message.lower(), f"{name}: {who} said {message!r}, expected {case.reason!r}"


def test_page_and_python_refuse_the_same_files(site: Site, cases: dict[str, Case]) -> None:
    """Defects 1-3: every corpus file is refused by both for the same reason, or read by both at the
    same size; the bombs never take the page's memory anywhere near 1 GB."""
    memory = {}
    for name, case in cases.items():
        python = _python(site.root / "corpus" / name)
        with _RendererMemory() as watch:
            page = site.read("default", name)
        memory[name] = (watch.baseline, watch.peak)
        _agree(name, case, python, page)
        assert page.get("error", name).startswith(name), page
    print("\nrenderer resident memory, peak (growth) per big case:")
    for name, case in cases.items():
        base, peak = memory[name]
        if case.big:
            print(f"  {name}: {peak / 2**20:.0f} MB ({(peak - base) / 2**20:+.0f} MB)")
            assert peak - base <= BOMB_GROWTH_LIMIT, (name, peak - base)
    assert max(peak for _base, peak in memory.values()) <= PAGE_MEMORY_LIMIT


def test_dropped_files_are_checked_before_they_are_read(
    site: Site, cases: dict[str, Case], tmp_path: Path
) -> None:
    """Through the file input, as a user drops films: the issue's three files are refused with
    Python's reasons, and a 3 GB (sparse) file is refused by its size without being loaded."""
    huge = tmp_path / "huge.png"
    with huge.open("wb") as f:
        f.write(cases["ok-grey.png"].data[:64])
        f.truncate(3 * 2**30)
    names = ["one-pixel.png", "constant.png", "cut-mid-scan-eoi.jpg"]
    page = site.pages["default"]
    with _RendererMemory() as watch:
        page.set_input_files("#files", [str(site.root / "corpus" / n) for n in names] + [str(huge)])
        deadline = time.monotonic() + 60
        while page.evaluate("window.spineScan.results.length") < len(names) + 1:
            assert time.monotonic() < deadline, page.evaluate("window.spineScan.results")
            page.wait_for_timeout(50)
    results = {r["file"]: r for r in page.evaluate("window.spineScan.results")}
    for name in names:
        message = results[name].get("error", "")
        assert message.startswith(f"{name}: ") and cases[name].reason in message.lower(), message
    assert results["huge.png"].get("error") == (
        "huge.png: file is 3.0 GB, over the 256.0 MB limit "
        "(set SPINESCAN_MAX_FILE_BYTES and export again to raise it)"
    )
    print(
        f"\nfour dropped files: renderer {watch.peak / 2**20:.0f} MB at most "
        f"({(watch.peak - watch.baseline) / 2**20:+.0f} MB)"
    )
    assert watch.peak - watch.baseline <= BOMB_GROWTH_LIMIT


def test_a_changed_python_limit_reaches_the_page(
    site: Site, cases: dict[str, Case], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page written with SPINESCAN_MAX_IMAGE_BYTES / _FILE_BYTES lowered carries Python's
    numbers (generated limits.js, no copy) and refuses what Python, under the same setting, refuses."""
    for key, value in SMALL.items():
        monkeypatch.setenv(key, value)
    written = (site.root / "small" / "web" / LIMITS_FILE).read_text(encoding="utf-8")
    assert written == limits_module(page_limits())
    assert page_limits()["max_image_bytes"] == 1500
    # 48 x 40 grey = 1,920 bytes decoded: read by the default page (test above), refused by both here.
    name = "ok-grey.png"
    python = _python(site.root / "corpus" / name)
    page = site.read("small", name)
    _agree(name, Case(b"", "decoded, over the"), python, page)
    # A 1.5 MB file under a 1 MB file limit, refused before its bytes are read.
    big = site.root / "corpus" / "two-mb.png"
    big.write_bytes(cases["ok-grey.png"].data + bytes(2 * 2**20))  # data after IEND: harmless
    python = _python(big)
    page = site.pages["small"].evaluate(
        "async (n) => { const r = await fetch('/corpus/' + n); const f = new File([await r.blob()], n);"
        " try { await (await import('./decode.js')).checkFile(f); return {}; }"
        " catch (e) { return {error: e.message}; } }",
        big.name,
    )
    _agree(big.name, Case(b"", "over the 1.0 mb limit"), python, page)


#: The preprocessing the film at the limit goes through in the page (the AP models' setting:
#: a percentile window and a crop around the spine, the costliest path at full resolution).
LIMIT_SPEC = (96, 32, 1), {"intensity": "percentile", "resize": "spine_crop", "crop_aspect": 0.3}


def _film_at_the_pixel_limit(path: Path) -> Path:
    """A valid grey JPEG of exactly Python's pixel limit (10000 x 10000 by default): a smooth
    gradient, so it costs a few hundred kB on disk and well under a second to make."""
    import math

    import cv2
    import numpy as np

    side = math.isqrt(page_limits()["max_pixels"])
    rows = (np.arange(side) * 180 // side).astype(np.uint8)
    cols = (np.arange(side) * 60 // side).astype(np.uint8)
    cols[side // 3 : side // 3 + side // 20] += 15  # a bright band for the spine column search
    grey = rows[:, None] + cols[None, :]
    ok, buf = cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def test_a_film_at_the_pixel_limit_stays_under_1_gb(site: Site) -> None:
    """The issue's goal: page memory for any single file <= 1 GB with the limits Python uses. A
    grey JPEG of exactly the pixel limit (which Python reads) is read by the page, dropped on it
    (read and displayed) and preprocessed by it, each with the renderer's peak under 1 GiB; the
    tensor is Python's."""
    import numpy as np

    from spinescan.radiograph.preprocess import Preprocessing, preprocess

    name = "limit-grey.jpg"
    path = _film_at_the_pixel_limit(site.root / "corpus" / name)
    image = read_image(path, min_side=MIN_SIDE)
    side = image.shape[0]
    assert image.shape == (side, side) and side * side == page_limits()["max_pixels"]
    page = site.pages["default"]
    peaks = {}
    with _RendererMemory() as watch:
        got = site.read("default", name)
    peaks["read"] = watch
    assert got == {"width": side, "height": side, "channels": 1}, got
    before = page.evaluate("window.spineScan.results.length")
    with _RendererMemory() as watch:
        page.set_input_files("#files", [str(path)])
        deadline = time.monotonic() + 120
        while page.evaluate("window.spineScan.results.length") == before:
            assert time.monotonic() < deadline, "the page did not finish the dropped film"
            page.wait_for_timeout(50)
    peaks["dropped"] = watch
    dropped = page.evaluate("window.spineScan.results")[-1]
    assert dropped["file"] == name and dropped.get("error") is None, dropped
    size, prep = LIMIT_SPEC
    spec = {"input_size": list(size), "preprocessing": Preprocessing(**prep).to_dict()}
    with _RendererMemory() as watch:
        tensor = page.evaluate(
            "async ([n, s]) => window.spineScan.preprocessBytes("
            "await (await fetch('/corpus/' + n)).arrayBuffer(), s)",
            [name, spec],
        )
    peaks["preprocessed"] = watch
    want = preprocess(image, size, Preprocessing(**prep))
    diff = float(np.abs(np.asarray(tensor["tensor"], dtype=np.float32) - want.ravel()).max())
    print(f"\n{name} ({side} x {side} grey JPEG, {path.stat().st_size / 2**10:.0f} kB), renderer peak:")
    for what, w in peaks.items():
        print(f"  {what}: {w.peak / 2**20:.0f} MB ({(w.peak - w.baseline) / 2**20:+.0f} MB)")
    print(f"  tensor vs Python: max |dx| {diff:.1e}")
    assert diff <= 1e-5, diff
    for what, w in peaks.items():
        assert w.peak <= PAGE_MEMORY_LIMIT, (what, w.peak / 2**20)


def test_a_jpeg_with_an_icc_profile_reads_as_opencv_reads_it(site: Site) -> None:
    """OpenCV ignores an embedded ICC profile. The page cuts its APP2 segments out before the
    browser decodes (so the default colour conversion, the one without a second full-size copy,
    has nothing to apply) and feeds a model the tensor Python feeds it, grey and colour."""
    import numpy as np
    from hostile_files import film
    from PIL import Image, ImageCms

    from spinescan.radiograph.preprocess import Preprocessing, preprocess

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    grey = film(64, 48)
    page = site.pages["default"]
    size, prep = (40, 32, 1), Preprocessing()
    spec = {"input_size": list(size), "preprocessing": prep.to_dict()}
    for name, image, mode in (
        ("icc-grey.jpg", grey, "L"),
        ("icc-colour.jpg", np.dstack([grey, grey // 2, 255 - grey]), "RGB"),
    ):
        path = site.root / "corpus" / name
        Image.fromarray(image, mode).save(path, "JPEG", quality=90, icc_profile=profile)
        sizes = page.evaluate(
            "async (n) => { const b = new Uint8Array(await (await fetch('/corpus/' + n)).arrayBuffer());"
            " const s = (await import('./decode.js')).withoutIccProfile(b, n);"
            " return [b.length, s.length, new TextDecoder('latin1').decode(s).includes('ICC_PROFILE')]; }",
            name,
        )
        assert sizes[1] < sizes[0] and not sizes[2], sizes
        got = page.evaluate(
            "async ([n, s]) => window.spineScan.preprocessBytes("
            "await (await fetch('/corpus/' + n)).arrayBuffer(), s)",
            [name, spec],
        )
        want = preprocess(read_image(path), size, prep)
        assert np.abs(np.asarray(got["tensor"], dtype=np.float32) - want.ravel()).max() <= 1e-5, name
