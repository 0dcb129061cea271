"""``spinescan synth``: write a phantom dataset (and optionally a contact sheet of it)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from spinescan.cli.options import verbosity, verbosity_options
from spinescan.cli.progress import ClickProgress

DEFAULT_OUT = Path("dataset") / "phantoms"


@click.command("synth")
@click.argument("out", required=False, default=str(DEFAULT_OUT), type=click.Path(path_type=Path))
@click.option("--per-class", default=100, show_default=True, type=int, help="Images per class and view.")
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same bytes.")
@click.option("--size", default=256, show_default=True, type=int, help="Image height in pixels.")
@click.option("--views", default="lateral,ap", show_default=True, help="Comma-separated: lateral, ap.")
@click.option(
    "--workers", default=None, type=int, help="Processes (default: all cores); output is identical."
)
@click.option(
    "--borderline",
    default=0.0,
    show_default=True,
    type=float,
    help="Fraction of images drawn near the class thresholds.",
)
@click.option(
    "--preview", type=click.Path(dir_okay=False, path_type=Path), help="Also write a contact sheet PNG."
)
@verbosity_options(
    quiet_help="No progress bar: only the files written and errors.",
    verbose_help="Also the number of images written per view and class.",
)
def synth_command(
    out: Path,
    per_class: int,
    seed: int,
    size: int,
    views: str,
    workers: int | None,
    borderline: float,
    preview: Path | None,
    quiet: bool,
    verbose: bool,
) -> None:
    """Draw synthetic spine radiographs with exact angles and landmarks into OUT (default dataset/phantoms).

    Writes OUT/lateral/{healthy,kyphosis,lordosis}/*.png, OUT/ap/{healthy,scoliosis}/*.png and
    OUT/manifest.csv (angles, 68 vertebral corner landmarks, framing, seed).
    """
    from spinescan.synth import generate
    from spinescan.synth.preview import contact_sheet

    level = verbosity(quiet, verbose)
    manifest = generate(
        out,
        per_class=per_class,
        seed=seed,
        size=size,
        views=views,
        workers=workers if workers is not None else max(1, os.cpu_count() or 1),
        borderline=borderline,
        progress=ClickProgress(quiet=quiet),
    )
    click.echo(f"Wrote {manifest}")
    if level > 1:
        from spinescan.data.datasets import load_dataset

        for view, per_label in load_dataset(out).counts().items():
            click.echo(f"  {view}: " + ", ".join(f"{label} {n}" for label, n in per_label.items()))
    if preview is not None:
        click.echo(f"Wrote {contact_sheet(out, preview)}")


COMMANDS = [synth_command]
