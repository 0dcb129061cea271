"""``spinescan serve`` and the page folder the export writes (no browser needed here)."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from spinescan.cli.serve import make_server
from spinescan.errors import SpineScanError
from spinescan.export.webpage import LIMITS_FILE, ORT_FILES, SOURCE_FILES, write_web


def _fake_source(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    for name in SOURCE_FILES:
        (root / "src" / name).write_text(f"/* {name} */")
    dist = root / "node_modules" / "onnxruntime-web" / "dist"
    dist.mkdir(parents=True)
    for name in ORT_FILES:
        (dist / name).write_bytes(b"\0asm" if name.endswith(".wasm") else b"export {};")
    return root


def test_write_web_copies_the_page_and_runtime_and_replaces_an_old_one(tmp_path: Path) -> None:
    source = _fake_source(tmp_path / "web")
    out = tmp_path / "exported"
    out.mkdir()
    (out / "web").mkdir()
    (out / "web" / "stale.js").write_text("old")
    note = write_web(out, source)
    assert "written" in note
    assert sorted(p.name for p in (out / "web").iterdir()) == sorted([*SOURCE_FILES, LIMITS_FILE, "ort"])
    assert sorted(p.name for p in (out / "web" / "ort").iterdir()) == sorted(ORT_FILES)
    assert not any(p.name.startswith(".web") for p in out.iterdir())  # staging folders cleaned up


def test_write_web_without_npm_ci_says_what_to_run(tmp_path: Path) -> None:
    source = _fake_source(tmp_path / "web")
    (source / "node_modules" / "onnxruntime-web" / "dist" / ORT_FILES[-1]).unlink()
    out = tmp_path / "exported"
    out.mkdir()
    note = write_web(out, source)
    assert "not written" in note and "npm ci" in note
    assert not (out / "web").exists()


def test_serve_mime_types_redirect_and_missing_page(tmp_path: Path) -> None:
    with pytest.raises(SpineScanError, match="spinescan export"):
        make_server(tmp_path, port=0)
    write_web(tmp_path, _fake_source(tmp_path / "src-web"))
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    server = make_server(tmp_path, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        types = {}
        for path in (
            "/web/ort/ort-wasm-simd-threaded.wasm",
            "/web/ort/ort.wasm.min.mjs",
            "/web/app.js",
            "/m.onnx",
        ):
            with urllib.request.urlopen(base + path) as response:
                types[path] = response.headers["Content-Type"]
                assert response.headers["Cache-Control"] == "no-store"
        assert types["/web/ort/ort-wasm-simd-threaded.wasm"] == "application/wasm"
        assert types["/web/ort/ort.wasm.min.mjs"].startswith("text/javascript")
        assert types["/web/app.js"].startswith("text/javascript")
        with urllib.request.urlopen(base + "/") as response:  # follows the redirect to the page
            assert response.url.endswith("/web/")
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(base + "/nothing-here")
    finally:
        server.shutdown()
        server.server_close()
    assert server.server_address[0] == "127.0.0.1"
