"""docker-compose.yml: validated with `docker compose config` where it exists, else parsed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _compose_config() -> dict | None:
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) is None:
            continue
        proc = subprocess.run([*cmd, "config", "--format", "json"], cwd=REPO, capture_output=True, text=True)
        if proc.returncode == 0:
            import json

            return json.loads(proc.stdout)
    return None


@pytest.fixture(scope="module")
def compose() -> dict:
    config = _compose_config()
    if config is not None:
        return config
    yaml = pytest.importorskip("yaml", reason="neither docker compose nor PyYAML is available")
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_services_and_build_contexts(compose: dict) -> None:
    services = compose["services"]
    assert {"spinescan", "predictor"} <= set(services)
    for name in ("spinescan", "predictor"):
        build = services[name]["build"]
        context = (REPO / build.get("context", ".")).resolve()
        assert context == REPO
        assert (context / build["dockerfile"]).is_file()


def test_cli_service_mounts_project_folders(compose: dict) -> None:
    targets = {
        str(v).split(":")[1] if isinstance(v, str) else v["target"]
        for v in compose["services"]["spinescan"]["volumes"]
    }
    assert {"/app/dataset", "/app/runs", "/app/exported"} <= targets


def test_predictor_image_has_no_tensorflow() -> None:
    dockerfile = (REPO / "docker" / "Dockerfile.predictor").read_text()
    install = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert install and all(
        "[train" not in line and "tensorflow" not in line.split("&&")[0] for line in install
    )
    assert "spinescan-predict" in dockerfile
