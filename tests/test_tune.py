"""``spinescan tune``: Hyperband over the plugin's search space, resumable, never reading the test split."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from spinescan.errors import SpecError, SpineScanError
from spinescan.zoo.hparams import HPARAMS_SCHEMA, HParams, resolve_hparams
from spinescan.zoo.search import Choice, Range, SearchSpace


def test_budget_parses_trials_and_durations() -> None:
    from spinescan.training.tune import Budget

    assert Budget.parse("12") == Budget(trials=12)
    assert Budget.parse("20m") == Budget(seconds=1200)
    assert Budget.parse("90s") == Budget(seconds=90)
    assert Budget.parse("1.5h") == Budget(seconds=5400)
    assert Budget.parse(None) == Budget()
    for bad in ("0", "2.5", "soon", "-3m"):
        with pytest.raises(SpineScanError):
            Budget.parse(bad)


def test_search_space_is_checked_against_hparams() -> None:
    with pytest.raises(SpecError, match="unknown hyper-parameter 'widht'"):
        SearchSpace((Choice("widht", (16, 32)),))
    with pytest.raises(SpecError, match="epochs is set by Hyperband"):
        SearchSpace((Range("epochs", 1, 10),))
    with pytest.raises(SpecError, match="optimizer"):
        SearchSpace((Choice("optimizer", ("adam", "rmsprop")),))
    with pytest.raises(SpecError, match="log range"):
        SearchSpace((Range("dropout", 0.0, 0.5, log=True),))


def test_builtins_declare_their_search_space() -> None:
    from spinescan.zoo.registry import get_spec

    for name in ("generalist", "kyphosis", "lordosis", "scoliosis"):
        names = set(get_spec(name).search.names)
        assert {"width", "depth", "dropout", "learning_rate", "optimizer"} <= names


def test_hyperband_trial_count_matches_keras_tuner() -> None:
    """The progress bar's total is the number of trials keras-tuner's oracle actually plans."""
    keras_tuner = pytest.importorskip("keras_tuner")
    from spinescan.training.tune import _hyperband_trials

    for max_epochs, factor in ((2, 2), (4, 2), (9, 3), (20, 3)):
        oracle = keras_tuner.oracles.HyperbandOracle(
            objective=keras_tuner.Objective("val_accuracy", "max"), max_epochs=max_epochs, factor=factor
        )
        planned = sum(
            oracle._get_size(bracket, round_)
            for bracket in range(oracle._get_num_brackets())
            for round_ in range(oracle._get_num_rounds(bracket))
        )
        assert _hyperband_trials(max_epochs, factor) == planned


@pytest.mark.slow
def test_tune_writes_trials_and_hparams_that_train_applies(phantom_dir: Path, tmp_path: Path) -> None:
    """A tiny search end to end through the CLI: tables, best file, resume, and the test split
    never read (every image the search decoded is in train or validation)."""
    pytest.importorskip("keras_tuner")
    from spinescan.cli import build_cli
    from spinescan.data.datasets import load_dataset
    from spinescan.data.splits import make_split
    from spinescan.training import pipeline

    read: list[str] = []
    original = pipeline.load_arrays

    def spy(samples, *args, **kwargs):
        read.extend(s.rel for s in samples)
        return original(samples, *args, **kwargs)

    pipeline.load_arrays = spy
    out = tmp_path / "search"
    args = [
        "tune", "generalist", "--data", str(phantom_dir), "--image-size", "32", "--max-epochs", "2",
        "--factor", "2", "--batch-size", "16", "--out", str(out), "--budget", "2",
    ]  # fmt: skip
    try:
        first = CliRunner().invoke(build_cli(), args)
        assert first.exit_code == 0, first.output
        assert "Hyperband trials" in first.output  # the progress bar
        rows = list(csv.DictReader((out / "trials.csv").open()))
        assert len(rows) == 2 and all(r["status"] == "COMPLETED" for r in rows)
        assert {"width", "depth", "dropout", "learning_rate", "optimizer", "val_accuracy"} <= set(rows[0])
        doc = json.loads((out / "trials.json").read_text())
        assert doc["schema"] == "spinescan.tune/1" and len(doc["trials"]) == 2

        # Resumable: the same project with a larger budget continues from trial 3.
        second = CliRunner().invoke(build_cli(), [*args[:-1], "3"])
        assert second.exit_code == 0, second.output
        assert "2 trial(s) already done" in second.output
        assert len(list(csv.DictReader((out / "trials.csv").open()))) == 3
    finally:
        pipeline.load_arrays = original

    lateral = load_dataset(phantom_dir).select(view="lateral").samples
    test = set(make_split(lateral, 0, 0.15, 0.15).test)
    assert read and not test & set(read)

    best = json.loads((out / "best_hparams.json").read_text())
    assert best["schema"] == HPARAMS_SCHEMA and best["model"] == "generalist"
    assert best["hparams"]["batch_size"] == 16  # fixed on the command line, kept
    top = next(iter(csv.DictReader((out / "trials.csv").open())))  # best first
    assert float(top["val_accuracy"]) == max(
        float(r["val_accuracy"]) for r in csv.DictReader((out / "trials.csv").open())
    )
    assert str(best["hparams"]["width"]) == top["width"]
    from spinescan.zoo.registry import get_spec

    applied = resolve_hparams(get_spec("generalist").train, {}, out / "best_hparams.json", "generalist")
    assert isinstance(applied, HParams) and applied.width == best["hparams"]["width"]
    assert applied.optimizer == best["hparams"]["optimizer"]


@pytest.mark.slow
def test_tune_folds_score_the_mean_over_folds(phantom_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("keras_tuner")
    from spinescan.training.settings import RunSettings
    from spinescan.training.tune import Budget, TuneConfig, tune

    result = tune(
        TuneConfig(
            model="kyphosis",
            data=phantom_dir,
            out=tmp_path / "cv",
            max_epochs=1,
            factor=2,
            folds=2,
            budget=Budget(trials=1),
            settings=RunSettings(image_size=32),
            hparams={"batch_size": 16},
        )
    )
    (trial,) = result.trials
    assert len(trial["fold_scores"]) == 2
    assert trial["val_accuracy"] == pytest.approx(sum(trial["fold_scores"]) / 2, abs=1e-4)


def test_tune_argument_errors_before_tensorflow(tmp_path: Path) -> None:
    from spinescan.cli import build_cli

    result = CliRunner().invoke(build_cli(), ["tune", "nosuchmodel", "--data", str(tmp_path)])
    assert result.exit_code != 0 and "nosuchmodel" in str(result.exception or result.output)
    result = CliRunner().invoke(build_cli(), ["tune", "generalist", "--data", str(tmp_path / "missing")])
    assert result.exit_code != 0
    assert "spinescan synth" in str(result.exception) or "not found" in str(result.exception)
