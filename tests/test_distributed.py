"""MultiWorkerMirroredStrategy: two local worker processes on loopback, configured by TF_CONFIG."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.mark.slow
def test_two_workers_train_together_and_only_the_chief_writes(phantom_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for label in ("healthy", "kyphosis", "lordosis"):
        (data / "lateral" / label).mkdir(parents=True)
        for f in sorted((phantom_dir / "lateral" / label).iterdir())[:10]:
            shutil.copy(f, data / "lateral" / label / f.name)
    runs_dir = tmp_path / "runs"
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    command = [
        sys.executable,
        "-m",
        "spinescan",
        "train",
        "generalist",
        "--data",
        str(data),
        "--runs",
        str(runs_dir),
        "--run-id",
        "mw",
        "--epochs",
        "2",
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--strategy",
        "multiworker",
    ]
    procs = []
    for index in range(2):
        env = {
            **os.environ,
            "SPINESCAN_DISABLE_PLUGIN_AUTOLOAD": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        }
        procs.append(
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        )
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=420)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for index, (proc, out) in enumerate(zip(procs, outputs, strict=True)):
        assert proc.returncode == 0, f"worker {index} failed:\n{out[-3000:]}"
    run_dir = runs_dir / "generalist" / "mw"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["finished"] and metrics["epochs_run"] == 2
    config = json.loads((run_dir / "config.json").read_text())
    assert config["strategy"] == {"name": "multiworker", "replicas": 2}
    from spinescan.training.inference import load_run_model

    assert load_run_model(run_dir).output_shape == (None, 3)
    assert "Finished generalist" in outputs[0]  # the chief summarises
    assert "Worker finished" in outputs[1]  # the other worker trained but wrote nothing
    assert sorted(p.name for p in (runs_dir / "generalist").iterdir()) == ["mw"]
