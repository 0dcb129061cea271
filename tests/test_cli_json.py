"""One flag vocabulary (issue 25 #5): ``--json`` prints one parseable document on stdout (progress
on stderr), ``-q/--quiet`` and ``-v/--verbose`` mean the same on every command that prints progress.

One tiny classifier is trained once (through ``train --json``) for the train and export tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from spinescan.cli import build_cli

#: Which commands take which flags. A command that prints progress takes -q and -v; one that prints
#: a result takes --json (``serve`` prints neither: it serves until stopped).
PROGRESS = ("train", "tune", "bench", "export", "synth", "val", "predict", "data check")
RESULTS = ("train", "tune", "bench", "export", "val", "predict", "data check", "models", "plugins")
DEVICE = ("train", "tune", "bench", "export", "val", "predict")


def _commands() -> dict[str, click.Command]:
    """Every command of the group by its full name (``data check`` for a subcommand)."""
    out: dict[str, click.Command] = {}
    for name, command in build_cli().commands.items():
        if isinstance(command, click.Group):
            out.update({f"{name} {sub}": c for sub, c in command.commands.items()})
        else:
            out[name] = command
    return out


def _flags(command: click.Command) -> dict[str, click.Parameter]:
    return {opt: p for p in command.params for opt in getattr(p, "opts", [])}


def test_every_command_has_the_vocabulary_where_it_applies() -> None:
    commands = _commands()
    assert set(PROGRESS) | set(RESULTS) <= set(commands)
    for name, command in commands.items():
        flags = _flags(command)
        if name in PROGRESS:
            for short, long in (("-q", "--quiet"), ("-v", "--verbose")):
                assert flags.get(short) is flags.get(long) is not None, (name, long)
                assert flags[long].is_flag, (name, long)
        if name in RESULTS:
            assert "--json" in flags and flags["--json"].is_flag, name
            assert flags["--json"].name == "as_json" or name == "predict", name
        if name in DEVICE:
            assert "--device" in flags, name
        # A command has both -q and -v or neither: the pair is declared once (cli/options.py).
        assert ("-q" in flags) == ("-v" in flags), name


def test_quiet_and_verbose_together_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(build_cli(), ["data", "check", str(tmp_path), "-q", "-v"])
    assert result.exit_code == 2 and "contradict" in result.output and "Traceback" not in result.output


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight 96 px lateral phantoms per class (a second or two to draw)."""
    from spinescan.synth import generate

    out = tmp_path_factory.mktemp("tiny")
    generate(out, per_class=8, seed=0, size=96, views=("lateral",), workers=1, progress=False)
    return out


def test_data_check_json_and_verbose(tiny: Path) -> None:
    runner = CliRunner()
    plain = runner.invoke(build_cli(), ["data", "check", str(tiny), "--json"])
    assert plain.exit_code == 0, plain.output
    doc = json.loads(plain.stdout)
    assert doc["ok"] and doc["total"] == 24 and "files" not in doc
    verbose = runner.invoke(build_cli(), ["data", "check", str(tiny), "--json", "-v"])
    rows = json.loads(verbose.stdout)["files"]
    assert len(rows) == 24 and {r["status"] for r in rows} == {"ok"}
    lines = runner.invoke(build_cli(), ["data", "check", str(tiny), "-v", "-q"])
    assert lines.exit_code == 2  # contradictory
    listed = runner.invoke(build_cli(), ["data", "check", str(tiny), "-v"])
    assert listed.exit_code == 0 and listed.stdout.count(": ok") == 24
    quiet = runner.invoke(build_cli(), ["data", "check", str(tiny), "-q"])
    assert quiet.exit_code == 0 and quiet.stderr == ""  # no progress bar
    assert "Checking images" in runner.invoke(build_cli(), ["data", "check", str(tiny)]).stderr


