"""``spinescan serve``: the exported browser page on localhost.

Serves the page and the current export version's model files, bound to 127.0.0.1 only: films
dropped on the page are read in the browser, never sent to this server. What it answers is an
allow-list, not a folder (issue 26 #7):

* ``/web/`` and the page's own files (``webpage.SOURCE_FILES``, the generated ``limits.js`` and
  ``readout.js``, ``ORT_FILES`` under ``/web/ort/``),
  from the current version's ``web/`` (or the plain ``web/`` an older export wrote);
* ``/manifest.json`` and the model files that manifest lists, read from the one version
  ``current`` points to when the request arrives (never through the top-level links);
* nothing else: no directory listings, no hidden names (``.export.lock``, ``.v-*``), no model
  cards, no symlink out of those folders (the file must be a regular file reached without a link).

DNS rebinding: a page on another site whose name an attacker re-points at 127.0.0.1 could read the
models from the user's browser. The ``Host`` header must name this machine (``localhost``,
``127.0.0.1`` or ``[::1]``, with this server's port) unless ``--allow-host NAME`` adds a name.
Malformed paths (``/web/%00``, bad percent-encoding) get 400 or 404, never a traceback. The
connection count is bounded: at most ``max_connections`` are handled at once (more are closed at
once), and each gets ``timeout`` seconds to send its request, so half-open connections cannot
pile up threads.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import socket
import stat
import sys
import threading
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from spinescan.edge.manifest import MANIFEST_NAME, manifest_files, read_manifest
from spinescan.errors import ModelRefusedError, SpineScanError
from spinescan.export.webpage import GENERATED_FILES, ORT_FILES, SOURCE_FILES, WEB_DIR

CURRENT = "current"  # spinescan.export.publish.CURRENT (not imported: that module needs onnx)
MIME = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".onnx": "application/octet-stream",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css",
    ".json": "application/json",
}
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
#: Connections handled at once; the page needs a handful (its scripts, the manifest, the models).
MAX_CONNECTIONS = 64
#: Seconds a connection may take to send its request (and between reads of the response).
TIMEOUT_S = 10.0


class Refused(Exception):
    """A request answered with an HTTP error status (and no traceback)."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


def version_dir(root: Path) -> Path:
    """The folder of the export version ``current`` points to now (``root`` for a plain folder)."""
    pointer = root / CURRENT
    return Path(os.path.realpath(pointer)) if pointer.is_symlink() else root


def _split(raw_path: str) -> list[str]:
    """The decoded segments of a request path; 400 for anything malformed or suspicious."""
    path = urllib.parse.urlsplit(raw_path).path
    if not path.startswith("/"):
        raise Refused(400, "the path must start with /")
    try:
        decoded = urllib.parse.unquote_to_bytes(path).decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise Refused(400, "the path is not UTF-8") from None
    if any(c in decoded for c in "\0\\") or any(ord(c) < 32 for c in decoded):
        raise Refused(400, "control characters or backslashes in the path")
    segments = decoded.split("/")[1:]
    if any(s in (".", "..") or s.startswith(".") for s in segments):
        raise Refused(404, "hidden names are not served")
    return segments


def _within(base: Path, parts: Iterable[str]) -> Path:
    """``base/parts``, provided no link is followed on the way: its real path is that path."""
    real_base = os.path.realpath(base)
    candidate = os.path.join(real_base, *parts)
    if os.path.realpath(candidate) != candidate:
        raise Refused(404, "links are not followed")
    return Path(candidate)


def resolve(root: Path, raw_path: str) -> Path | str:
    """The file to send for ``raw_path``, or a redirect target (a ``str``); raises :class:`Refused`."""
    segments = _split(raw_path)
    if segments in ([""], ["index.html"]):
        return "/web/"
    version = version_dir(root)
    if segments[0] == WEB_DIR:
        if segments == [WEB_DIR]:
            return "/web/"
        web = version / WEB_DIR if (version / WEB_DIR).is_dir() else root / WEB_DIR
        rest = segments[1:]
        if rest == [""]:
            rest = ["index.html"]
        if (len(rest) == 1 and rest[0] in (*SOURCE_FILES, *GENERATED_FILES)) or (
            len(rest) == 2 and rest[0] == "ort" and rest[1] in ORT_FILES
        ):
            return _within(web, rest)
        raise Refused(404, "not part of the page")
    if len(segments) != 1:
        raise Refused(404, "not served")
    name = segments[0]
    if name == MANIFEST_NAME:
        return _within(version, [name])
    try:
        manifest = read_manifest(version)
    except ModelRefusedError:
        manifest = None
    listed = {f for entry in (manifest or {}).get("models", {}).values() for f in manifest_files(entry)}
    if name in listed:
        return _within(version, [name])
    raise Refused(404, "not a file of the current export")


