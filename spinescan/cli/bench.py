"""``spinescan bench``: train or reuse every model on one split, evaluate, and write the report."""

from __future__ import annotations

import json
from pathlib import Path

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
from spinescan.training.settings import RunSettings


@click.command("bench")
@click.argument("names", nargs=-1)
@click.option("--data", type=click.Path(path_type=Path), help="Dataset folder (default: dataset/phantoms).")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True, help="Seeds 0..K-1.")
@click.option(
    "--folds", type=click.IntRange(min=2), help="K-fold cross-validation (per seed) instead of one split."
)
@hparam_options(exclude=("backbone",))  # --backbone below compares several
@settings_options("bench")
@click.option("--out", type=click.Path(path_type=Path), help="Report folder (default: reports/<timestamp>/).")
@runs_option("Runs folder; winners.json is written here.")
@click.option("--backbone", "backbones", multiple=True, help="Backbone(s) to compare; repeat the option.")
@click.option("--by", "by", metavar="COLUMN", help="Also report metrics per value of a manifest column.")
@click.option("--no-reuse", is_flag=True, help="Train again even when a matching finished run exists.")
@click.option("--no-probes", is_flag=True, help="Skip the shortcut probes.")
@click.option(
    "--bootstrap",
    "n_boot",
    type=click.IntRange(min=100),
    default=1000,
    show_default=True,
    help="Bootstrap replicates for the CIs.",
)
@click.option(
    "--per-class",
    type=click.IntRange(min=10),
    default=300,
    show_default=True,
    help="Images per class if the default phantom set has to be generated.",
)
@json_option("Print leaderboard.json to stdout; progress and Keras' epoch lines go to stderr.")
@verbosity_options(
    quiet_help="No progress output (no Keras epoch lines either): only the summary, warnings and errors.",
    verbose_help="One Keras line per epoch (not a bar), and every file the report wrote.",
)
@device_option
def bench_command(
    names: tuple[str, ...],
    data: Path | None,
    seeds: int,
    folds: int | None,
    hparams: dict,
    hparams_file: Path | None,
    settings: RunSettings,
    out: Path | None,
    runs_dir: Path,
    backbones: tuple[str, ...],
    by: str | None,
    no_reuse: bool,
    no_probes: bool,
    n_boot: int,
    per_class: int,
    as_json: bool,
    quiet: bool,
    verbose: bool,
) -> None:
    """Benchmark models NAME... (default: every registered model) on one shared split.

    Trains each model for every seed (or reuses a matching finished run), evaluates it on the
    shared test split with bootstrap CIs, runs the paired generalist-vs-specialist study, picks
    winners on validation accuracy (saved to RUNS/winners.json for `spinescan export --onnx`), and
    writes leaderboard.json, report.md and plots to --out. Hyper-parameters apply to every run:
    plugin default < --hparams FILE < explicit option.
    """
    from spinescan.evaluation.bench import BenchConfig, run_benchmark

    level = verbosity(quiet, verbose)
    progress = ClickProgress(quiet=quiet)
    # Argument errors (unknown model, bad --hparams) come before any work: run_benchmark resolves
    # each named model first (evaluation.jobs.check_requests), once for all its runs.
    config = BenchConfig(
        models=names,
        data=data,
        seeds=seeds,
        folds=folds,
        hparams=hparams,
        hparams_file=hparams_file,
        settings=settings,
        out=out,
        runs_dir=runs_dir,
        reuse=not no_reuse,
        backbones=backbones,
        by=by,
        n_boot=n_boot,
        probes=not no_probes,
        verbose=[0, 2 if as_json else 1, 2][level],
        per_class=per_class,
        progress=progress,
    )
    leaderboard = run_benchmark(config, quiet_stdout=as_json)
    if level > 1 and leaderboard.get("report"):
        folder = Path(leaderboard["report"]).parent
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            progress.info(f"wrote {path}")
    if as_json:
        click.echo(json.dumps(leaderboard, indent=2))
        return
    click.echo(summary_lines(leaderboard))


def summary_lines(leaderboard: dict) -> str:
    """A short terminal summary; the full story is in report.md."""
    lines = []
    width = max((len(e["key"]) for e in leaderboard["models"]), default=5)
    for e in leaderboard["models"]:
        acc, ci = e.get("accuracy"), e.get("accuracy_ci") or [None, None]
        ci_text = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if None not in ci else ""
        mark = "  winner: " + e["winner_run"] if e.get("winner_run") else ""
        acc_text = f"{acc:.3f}" if acc is not None else "–"
        lines.append(f"{e['key']:<{width}}  test accuracy {acc_text} {ci_text}{mark}")
    study = leaderboard.get("study")
    if study:
        lines += ["", study["answer"]]
    lines += ["", f"Report: {leaderboard.get('report')}"]
    return "\n".join(lines)


COMMANDS = [bench_command]