def test_synth_quiet_and_verbose(tmp_path: Path) -> None:
    args = ["synth", "--per-class", "2", "--size", "64", "--views", "ap", "--workers", "1"]
    quiet = CliRunner().invoke(build_cli(), [*args[:1], str(tmp_path / "q"), *args[1:], "-q"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == "" and quiet.stdout.startswith("Wrote ")
    verbose = CliRunner().invoke(build_cli(), [*args[:1], str(tmp_path / "v"), *args[1:], "-v"])
    assert "ap: healthy 2, scoliosis 2" in verbose.stdout


@pytest.fixture(scope="module")
def trained(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    """``train --json -v`` once: the parsed stdout, stderr, and the runs folder."""
    pytest.importorskip("tensorflow")
    runs_dir = tmp_path_factory.mktemp("runs")
    args = ["train", "generalist", "--data", str(tiny), "--runs", str(runs_dir), "--image-size", "32"]
    result = CliRunner().invoke(build_cli(), [*args, "--epochs", "1", "--batch-size", "8", "--json", "-v"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr, runs_dir


def test_train_json_is_the_run_result(trained: tuple[dict, str, Path]) -> None:
    doc, stderr, runs_dir = trained
    run_dir = Path(doc["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert doc["schema"] == "spinescan.train-result/1" and doc["model"] == "generalist"
    assert run_dir.parent.parent == runs_dir and doc["run_id"] == run_dir.name
    assert doc["test"] == metrics["test"] and doc["val"] == metrics["val"] and doc["test"]["n"] > 0
    assert doc["final_epoch"]["epoch"] == 1 and doc["epochs_run"] == 1 and doc["worker"] is False
    # -v: the resolved hyper-parameters and their sources, and Keras' epoch line, all on stderr.
    assert "epochs = 1 (option)" in stderr and "backbone = compact (plugin default)" in stderr
    assert "val_loss:" in stderr


def test_export_json_lists_files_sha256_and_gates(trained: tuple[dict, str, Path], tmp_path: Path) -> None:
    doc, _stderr, _runs = trained
    out = tmp_path / "exported"
    args = ["export", "--run", doc["run_dir"], "--out", str(out), "--json", "--allow-weak", "-q"]
    result = CliRunner().invoke(build_cli(), args)
    assert result.exit_code == 0, result.output
    export = json.loads(result.stdout)
    assert export["schema"] == "spinescan.export-result/1" and export["failed"] == {}
    assert (out / "current").resolve().name == export["version"]
    entry = export["models"]["generalist"]
    assert entry["sha256"] == hashlib.sha256((out / entry["file"]).read_bytes()).hexdigest()
    manifest = json.loads((out / "manifest.json").read_text())["models"]["generalist"]
    assert entry["sha256"] == manifest["sha256"] and entry["int8"] is None
    (gate,) = export["gates"]
    assert gate["model"] == "generalist" and gate["run_dir"] == doc["run_dir"]
    assert gate["weak"] == (entry["weak"] is not None) and gate["verdict"]
    assert "converting" not in result.stderr  # -q: no progress lines


def test_tune_json_is_the_best_trial(tiny: Path, tmp_path: Path) -> None:
    pytest.importorskip("keras_tuner")
    out = tmp_path / "search"
    args = ["tune", "generalist", "--data", str(tiny), "--image-size", "32", "--max-epochs", "1"]
    args += ["--factor", "2", "--batch-size", "8", "--out", str(out), "--budget", "1", "--json", "-v"]
    result = CliRunner().invoke(build_cli(), args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == "spinescan.tune-result/1" and doc["model"] == "generalist"
    assert doc["n_trials"] == 1 and doc["project_dir"] == out.as_posix()
    best = json.loads(Path(doc["best_file"]).read_text())["hparams"]
    assert doc["best_hparams"] == best and doc["best_score"] == doc["best_trial"]["val_accuracy"]
    trial = doc["best_trial"]["trial_id"]
    assert f"trial {trial} (1 epochs" in result.stderr  # -v: one line per finished trial


def test_quiet_progress_keeps_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    from spinescan.cli.progress import ClickProgress

    quiet = ClickProgress(quiet=True)
    quiet.info("Loading images")
    quiet.info("Warning: 3 films unreadable")
    assert capsys.readouterr().err == "Warning: 3 films unreadable\n"


def test_train_verbose_names_where_each_hyperparameter_came_from(tmp_path: Path) -> None:
    from spinescan.cli.train import hparam_lines
    from spinescan.zoo.hparams import HParams

    file = tmp_path / "hp.json"
    file.write_text(json.dumps({"schema": "spinescan.hparams/1", "hparams": {"dropout": 0.3}}))
    lines = hparam_lines(HParams(epochs=2, dropout=0.3), {"epochs": 2, "width": None}, file)
    assert "  epochs = 2 (option)" in lines and f"  dropout = 0.3 (--hparams {file})" in lines
    assert any(line.startswith("  width = ") and line.endswith("(plugin default)") for line in lines)


def test_export_report_to_dict_without_tensorflow(tmp_path: Path) -> None:
    """The document's shape from hand-made objects: a refused weak model, one exported model."""
    from spinescan.export.exporter import ExportReport
    from spinescan.export.selection import Assessment

    entry = {"file": "m.onnx", "sha256": "ab" * 32, "size_bytes": 10, "task": "classification",
             "view": "ap", "run_dir": "runs/m/1", "run_id": "1", "parity": {"max_abs_diff": 0.0},
             "int8": {"file": "m.int8.onnx", "sha256": "cd" * 32, "shipped": False, "reason": "slower",
                      "agreement": 0.9}}  # fmt: skip
    weak = Assessment("w", tmp_path / "w", 30, 0.33, (0.2, 0.45), 0.34, None, None, "unavailable")
    doc = ExportReport(tmp_path, {"m": entry}, {}, 2, ".v-1").to_dict([weak], ["w"])
    json.dumps(doc, allow_nan=False)
    assert doc["version"] == ".v-1" and doc["refused"] == ["w"] and doc["manifest"].endswith("manifest.json")
    assert doc["models"]["m"]["int8"] == {"file": "m.int8.onnx", "sha256": "cd" * 32, "shipped": False,
                                          "reason": "slower"}  # fmt: skip
    assert doc["models"]["m"]["weak"] is None
    (gate,) = doc["gates"]
    assert gate["weak"] and gate["baseline"] == 0.34 and gate["verdict"].startswith("WEAK MODEL")
