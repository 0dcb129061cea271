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


def _published_ports(ports: list) -> list[tuple[str | None, str, str]]:
    """(host ip or None, host port, container port) of a service's ``ports`` in either syntax."""
    out = []
    for p in ports:
        if isinstance(p, dict):  # the long syntax, and `docker compose config` output
            out.append((p.get("host_ip") or None, str(p.get("published", "")), str(p["target"])))
            continue
        parts = str(p).split(":")
        if len(parts) == 3:
            out.append((parts[0], parts[1], parts[2]))
        elif len(parts) == 2:
            out.append((None, parts[0], parts[1]))
        else:
            out.append((None, "", parts[0]))  # a random host port on every interface
    return out


def test_every_published_port_is_on_the_host_loopback_only() -> None:
    """Jupyter runs code and reads the films: `docker compose up` must not open it to the network
    (issue 26 #6). The file itself is read (the test does not depend on docker being installed)."""
    yaml = pytest.importorskip("yaml", reason="PyYAML (the dev extra) reads the compose file")
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    seen = []
    for name, svc in doc["services"].items():
        for host_ip, published, target in _published_ports(svc.get("ports", [])):
            seen.append(name)
            where = f"{name}: port {published}:{target}"
            assert host_ip == "127.0.0.1", f"{where} is published on every interface"
    assert "notebook" in seen
    assert ("127.0.0.1", "8888", "8888") in _published_ports(doc["services"]["notebook"]["ports"])


def test_published_ports_parser_flags_the_open_forms() -> None:
    assert _published_ports(["8888:8888"]) == [(None, "8888", "8888")]
    assert _published_ports(["8888"]) == [(None, "", "8888")]
    assert _published_ports([{"target": 8888, "published": "8888"}]) == [(None, "8888", "8888")]
    assert _published_ports(["127.0.0.1:8888:8888"]) == [("127.0.0.1", "8888", "8888")]


def test_the_notebook_listens_on_the_container_interface_and_the_script_defaults_to_loopback() -> None:
    """0.0.0.0 inside the image is the container's own interface (what Docker forwards to); run
    outside Docker, scripts/notebook.sh listens on 127.0.0.1 unless told otherwise."""
    script = (REPO / "scripts" / "notebook.sh").read_text()
    assert '--ip "${SPINESCAN_NOTEBOOK_IP:-127.0.0.1}"' in script
    stage = (REPO / "docker" / "Dockerfile").read_text().split("AS notebook", 1)[1]
    assert "SPINESCAN_NOTEBOOK_IP=0.0.0.0" in stage
