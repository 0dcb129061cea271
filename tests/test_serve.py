"""``spinescan serve`` and the page folder the export writes (no browser needed here)."""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from spinescan.cli.serve import make_server
from spinescan.errors import SpineScanError
from spinescan.export.webpage import GENERATED_FILES, ORT_FILES, SOURCE_FILES, build_web, write_web


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
    assert sorted(p.name for p in (out / "web").iterdir()) == sorted(
        [*SOURCE_FILES, *GENERATED_FILES, "ort"]
    )
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
    _list_in_manifest(tmp_path, "m.onnx")
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


# --- serve: an allow-list on localhost (issue 26 #7) -------------------------------------------------


def _list_in_manifest(folder: Path, *files: str) -> None:
    import hashlib
    import json

    digest = {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in files}
    models = {Path(f).stem: {"file": f, "sha256": digest[f]} for f in files}
    (folder / "manifest.json").write_text(json.dumps({"models": models}))


def _published(root: Path) -> Path:
    """An export folder in the published layout: .v-1 (page, manifest, m.onnx) behind current,
    top-level links, the lock file, and a second, older version .v-0."""
    out = root / "exported"
    for name in (".v-0", ".v-1"):
        version = out / name
        version.mkdir(parents=True)
        build_web(version / "web", _fake_source(root / f"src-{name}"))
        (version / "m.onnx").write_bytes(name.encode())
        _list_in_manifest(version, "m.onnx")
        (version / "m.md").write_text("card")
    os.symlink(".v-1", out / "current")
    for name in ("manifest.json", "m.onnx", "m.md", "web"):
        os.symlink(f"current/{name}", out / name)
    (out / ".export.lock").write_text("")
    return out


class _Served:
    def __init__(self, folder: Path, **kwargs: object) -> None:
        self.server = make_server(folder, port=0, **kwargs)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Served:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def get(self, path: str, host: str | None = None, method: str = "GET") -> tuple[int, bytes]:
        """Status and body of one raw request (http.client sends the path as given)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host if host is not None else f"127.0.0.1:{self.port}")
            conn.endheaders()
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


def test_serve_answers_only_the_page_and_the_current_version_s_files(tmp_path: Path) -> None:
    out = _published(tmp_path)
    with _Served(out) as s:
        assert s.get("/web/")[0] == 200 and s.get("/web/app.js")[0] == 200
        assert s.get("/web/ort/ort-wasm-simd-threaded.wasm")[0] == 200
        assert s.get("/manifest.json")[0] == 200
        assert s.get("/m.onnx") == (200, b".v-1")  # the current version's file
        assert s.get("/")[0] == 302 and s.get("/web")[0] == 302
        for path in (
            "/current/", "/current/m.onnx", "/.v-0/", "/.v-1/m.onnx", "/.v-0/m.onnx", "/web/ort/",
            "/.export.lock", "/m.md", "/web/../manifest.json", "/web/%2e%2e/m.onnx", "/nothing",
            "/web/index.html/x", "/web/ort/ort.wasm.min.mjs/", "//etc/passwd",
        ):
            status, body = s.get(path)
            assert status in (400, 404), (path, status)
            assert b".v-" not in body and b"export.lock" not in body, path  # no listing
        assert s.get("/m.onnx", method="HEAD")[0] == 200
        assert s.get("/m.onnx", method="POST")[0] == 501


def test_serve_never_follows_a_symlink_out_of_its_folders(tmp_path: Path) -> None:
    out = _published(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    web = out / ".v-1" / "web"
    os.symlink(secret, web / "leak.txt")
    (web / "app.js").unlink()
    os.symlink(secret, web / "app.js")  # even an allow-listed name
    (out / ".v-1" / "m.onnx").unlink()
    os.symlink(secret, out / ".v-1" / "m.onnx")
    with _Served(out) as s:
        for path in ("/web/leak.txt", "/web/app.js", "/m.onnx"):
            status, body = s.get(path)
            assert status == 404 and b"root:x" not in body, path
        assert s.get("/web/decode.js")[0] == 200


@pytest.mark.parametrize(
    "path", ["/web/%00", "/web/%00/x", "/%00", "/web/%ff%fe", "/web/a%5cb", "/web/%0d%0aX:%20y", "x", "/%"]
)
def test_malformed_paths_get_an_error_status_not_a_traceback(
    tmp_path: Path, path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _published(tmp_path)
    with _Served(out) as s:
        status, _body = s.get(path)
        assert status in (400, 404)
        assert s.get("/web/")[0] == 200  # still serving
    assert "Traceback" not in capsys.readouterr().err


def test_the_host_header_must_name_this_machine(tmp_path: Path) -> None:
    """DNS rebinding: evil.example re-pointed at 127.0.0.1 sends Host: evil.example:PORT."""
    out = _published(tmp_path)
    with _Served(out) as s:
        p = s.port
        for host in (f"localhost:{p}", f"127.0.0.1:{p}", f"[::1]:{p}", f"LOCALHOST:{p}"):
            assert s.get("/manifest.json", host=host)[0] == 200, host
        for host in (f"evil.example:{p}", "evil.example", "", f"127.0.0.1:{p + 1}", f"localhost.evil:{p}"):
            assert s.get("/manifest.json", host=host)[0] == 403, host
            assert s.get("/m.onnx", host=host)[0] == 403, host
    with _Served(out, allowed_hosts=["spine.lan"]) as s:
        assert s.get("/m.onnx", host=f"spine.lan:{s.port}")[0] == 200
        assert s.get("/m.onnx", host="spine.lan")[0] == 200
        assert s.get("/m.onnx", host=f"evil.example:{s.port}")[0] == 403


def test_serve_reads_the_version_current_points_to_per_request(tmp_path: Path) -> None:
    out = _published(tmp_path)
    with _Served(out) as s:
        assert s.get("/m.onnx")[1] == b".v-1"
        tmp = out / ".tmp-link"
        os.symlink(".v-0", tmp)
        os.replace(tmp, out / "current")
        assert s.get("/m.onnx")[1] == b".v-0"


def test_half_open_connections_are_bounded_and_do_not_stall_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: 3000 half-open connections made 3003 threads and 40 s of stall with tracebacks.
    Now at most max_connections are handled at once (the rest are closed at once) and each has
    timeout_s to send its request. Bounded: 300 sockets, a 1 s timeout."""
    out = _published(tmp_path)
    before = threading.active_count()
    with _Served(out, max_connections=16, timeout_s=1.0) as s:
        sockets = []
        try:
            for _ in range(300):
                sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
                sockets.append(sock)
            time.sleep(0.3)
            assert threading.active_count() <= before + 1 + 16 + 2  # serve_forever + the bound
            deadline = time.monotonic() + 10
            status = None
            while time.monotonic() < deadline:  # the half-open ones time out after 1 s
                try:
                    status = s.get("/web/")[0]
                    break
                except OSError:
                    time.sleep(0.1)
            assert status == 200
        finally:
            for sock in sockets:
                sock.close()
    assert "Traceback" not in capsys.readouterr().err
