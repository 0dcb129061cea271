"""``spinescan tune NAME``: parse arguments, call :func:`spinescan.training.tune.tune`, print the best."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from spinescan.cli.options import (
    device_option,
    hparam_options,
    json_option,
    runs_option,
    settings_options,
    verbosity,
    verbosity_options,
)
from spinescan.cli.progress import ClickProgress
from spinescan.training.config import DEFAULT_DATA
from spinescan.training.settings import RunSettings


@click.command("tune")
@click.argument("name")
@click.option(
    "--data", type=click.Path(path_type=Path), default=DEFAULT_DATA, show_default=True, help="Dataset folder."
)
@click.option(
    "--max-epochs", type=click.IntRange(min=1), default=20, show_default=True,
    help="Hyperband's largest epoch budget for one trial.",
)  # fmt: skip
@click.option(
    "--factor", type=click.IntRange(min=2), default=3, show_default=True,
    help="Hyperband's reduction factor (a third of the trials go on to the next round).",
)  # fmt: skip
@click.option(
    "--folds", type=click.IntRange(min=2),
    help="Score each trial by K-fold cross-validation over the train+val images (patient-grouped folds).",
)  # fmt: skip
@click.option(
    "--budget", metavar="N|DURATION",
    help="Stop after N trials in all, or after a duration (90s, 20m, 1h) [Hyperband's full schedule].",
)  # fmt: skip
@settings_options("tune")
@runs_option("Runs folder; the search lives in RUNS/tune/NAME unless --out is given.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), help="Project folder of the search.")
@click.option(
    "--restart", is_flag=True, help="Discard an earlier search in the project folder and start over."
)
@hparam_options(exclude=("epochs",))
@json_option(
    "Print the result as one JSON document on stdout (the best trial, its hyper-parameters, the "
    "files); progress goes to stderr."
)
@verbosity_options(
    quiet_help="No progress output: only the result and errors.",
    verbose_help="Also one line per finished trial: its settings, epochs, score and time.",
)
@device_option
def tune_command(
    name: str,
    data: Path,
    max_epochs: int,
    factor: int,
    folds: int | None,
    budget: str | None,
    settings: RunSettings,
    runs_dir: Path,
    out: Path | None,
    restart: bool,
    hparams: dict[str, Any],
    hparams_file: Path | None,
    as_json: bool,
    quiet: bool,
    verbose: bool,
) -> None:
    """Search NAME's hyper-parameters with Hyperband (the space its plugin declares).

    Each trial trains on the train split and is scored by validation accuracy (or the mean over
    --folds K); the test split is never read. Running the same command again continues the
    search. Writes trials.csv/json and best_hparams.json, for `spinescan train NAME --hparams FILE`.
    Options given here (e.g. --batch-size) are fixed, not searched.
    """
    from spinescan.progress import stdout_to_stderr
    from spinescan.training.tune import Budget, TuneConfig, tune  # no TensorFlow yet

    level = verbosity(quiet, verbose)
    progress = ClickProgress(quiet=quiet)
    config = TuneConfig(
        model=name, data=data, out=out, runs_dir=runs_dir, max_epochs=max_epochs, factor=factor, folds=folds,
        budget=Budget.parse(budget), settings=settings, hparams=hparams,
        hparams_file=hparams_file, overwrite=restart, verbose=level > 1, progress=progress,
    )  # fmt: skip
    with stdout_to_stderr(as_json):  # keras-tuner prints to stdout
        result = tune(config)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, allow_nan=False))
        return
    if result.best_file is None:
        click.echo(f"No trial finished yet; run the same command again to continue ({result.project_dir}).")
        return
    settings = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.best.items()
    )
    click.echo(
        f"Best of {len(result.trials)} trial(s): validation accuracy {result.best_score:.3f} with {settings}"
    )
    click.echo(f"  trials: {result.project_dir / 'trials.csv'} ({result.seconds / 60:.1f} min this session)")
    click.echo(f"  best:   {result.best_file}")
    click.echo(f"  next:   spinescan train {name} --hparams {result.best_file} --data {data}")


COMMANDS = [tune_command]
