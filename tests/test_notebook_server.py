"""The notebook service's Jupyter, started the way the container starts it, serves the walkthrough."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "notebook.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_jupyter_serves_the_walkthrough_notebook(tmp_path: Path) -> None:
    bindir = Path(sys.executable).parent
    if shutil.which("jupyter", path=str(bindir)) is None:
        pytest.skip("jupyter is not installed (notebook extra)")
    port, token = _free_port(), "spinescan-test-token"
    env = {
        **os.environ,
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "SPINESCAN_NOTEBOOK_PORT": str(port),
        "SPINESCAN_NOTEBOOK_TOKEN": token,
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
    }
    log = (tmp_path / "jupyter.log").open("w+")
    proc = subprocess.Popen(["bash", str(SCRIPT)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        status, body = 0, b""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, body = _get(f"{base}/api/contents/notebooks/walkthrough.ipynb?content=1", token)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        log.seek(0)
        output = log.read()
        assert status == 200, f"Jupyter did not serve the notebook (status {status}):\n{output[-2000:]}"
        model = json.loads(body)
        assert model["type"] == "notebook"
        assert any("spinescan" in "".join(cell["source"]) for cell in model["content"]["cells"])
        assert _get(f"{base}/api/contents/notebooks/walkthrough.ipynb", "wrong-token")[0] == 403
        assert f":{port}/" in output and "token=" in output  # the URL a user copies, as the service prints it
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
        log.close()
