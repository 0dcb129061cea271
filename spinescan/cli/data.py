"""``spinescan data ...``: look at a dataset before training on it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from spinescan.cli.options import json_option, verbosity, verbosity_options
from spinescan.cli.progress import ClickProgress
from spinescan.data.checks import CheckReport, check_dataset


@click.group("data")
def data() -> None:
    """Inspect datasets (layouts: DIR/<class>/*, DIR/<view>/<class>/*, DIR/manifest.csv)."""


@data.command("check")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--view", default=None, help="View of a DIR/<class>/* dataset (e.g. lateral, ap).")
@click.option("--min-size", default=32, show_default=True, help="Smallest usable side, in pixels.")
@click.option("--no-read", is_flag=True, help="Hash files but do not decode them (faster).")
@json_option("Print the report as JSON on stdout (with -v: one row per file); progress on stderr.")
@verbosity_options(
    quiet_help="No progress bar: only the report and errors.",
    verbose_help="Also one line per file: its view, label and status (ok, or why it is unusable).",
)
def check(
    directory: Path, view: str | None, min_size: int, no_read: bool, as_json: bool, quiet: bool, verbose: bool
) -> None:
    """Count images per view and class; list unreadable files, duplicates, tiny images, imbalance.

    Exits non-zero on errors (identical files under different labels, a class with no usable
    image: what `spinescan train` refuses too); other unreadable files are listed but not fatal,
    since training skips them.
    """
    level = verbosity(quiet, verbose)
    report = check_dataset(
        directory, default_view=view, min_size=min_size, read=not no_read, progress=ClickProgress(quiet=quiet)
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(files=level > 1), indent=2))
    else:
        if level > 1:
            for rel, file_view, label, status in report.files:
                click.echo(f"{rel} ({file_view}, {label}): {status}")
        _print_report(report)
    if not report.ok:
        # SystemExit rather than ctx.exit(): cli.main runs click with standalone_mode=False,
        # which turns ctx.exit(1) into a return value and the process would exit 0.
        sys.exit(1)


def _print_report(report: CheckReport) -> None:
    click.echo(f"Dataset {report.root} (layout: {report.layout})")
    for view, per_label in report.counts.items():
        total = sum(per_label.values())
        classes = ", ".join(f"{label} {n}" for label, n in per_label.items())
        click.echo(f"  {view}: {total} images ({classes}); imbalance {report.imbalance.get(view, 1.0):.2f}:1")
    for title, rows in (("Unreadable", report.unreadable), ("Too small", report.too_small)):
        if rows:
            click.echo(f"{title} ({len(rows)}):")
            for rel, why in rows:
                click.echo(f"  {rel}: {why}")
    if report.duplicates_within:
        click.echo(f"Identical files within a class ({len(report.duplicates_within)} groups):")
        for group in report.duplicates_within:
            click.echo("  " + ", ".join(group))
    for line in report.warnings:
        click.echo(f"Warning: {line}")
    for line in report.errors:
        click.echo(f"Error: {line}", err=True)
    click.echo("OK" if report.ok else f"{len(report.errors)} error(s)")


COMMANDS = [data]
