"""Export right after train (no benchmark), the weak-model gate, and the one-line hints of every
"nothing to use yet" state."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spinescan.errors import SpineScanError
from spinescan.training.runs import RunDir


def _run(runs_dir: Path, model: str, run_id: str, data: Path | None = None, finished: bool = True) -> Path:
    run = runs_dir / model / run_id
    run.mkdir(parents=True)
    config = {"run_id": run_id, "model": model, "spec": {"name": model}}
    if data is not None:
        config["dataset"] = {"root": str(data)}
    (run / "config.json").write_text(json.dumps(config))
    (run / "metrics.json").write_text(json.dumps({"finished": finished}))
    return run


def test_export_after_train_takes_the_latest_run_of_every_model_and_says_so(tmp_path: Path) -> None:
    from spinescan.export.selection import select_runs

    runs_dir = tmp_path / "runs"
    with pytest.raises(SpineScanError, match="spinescan train generalist"):
        select_runs(runs_dir=runs_dir)
    _run(runs_dir, "generalist", "20250101-000000-s0")
    new = _run(runs_dir, "generalist", "20250102-000000-s0")
    _run(runs_dir, "generalist", "20250103-000000-s0", finished=False)
    kyph = _run(runs_dir, "kyphosis", "20250101-000000-s0")
    chosen = select_runs(runs_dir=runs_dir)
    assert chosen.source == "latest" and set(chosen.run_dirs) == {new, kyph}
    assert "no benchmark winners" in chosen.note and "spinescan bench" in chosen.note
    (runs_dir / "winners.json").write_text(json.dumps({"kyphosis": str(kyph)}))
    chosen = select_runs(runs_dir=runs_dir)
    # kyphosis: its newest run is the winner; generalist has no winner, so its newest run.
    assert chosen.source == "mixed" and set(chosen.run_dirs) == {new, kyph}


def _age(path: Path, seconds: float) -> None:
    import os

    os.utime(path, (seconds, seconds))


def test_export_takes_the_newest_run_unless_a_later_bench_picked_a_winner(tmp_path: Path) -> None:
    """Issue #22: `train generalist` then `export --onnx` exported an older bench winner."""
    from spinescan.export.selection import select_runs

    runs_dir = tmp_path / "runs"
    old = _run(runs_dir, "generalist", "20250101-000000-s0")
    (old / "benchmark.json").write_text("{}")
    (runs_dir / "winners.json").write_text(json.dumps({"generalist": str(old)}))
    _age(old / "metrics.json", 1_000)
    _age(old / "benchmark.json", 2_000)  # the bench picked it at t=2000
    new = _run(runs_dir, "generalist", "20250102-000000-s0")
    _age(new / "metrics.json", 3_000)  # trained after the bench
    chosen = select_runs(runs_dir=runs_dir)
    assert chosen.run_dirs == (new,) and chosen.source == "latest"
    assert "20250102-000000-s0" in chosen.note and "newer than the benchmark's winner" in chosen.note

    _age(old / "benchmark.json", 4_000)  # a later bench picked the old run again
    chosen = select_runs(runs_dir=runs_dir)
    assert chosen.run_dirs == (old,) and chosen.source == "winners"
    assert "the benchmark's winner, picked" in chosen.reasons[0]


