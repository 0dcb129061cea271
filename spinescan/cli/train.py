"""``spinescan train NAME``: parse arguments, call :func:`spinescan.training.loop.train`, print a summary.

Argument errors (unknown model, missing data folder, bad --hparams file) are found by
:func:`spinescan.training.config.resolve_request` before TensorFlow is imported; its result is
passed on to training, which does not resolve the request again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from spinescan.training.config import Resolved, TrainConfig
    from spinescan.training.loop import TrainingInterrupted
    from spinescan.training.settings import RunSettings


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def kept_wording(metrics: dict) -> str:
    """Which epoch the run kept, named for what it is: the last one, or the best by validation."""
    from spinescan.training.runs import kept_epoch

    epoch, run = kept_epoch(metrics), metrics.get("epochs_run")
    if metrics.get("checkpoint", "best") == "last" or epoch == run:
        return f"kept the last epoch ({epoch} of {run})"
    return f"kept epoch {epoch} of {run} (best validation accuracy)"


def summary_lines(run_dir: Path, metrics: dict) -> list[str]:
    """The end-of-training summary (also used by tests): accuracy, time, target, run dir."""
    val, test = metrics.get("val", {}), metrics.get("test", {})
    if metrics.get("task") == "landmarks":
        return landmark_summary_lines(run_dir, metrics)

    def scores(part: dict) -> str:
        return (
            f"{_fmt(part.get('accuracy'))} (balanced {_fmt(part.get('balanced_accuracy'))}, "
            f"n={part.get('n', 0)})"
        )

    target = metrics.get("target_accuracy")
    if metrics.get("epochs_to_target") is not None:
        reached = (
            f"reached {target:.2f} at epoch {metrics['epochs_to_target']} "
            f"({metrics['seconds_to_target']:.0f} s)"
        )
    else:
        reached = f"never reached {_fmt(target, '.2f')}"
    return [
        f"Finished {metrics.get('model')} ({metrics.get('backbone')}, "
        f"{metrics.get('params', 0):,} parameters)",
        f"  validation accuracy {scores(val)}, {kept_wording(metrics)}",
        f"  test accuracy       {scores(test)}",
        f"  training time {metrics.get('train_seconds', 0):.0f} s; target accuracy: {reached}",
        f"  run: {run_dir}",
    ]


def resume_command(exc: TrainingInterrupted) -> str:
    """The command line that continues an interrupted run."""
    return (
        f"spinescan train {exc.model} --resume --run-id {exc.run_id} --runs {exc.runs_dir} --data {exc.data}"
    )


@click.command("train")
@click.argument("name")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=DEFAULT_DATA,
    show_default=True,
    help="Dataset folder (DIR/<class>/*, DIR/<view>/<class>/* or DIR/manifest.csv).",
)
@hparam_options()
@settings_options("train")
@runs_option("Where run directories go (runs/<model>/<run-id>/).")
@click.option("--resume", is_flag=True, help="Continue the latest interrupted run of NAME (or --run-id).")
@click.option("--run-id", help="Name the run directory (default: a timestamp).")
@click.option(
    "--file-backed",
    is_flag=True,
    help="Keep the decoded images in memory-mapped files on disk, not in RAM (datasets larger than memory).",
)
@click.option(
    "--init-from",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="A run directory whose weights initialise the model (layers matched by name).",
)
@click.option("--tensorboard", is_flag=True, help="Also write TensorBoard logs into the run directory.")
@json_option(
    "Print the result as one JSON document on stdout (run dir, model, last epoch, validation and "
    "test summaries from metrics.json); progress and Keras' epoch lines go to stderr."
)
@verbosity_options(
    quiet_help="No progress output (no Keras epoch lines either): only the summary and errors.",
    verbose_help="Also the resolved hyper-parameters, where each came from, and one Keras line per epoch.",
)
@device_option
def train_command(
    name: str,
    data: Path,
    hparams: dict[str, Any],
    hparams_file: Path | None,
    settings: RunSettings,
    runs_dir: Path,
    resume: bool,
    run_id: str | None,
    file_backed: bool,
    init_from: Path | None,
    tensorboard: bool,
    as_json: bool,
    quiet: bool,
    verbose: bool,
) -> None:
    """Train model NAME (see `spinescan models`) with the plugin's defaults for what is not given.

    Hyper-parameters: plugin default < --hparams FILE < explicit option.
    Interrupt with Ctrl-C at any time: finished epochs are kept and --resume continues.
    """
    from spinescan.progress import stdout_to_stderr
    from spinescan.training.config import TrainConfig, resolve_request  # no TensorFlow

    level = verbosity(quiet, verbose)
    progress = ClickProgress(quiet=quiet)
    config = TrainConfig(
        model=name,
        data=data,
        hparams=hparams,
        hparams_file=hparams_file,
        settings=settings,
        runs_dir=runs_dir,
        resume=resume,
        run_id=run_id,
        init_from=init_from,
        in_memory=not file_backed,
        tensorboard=tensorboard,
        verbose=[0, 2 if as_json else 1, 2][level],  # Keras: silent, a bar (lines off a tty), lines
        progress=progress,
    )
    resolved = resolve_request(config)  # every argument error now, in well under a second: once per run
    if level > 1:
        for line in hparam_lines(resolved.hparams, hparams, hparams_file):
            progress.info(line)
    with stdout_to_stderr(as_json):  # Keras writes its epoch lines to stdout
        result = _run(config, resolved)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, allow_nan=False))
        return
    if not result.metrics:  # a non-chief worker of a multi-worker run
        click.echo(f"Worker finished; the chief writes {result.run_dir}")
        return
    for line in summary_lines(result.run_dir, result.metrics):
        click.echo(line)


def hparam_lines(resolved: Any, given: dict[str, Any], hparams_file: Path | None) -> list[str]:
    """``train -v``: every hyper-parameter the run uses and where it came from (the plugin's
    default, the --hparams file, or an explicit option)."""
    from spinescan.zoo.hparams import read_hparams_file

    from_file = read_hparams_file(hparams_file) if hparams_file else {}
    lines = ["Hyper-parameters:"]
    for name, value in resolved.to_dict().items():
        source = (
            "option"
            if given.get(name) is not None
            else f"--hparams {hparams_file}"
            if name in from_file
            else "plugin default"
        )
        lines.append(f"  {name} = {value} ({source})")
    return lines


def _run(config: TrainConfig, resolved: Resolved) -> Any:
    from spinescan.training.loop import TrainingInterrupted, train

    pretrain = config.settings.pretrain
    try:
        if pretrain:
            from spinescan.training.pretrain import PhantomStage, pretrain_and_finetune

            stage = PhantomStage.from_settings(config.settings)
            return pretrain_and_finetune(config, pretrain, stage, resolved)
        return train(config, resolved)
    except TrainingInterrupted as exc:
        click.echo(f"Error: {exc} Resume with: {resume_command(exc)}", err=True)
        raise SystemExit(exc.exit_code) from None


def landmark_summary_lines(run_dir: Path, metrics: dict) -> list[str]:
    """A landmark run's summary: landmark error, angle MAE, label accuracy (from the angles)."""
    lines = [f"Finished {metrics.get('model')} (landmarks, {metrics.get('params', 0):,} parameters)"]
    for part in ("val", "test"):
        r = metrics.get(part) or {}
        err = r.get("landmark_error")
        maes = ", ".join(
            f"{name} {_fmt(a.get('mae'), '.2f')}" for name, a in (r.get("angles") or {}).items()
        )
        lines.append(
            f"  {part:<4} n={r.get('n', 0)}: landmark error {_fmt(err, '.4f')} x film height; "
            f"angle MAE (deg) {maes}; label accuracy {_fmt(r.get('label_accuracy'))}"
        )
    lines += [
        f"  training time {metrics.get('train_seconds', 0):.0f} s ({metrics.get('epochs_run')} epochs)",
        f"  run: {run_dir}",
    ]
    return lines


COMMANDS = [train_command]
