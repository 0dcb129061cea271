"""Interrupted training continues where it stopped: after a hard kill and after Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")

from spinescan.cli.train import resume_command
from spinescan.training import callbacks as callbacks_module
from spinescan.training import runs
from spinescan.training.inference import load_run_model
from spinescan.training.loop import TrainConfig, TrainingInterrupted, train
from spinescan.training.runs import RunDir
from spinescan.training.settings import RunSettings


def _small_copy(src: Path, dst: Path, per_class: int) -> Path:
    for label in ("healthy", "kyphosis", "lordosis"):
        (dst / "lateral" / label).mkdir(parents=True)
        for f in sorted((src / "lateral" / label).iterdir())[:per_class]:
            shutil.copy(f, dst / "lateral" / label / f.name)
    return dst


def _env() -> dict[str, str]:
    return {**os.environ, "SPINESCAN_DISABLE_PLUGIN_AUTOLOAD": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def _history_epochs(run_dir: Path) -> list[int]:
    return [r["epoch"] for r in RunDir(run_dir).read_history()]


@pytest.mark.slow
def test_killed_training_resumes_from_last_finished_epoch(phantom_dir: Path, tmp_path: Path) -> None:
    data = _small_copy(phantom_dir, tmp_path / "data", 12)
    runs_dir = tmp_path / "runs"
    run_dir = runs_dir / "generalist" / "r1"
    # Killed once 3 epochs are in history.csv: 8 leave 5 epochs (and the final evaluation) for the
    # kill to land in, and 32 px is what the Ctrl-C test below trains at; the resume, not the
    # training, is what is checked (the schedule was 12 epochs at 48 px, 64 s of the suite).
    epochs = 8
    base = [
        sys.executable,
        "-m",
        "spinescan",
        "train",
        "generalist",
        "--runs",
        str(runs_dir),
        "--run-id",
        "r1",
    ]
    args = [
        "--data",
        str(data),
        "--epochs",
        str(epochs),
        "--image-size",
        "32",
        "--batch-size",
        "8",
        "--patience",
        "100",
    ]
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(base + args, stdout=log, stderr=subprocess.STDOUT, env=_env())
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if len(_history_epochs(run_dir)) >= 3 if (run_dir / "history.csv").exists() else False:
                break
            time.sleep(0.05)
        assert proc.poll() is None, (
            "training ended before it could be killed:\n" + (tmp_path / "first.log").read_text()
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    before = RunDir(run_dir).read_history()
    assert len(before) >= 3
    assert not (run_dir / "metrics.json").exists()
    assert runs.latest_unfinished_run(runs_dir, "generalist") == run_dir
    backup = json.loads((run_dir / ".backup" / "training_metadata.json").read_text())
    done = backup["epoch"]
    assert done >= len(before) - 1

    resumed = subprocess.run([*base, "--resume"], capture_output=True, text=True, env=_env(), timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    output = resumed.stdout + resumed.stderr
    assert f"Epoch {done + 1}/{epochs}" in output and "Epoch 1/" not in output
    after = RunDir(run_dir).read_history()
    assert [r["epoch"] for r in after] == list(range(1, epochs + 1))  # continuous, no duplicates
    assert after[:done] == before[:done]  # the finished epochs were kept, not retrained
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["finished"] and metrics["epochs_run"] == epochs
    model = load_run_model(run_dir)
    assert model.output_shape == (None, 3)
    assert not (run_dir / ".backup").exists()


class _Interrupt:
    """A callback that presses Ctrl-C at the end of a given epoch."""

    def __new__(cls, at_epoch: int):
        import keras

        class Interrupt(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch + 1 == at_epoch:
                    raise KeyboardInterrupt

        return Interrupt()


@pytest.mark.slow
def test_ctrl_c_keeps_files_and_says_how_to_resume(
    phantom_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _small_copy(phantom_dir, tmp_path / "data", 8)
    config = TrainConfig(
        "generalist",
        data=data,
        runs_dir=tmp_path / "runs",
        hparams={"epochs": 5, "batch_size": 8, "patience": 100},
        settings=RunSettings(image_size=32),
        run_id="ctrlc",
    )
    original = callbacks_module.assemble_callbacks
    monkeypatch.setattr(
        callbacks_module, "assemble_callbacks", lambda *a, **k: [*original(*a, **k), _Interrupt(2)]
    )
    with pytest.raises(TrainingInterrupted) as info:
        train(config)
    message = str(info.value)
    assert "2 finished epoch" in message
    assert "--resume --run-id ctrlc" in resume_command(info.value)  # the CLI's hint
    assert info.value.exit_code == 130
    run_dir = tmp_path / "runs" / "generalist" / "ctrlc"
    assert _history_epochs(run_dir) == [1, 2]
    load_run_model(run_dir)  # the kept model so far is intact
    assert not (run_dir / "metrics.json").exists()

    monkeypatch.setattr(callbacks_module, "assemble_callbacks", original)
    result = train(TrainConfig("generalist", runs_dir=tmp_path / "runs", resume=True, verbose=0))
    assert result.run_dir == run_dir
    assert _history_epochs(run_dir) == [1, 2, 3, 4, 5]
    assert result.metrics["finished"]
