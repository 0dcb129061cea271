"""Options shared by several commands, declared once so their names, types and help agree."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from spinescan.edge.preprocess import RESIZE_MODES
from spinescan.zoo.spec import CHECKPOINTS

F = TypeVar("F", bound=Callable[..., Any])


def runs_option(help_text: str) -> Callable[[F], F]:
    """``--runs DIR`` (parameter ``runs_dir``): the folder of run directories and winners.json."""
    return click.option(
        "--runs",
        "runs_dir",
        type=click.Path(path_type=Path),
        default=Path("runs"),
        show_default=True,
        help=help_text,
    )


def resize_option(f: F) -> F:
    return click.option(
        "--resize",
        type=click.Choice(RESIZE_MODES),
        help="Resize mode, recorded in the run and the ONNX metadata [plugin default].",
    )(f)


def checkpoint_option(f: F) -> F:
    return click.option(
        "--checkpoint",
        type=click.Choice(CHECKPOINTS),
        help="Keep the best epoch by validation accuracy, or the last one (no early stopping) "
        "[plugin default].",
    )(f)


def pretrain_options(f: F) -> F:
    """``--pretrain phantoms|RUN_DIR`` and the settings of its phantom stage (spinescan.training.pretrain)."""
    options = [
        click.option(
            "--pretrain",
            metavar="phantoms|RUN_DIR",
            help="Pretrain on rendered phantoms of the model's view (rendered and trained once, then "
            "reused), or start from RUN_DIR; then fine-tune on --data.",
        ),
        click.option(
            "--pretrain-per-class",
            type=click.IntRange(min=10),
            help="Phantoms per class for --pretrain phantoms [1000].",
        ),
        click.option(
            "--pretrain-epochs", type=click.IntRange(min=1), help="Epochs of the pretraining stage [10]."
        ),
        click.option(
            "--pretrain-borderline",
            type=click.FloatRange(0.0, 1.0),
            help="Fraction of pretraining phantoms drawn near the class threshold [0].",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f