class Handler(http.server.BaseHTTPRequestHandler):
    """GET and HEAD of the allow-listed files; no caching (a re-export shows at once), quiet."""

    server: BoundedServer
    timeout = TIMEOUT_S
    server_version = "spinescan-serve"
    sys_version = ""

    def setup(self) -> None:
        self.timeout = self.server.timeout_s  # the socket timeout StreamRequestHandler applies
        super().setup()

    def do_GET(self) -> None:  # the stdlib's name
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def _host_allowed(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        port = self.server.server_address[1]
        names = {*LOCAL_HOSTS, *self.server.allowed_hosts}
        return host in {f"{n}:{port}" for n in names} or host in self.server.allowed_hosts

    def _answer(self, body: bool) -> None:
        try:
            if not self._host_allowed():
                raise Refused(403, "Host header is not this machine (pass --allow-host NAME)")
            target = resolve(self.server.root, self.path)
            if isinstance(target, str):
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._send_file(target, body)
        except Refused as exc:
            self.send_error(exc.status, explain=str(exc))
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True

    def _send_file(self, path: Path, body: bool) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except (OSError, ValueError):
            raise Refused(404, "not found") from None
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise Refused(404, "not a regular file")
            self.send_response(200)
            self.send_header("Content-Type", MIME.get(path.suffix, "application/octet-stream"))
            self.send_header("Content-Length", str(info.st_size))
            self.end_headers()
            if body:
                shutil.copyfileobj(fh, self.wfile, 1 << 16)

    def log_message(self, format: str, *args: Any) -> None:  # stdlib signature
        pass


class BoundedServer(http.server.ThreadingHTTPServer):
    """A threading server that handles at most ``max_connections`` connections at once (further
    ones are closed at once rather than queued behind stalled ones) and never prints a traceback."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        root: Path,
        allowed_hosts: Iterable[str] = (),
        max_connections: int = MAX_CONNECTIONS,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.root = root
        self.timeout_s = timeout_s
        self.allowed_hosts = frozenset(h.strip().lower() for h in allowed_hosts if h.strip())
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: close it now, do not start thread 3001
            return
        try:
            super().process_request(request, client_address)
        except Exception:  # e.g. no thread could be started
            self._slots.release()
            self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line on stderr instead of the standard library's traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)):
            return
        with contextlib.suppress(Exception):
            print(f"spinescan serve: {client_address[0]}: {type(exc).__name__}: {exc}", file=sys.stderr)


def make_server(
    directory: str | Path,
    port: int = 8000,
    host: str = "127.0.0.1",
    allowed_hosts: Iterable[str] = (),
    max_connections: int = MAX_CONNECTIONS,
    timeout_s: float = TIMEOUT_S,
) -> BoundedServer:
    """A server for ``directory`` (which must hold ``web/index.html``); port 0 picks a free one."""
    directory = Path(directory)
    if not (directory / WEB_DIR / "index.html").is_file():
        raise SpineScanError(
            f"{directory}/web/index.html not found: run `spinescan export --onnx` first "
            "(it writes the page; `make install` runs the npm step it needs)"
        )
    try:
        return BoundedServer((host, port), directory, allowed_hosts, max_connections, timeout_s)
    except OSError as exc:
        raise SpineScanError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); try --port") from None


@click.command("serve")
@click.option(
    "--dir",
    "directory",
    default="exported",
    show_default=True,
    type=click.Path(file_okay=False),
    help="The export folder (holds web/, manifest.json and the models).",
)
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port."
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests whose Host header is NAME (or NAME:PORT); by default only "
    "localhost, 127.0.0.1 and [::1] (a defence against DNS rebinding). Repeatable.",
)
def serve_command(directory: str, port: int, allow_hosts: tuple[str, ...]) -> None:
    """Serve the exported browser page on http://127.0.0.1:PORT/web/ (films never leave the browser)."""
    server = make_server(directory, port, allowed_hosts=allow_hosts)
    host, real_port = server.server_address[:2]
    click.echo(f"Spine Scan page: http://{host}:{real_port}/web/  (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        server.server_close()


COMMANDS = (serve_command,)
