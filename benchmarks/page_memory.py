"""Renderer peak memory while the page reads big valid films (decode and checks, no model).

Run from the repository root: ``nice -n 10 .venv/bin/python benchmarks/page_memory.py``
(writes the page and four films under /tmp/page/site; needs Debian's chromium and Playwright).
"""

import sys
import time

sys.path.insert(0, "tests")  # (the hostile test's server and memory probe)
from pathlib import Path

import cv2
import numpy as np
from playwright.sync_api import sync_playwright
from test_web_hostile import CHROMIUM, _RendererMemory, serving

from spinescan.export.webpage import write_web

root = Path("/tmp/page/site")
(root / "corpus").mkdir(parents=True, exist_ok=True)
write_web(root)
rng = np.random.default_rng(0)


def film(h, w):
    x = (np.add.outer(np.arange(h) // 7, np.arange(w) // 5) % 200).astype(np.uint8)
    return x + rng.integers(0, 30, (h, w), dtype=np.uint8)


files = {}
g = film(10000, 10000)
cv2.imwrite(str(root / "corpus/grey-100mpx.png"), g)
files["grey-100mpx.png"] = 1
cv2.imwrite(str(root / "corpus/grey-100mpx.jpg"), g)
del g
c = film(6000, 10000)
cv2.imwrite(str(root / "corpus/colour-60mpx.jpg"), cv2.merge([c, c // 2, c]))
del c
g16 = film(8000, 5000).astype(np.uint16) * 250
cv2.imwrite(str(root / "corpus/grey16-40mpx.png"), g16)
del g16
with serving(root) as origin, sync_playwright() as pw:
    b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
    page = b.new_page()
    page.goto(f"{origin}/web/")
    while not page.evaluate("!!(window.spineScan && window.spineScan.readBytes)"):
        page.wait_for_timeout(100)
    for name in ["grey-100mpx.png", "grey-100mpx.jpg", "colour-60mpx.jpg", "grey16-40mpx.png"]:
        size = (root / "corpus" / name).stat().st_size
        t = time.perf_counter()
        with _RendererMemory() as w:
            r = page.evaluate(
                "async (n) => window.spineScan.readBytes(await (await fetch('/corpus/' + n)).arrayBuffer(), n)",  # noqa: E501
                name,
            )
        print(
            f"{name} ({size / 2**20:.0f} MB file): {r} in {time.perf_counter() - t:.1f} s; renderer peak {w.peak / 2**20:.0f} MB (baseline {w.baseline / 2**20:.0f} MB)",  # noqa: E501
            flush=True,
        )
    b.close()
