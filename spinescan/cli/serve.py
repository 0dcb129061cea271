"""``spinescan serve``: the exported browser page on localhost.

Serves the export folder (``exported/`` by default) with the standard library's HTTP server,
bound to 127.0.0.1 only: the page, its runtime and the models come from there, and films dropped
on the page are read in the browser, never sent to this server. ``.wasm`` and ``.mjs`` get the
MIME types browsers insist on for WebAssembly streaming and ES modules.
"""

from __future__ import annotations

import functools
import http.server
from pathlib import Path

import click

from spinescan.errors import SpineScanError

MIME = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".onnx": "application/octet-stream",
}


class Handler(http.server.SimpleHTTPRequestHandler):
    """Static files with the right MIME types, no caching (a re-export shows at once), quiet."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME}

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.path in ("/", "/index.html"):
            self.send_response(302)
            self.send_header("Location", "/web/")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


def make_server(
    directory: str | Path, port: int = 8000, host: str = "127.0.0.1"
) -> http.server.ThreadingHTTPServer:
    """A server for ``directory`` (which must hold ``web/index.html``); port 0 picks a free one."""
    directory = Path(directory)
    if not (directory / "web" / "index.html").is_file():
        raise SpineScanError(
            f"{directory}/web/index.html not found: run `spinescan export --onnx` first "
            "(it writes the page; `make install` runs the npm step it needs)"
        )
    handler = functools.partial(Handler, directory=str(directory))
    try:
        return http.server.ThreadingHTTPServer((host, port), handler)
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
def serve_command(directory: str, port: int) -> None:
    """Serve the exported browser page on http://127.0.0.1:PORT/web/ (films never leave the browser)."""
    server = make_server(directory, port)
    host, real_port = server.server_address[:2]
    click.echo(f"Spine Scan page: http://{host}:{real_port}/web/  (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        server.server_close()


COMMANDS = (serve_command,)
