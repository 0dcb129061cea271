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
    assert {"notebook", "spinescan", "predictor"} <= set(services)
    for name in ("notebook", "spinescan", "predictor"):
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


def test_plain_up_starts_only_the_notebook(compose: dict) -> None:
    """`docker compose up` starts the services without a profile: the notebook, nothing that exits."""
    default = {name for name, svc in compose["services"].items() if not svc.get("profiles")}
    assert default == {"notebook"}


def test_notebook_service_serves_jupyter_on_the_project_folders(compose: dict) -> None:
    svc = compose["services"]["notebook"]
    targets = {str(v).split(":")[1] if isinstance(v, str) else v["target"] for v in svc["volumes"]}
    assert {"/app/notebooks", "/app/dataset", "/app/runs", "/app/reports", "/app/exported"} <= targets
    ports = [str(p) if not isinstance(p, dict) else f"{p.get('published')}:{p['target']}"
             for p in svc["ports"]]
    assert any(p.endswith("8888") for p in ports)
    target = svc["build"]["target"]
    dockerfile = (REPO / svc["build"]["dockerfile"]).read_text()
    assert f"AS {target}" in dockerfile
    stage = dockerfile.split(f"AS {target}", 1)[1]
    assert "scripts/notebook.sh" in stage and "notebook]" in stage
