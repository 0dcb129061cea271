"""Training on a disk that refuses writes (issue 26 #5): an unwritable ``--runs`` is refused in
one line before any image is loaded; a save that fails (a full disk, simulated with ENOSPC)
keeps what was saved before and says how to resume."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")

from click.testing import CliRunner

from spinescan.cli import build_cli
from spinescan.errors import SpineScanError
from spinescan.training import failures, inference, loop
from spinescan.training.loop import TrainConfig, train
from spinescan.training.settings import RunSettings


def _small(src: Path, dst: Path, per_class: int = 6) -> Path:
    for label in ("healthy", "kyphosis", "lordosis"):
        (dst / "lateral" / label).mkdir(parents=True)
        for f in sorted((src / "lateral" / label).iterdir())[:per_class]:
            shutil.copy(f, dst / "lateral" / label / f.name)
    return dst


@pytest.mark.parametrize("kind", ["a file", "under a file"])
def test_an_unwritable_runs_folder_is_refused_before_loading_data(
    phantom_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    runs_dir = blocker if kind == "a file" else blocker / "runs"

    def no_loading(_plan):
        raise AssertionError("the data was loaded before --runs was checked")

    monkeypatch.setattr(loop, "load_training_data", no_loading)
    config = TrainConfig(
        "generalist",
        data=phantom_dir,
        hparams={"epochs": 0},
        settings=RunSettings(image_size=32),
        runs_dir=runs_dir,
    )
    with pytest.raises(SpineScanError, match="cannot write there") as info:
        train(config)
    assert "\n" not in str(info.value) and "--runs" in str(info.value)


def test_a_failed_save_keeps_the_run_and_says_how_to_resume(
    phantom_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: a traceback while saving the model, and no word on what to do next."""
    data = _small(phantom_dir, tmp_path / "data")
    runs_dir = tmp_path / "runs"
    real_save = inference.save_model

    def full_disk(model, run_dir):
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(run_dir) / "model.keras"))

    monkeypatch.setattr(inference, "save_model", full_disk)
    args = ["train", "generalist", "--data", str(data), "--runs", str(runs_dir), "--run-id", "r1"]
    args += ["--epochs", "0", "--image-size", "32"]
    result = CliRunner().invoke(build_cli(), args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "No space left on device" in lines[0], result.output
    assert "Resume with: spinescan train generalist --resume --run-id r1" in lines[0]
    run_dir = runs_dir / "generalist" / "r1"
    assert json.loads((run_dir / "config.json").read_text())["model"] == "generalist"
    assert (run_dir / "split.json").is_file() and not (run_dir / "model.keras").exists()

    monkeypatch.setattr(inference, "save_model", real_save)  # space again: the printed command works
    config = TrainConfig(
        "generalist", data=data, runs_dir=runs_dir, run_id="r1", resume=True, hparams={"epochs": 0}
    )
    done = train(config)
    assert done.run_dir == run_dir and done.metrics["finished"] and (run_dir / "model.keras").is_file()


def test_a_write_failure_inside_tensorflow_is_recognised() -> None:
    class OpError(Exception):
        pass

    OpError.__module__ = "tensorflow.python.framework.errors_impl"
    assert failures.is_write_failure(OpError("...: No space left on device"))
    assert not failures.is_write_failure(OpError("shape mismatch"))
    assert not failures.is_write_failure(ValueError("No space left on device"))