def test_export_cli_says_which_run_and_why(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from spinescan.cli import build_cli

    runs_dir = tmp_path / "runs"
    run = _run(runs_dir, "generalist", "a", data=tmp_path / "nowhere")
    classes = ["healthy", "kyphosis", "lordosis"]
    _predictions(run, classes, [c for c in classes for _ in range(10)], ["healthy"] * 30)
    result = CliRunner().invoke(
        build_cli(), ["export", "--onnx", "--runs", str(runs_dir), "--out", str(tmp_path / "x")]
    )
    assert "generalist: run a (its newest finished run" in result.output


def _predictions(run: Path, classes: list[str], labels: list[str], predicted: list[str]) -> None:
    probs = np.array([[0.9 if c == p else 0.1 / (len(classes) - 1) for c in classes] for p in predicted])
    files = [f"lateral/{lab}/{i:03d}.png" for i, lab in enumerate(labels)]
    RunDir(run).write_predictions(classes, {"test": (files, labels, probs)})


def test_gate_calls_a_model_at_chance_weak_and_a_good_one_not(tmp_path: Path) -> None:
    from spinescan.export.selection import assess

    classes = ["healthy", "kyphosis", "lordosis"]
    labels = [c for c in classes for _ in range(20)]
    missing = tmp_path / "nowhere"  # images absent: the probe is reported unavailable, chance still applies

    chance_run = _run(tmp_path / "runs", "generalist", "a", data=missing)
    _predictions(chance_run, classes, labels, ["healthy"] * len(labels))  # 2-epoch model: one class
    weak = assess(chance_run)
    assert weak.weak and weak.accuracy == pytest.approx(1 / 3) and weak.chance == pytest.approx(1 / 3)
    assert "WEAK MODEL" in weak.verdict() and "chance" in weak.verdict()
    assert weak.probe is None and "unavailable" in weak.probe_source

    good_run = _run(tmp_path / "runs", "generalist", "b", data=missing)
    predicted = list(labels)
    predicted[0] = "kyphosis"  # 59 of 60 right
    _predictions(good_run, classes, labels, predicted)
    good = assess(good_run)
    assert not good.weak and good.ci[0] > good.chance

    # Better than chance on the point estimate but not beyond noise: 12 of 20 on two balanced classes.
    small = _run(tmp_path / "runs", "kyphosis", "c", data=missing)
    two = ["healthy"] * 10 + ["kyphosis"] * 10
    guess = ["healthy"] * 6 + ["kyphosis"] * 4 + ["kyphosis"] * 6 + ["healthy"] * 4
    _predictions(small, ["healthy", "kyphosis"], two, guess)
    result = assess(small)
    assert result.accuracy == pytest.approx(0.6) and result.weak


def test_gate_compares_with_the_shortcut_probe(phantom_dir: Path, tmp_path: Path) -> None:
    """When the test films are readable the best probe joins the baseline."""
    pytest.importorskip("sklearn")
    from spinescan.data.datasets import load_dataset
    from spinescan.export.selection import assess

    samples = [s for s in load_dataset(phantom_dir).select(view="lateral").samples if s.label != "lordosis"]
    labels = [s.label for s in samples]
    run = _run(tmp_path / "runs", "kyphosis", "p", data=phantom_dir)
    probs = np.array([[0.9, 0.1] if lab == "healthy" else [0.1, 0.9] for lab in labels])
    RunDir(run).write_predictions(
        ["healthy", "kyphosis"], {"test": ([s.rel for s in samples], labels, probs)}
    )
    result = assess(run)
    assert result.probe is not None and 0.0 <= result.probe <= 1.0
    assert result.baseline == max(result.chance, result.probe)
    assert not result.weak  # a perfect model beats any probe's lower baseline here


def test_export_cli_refuses_weak_models_unless_allowed(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from spinescan.cli import build_cli

    runs_dir = tmp_path / "runs"
    run = _run(runs_dir, "generalist", "a", data=tmp_path / "nowhere")
    classes = ["healthy", "kyphosis", "lordosis"]
    _predictions(run, classes, [c for c in classes for _ in range(10)], ["healthy"] * 30)
    result = CliRunner().invoke(
        build_cli(), ["export", "--onnx", "--runs", str(runs_dir), "--out", str(tmp_path / "x")]
    )
    from spinescan.export.selection import WeakModelsRefused

    assert result.exit_code != 0
    assert "no benchmark winners" in result.output and "WEAK MODEL" in result.output
    assert isinstance(result.exception, WeakModelsRefused) and result.exception.exit_code == 3
    assert "--allow-weak" in str(result.exception)
    assert not (tmp_path / "x" / "generalist.onnx").exists()


def test_nothing_exported_says_what_to_run(tmp_path: Path) -> None:
    import spinescan
    from spinescan.edge.predictor import ModelRefusedError, model_paths

    film = tmp_path / "film.png"
    import cv2

    cv2.imwrite(str(film), np.zeros((32, 32), np.uint8))
    with pytest.raises(ModelRefusedError, match="spinescan export --onnx") as info:
        spinescan.predict_image(str(film), models_dir=str(tmp_path / "exported"))
    # Jupyter shows one line, not a traceback.
    assert info.value._render_traceback_() == [f"ModelRefusedError: {info.value}"]
    with pytest.raises(ModelRefusedError, match="spinescan train generalist"):
        model_paths(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelRefusedError, match="spinescan export --onnx"):
        model_paths(tmp_path / "empty")


def test_bench_with_a_missing_data_folder_says_how_to_make_one(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from spinescan.cli import build_cli

    result = CliRunner().invoke(build_cli(), ["bench", "generalist", "--data", str(tmp_path / "nope")])
    assert result.exit_code != 0 and "spinescan synth" in str(result.exception)
