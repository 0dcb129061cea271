"""Options shared by several commands, declared once so their names, types and help agree.

The hyper-parameter options are not written here at all: :func:`hparam_options` derives one
option per :class:`spinescan.zoo.hparams.HParams` field from the field's own metadata, and
:func:`settings_options` one per :class:`spinescan.training.settings.RunSettings` field (input
size, resize, seed, weights, strategy, pretraining) for train, bench and tune alike, less the
settings :data:`SETTINGS_LEFT_OUT` names for a command.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import Field
from pathlib import Path
from typing import Any, TypeVar

import click

from spinescan.training.config import DEFAULT_RUNS
from spinescan.training.settings import RunSettings, parse_image_size, settings_fields
from spinescan.zoo.hparams import hparam_fields

F = TypeVar("F", bound=Callable[..., Any])


def runs_option(help_text: str) -> Callable[[F], F]:
    """``--runs DIR`` (parameter ``runs_dir``): the folder of run directories and winners.json."""
    return click.option(
        "--runs",
        "runs_dir",
        type=click.Path(path_type=Path),
        default=DEFAULT_RUNS,
        show_default=True,
        help=help_text,
    )


class ImageSize(click.ParamType):
    """``PX`` (a square input) or ``HEIGHTxWIDTH`` (``512x192``: a tall landmark input)."""

    name = "PX|HxW"
    minimum = int(next(f for f in settings_fields() if f.name == "image_size").metadata["minimum"])

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (int, tuple)):
            return value
        try:
            size = parse_image_size(value)
        except ValueError:
            self.fail(f"{value!r} is not PX or HEIGHTxWIDTH (e.g. 224 or 512x192)", param, ctx)
        if min(size if isinstance(size, tuple) else (size,)) < self.minimum:
            self.fail(f"{value!r}: every side must be at least {self.minimum} pixels", param, ctx)
        return size


def _param_type(f: Field) -> Any:
    meta, kind = f.metadata, type(f.default)
    if meta["choices"]:
        return click.Choice(meta["choices"])
    low, high = meta["minimum"], meta["maximum"]
    if kind is int:
        return click.IntRange(min=None if low is None else int(low), max=None if high is None else int(high))
    return click.FloatRange(min=low, max=high, min_open=meta["open_minimum"])


def _hparam_option(f: Field) -> Callable[[F], F]:
    meta = f.metadata
    help_text = f"{meta['help']} [plugin default]"
    flag = meta["option"] or "--" + f.name.replace("_", "-")
    if type(f.default) is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", f.name, default=None, help=help_text)
    return click.option(flag, f.name, type=_param_type(f), default=None, help=help_text)


def hparam_options(exclude: Sequence[str] = ()) -> Callable[[F], F]:
    """One option per hyper-parameter (``HParams`` field metadata) plus ``--hparams FILE``.

    The command receives them as ``hparams: dict`` (field -> value, None when not given) and
    ``hparams_file``. Precedence: plugin default < ``--hparams FILE`` < explicit option.
    """
    chosen = [f for f in hparam_fields() if f.metadata["cli"] and f.name not in exclude]

    def decorate(func: F) -> F:
        names = [f.name for f in chosen]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            overrides = {n: kwargs.pop(n) for n in names}
            return func(*args, hparams=overrides, **kwargs)

        out: Any = wrapper
        for f in reversed(chosen):
            out = _hparam_option(f)(out)
        out = click.option(
            "--hparams",
            "hparams_file",
            type=click.Path(path_type=Path, dir_okay=False),
            help='JSON {"schema": "spinescan.hparams/1", "model": NAME, "hparams": {...}}; '
            "its fields override the plugin's defaults, explicit options override it.",
        )(out)
        return out

    return decorate


#: The run settings a command does not offer; every other RunSettings field is an option of all
#: three. The one list of differences between train, bench and tune (issue 23 #3).
SETTINGS_LEFT_OUT: dict[str, tuple[str, ...]] = {
    "train": (),
    # --seeds K runs seeds 0..K-1; every run is single-process and from the backbone's own init.
    "bench": ("seed", "weights", "strategy"),
    # Trials are scored in this process, from scratch, on the search's own data.
    "tune": (
        "weights",
        "strategy",
        "pretrain",
        "pretrain_per_class",
        "pretrain_epochs",
        "pretrain_borderline",
    ),
}


def _setting_option(f: Field, command: str) -> Callable[[F], F]:
    meta, kind = f.metadata, type(f.default) if f.default is not None else None
    flag = meta["option"] or "--" + f.name.replace("_", "-")
    help_text = meta["helps"].get(command, meta["help"])
    default = meta["cli_default"] if meta["cli_default"] is not None else f.default
    low, high = meta["minimum"], meta["maximum"]
    kw: dict[str, Any] = {"help": help_text, "default": default}
    if meta["show_default"]:
        kw["show_default"] = True
    if meta["metavar"]:
        kw["metavar"] = meta["metavar"]
    if f.name == "image_size":
        kw = {"type": ImageSize(), "help": help_text}  # its metavar is the type's name
    elif meta["choices"]:
        kw["type"] = click.Choice(meta["choices"])
    elif low is None and high is None:
        kw["type"] = kind or str
    elif "float" in str(f.type):
        kw["type"] = click.FloatRange(low, high)
    else:
        kw["type"] = click.IntRange(None if low is None else int(low), None if high is None else int(high))
    return click.option(flag, f.name, **kw)


def settings_options(command: str) -> Callable[[F], F]:
    """One option per :class:`~spinescan.training.settings.RunSettings` field (from its metadata),
    less ``SETTINGS_LEFT_OUT[command]``. The command receives them as one ``settings: RunSettings``
    (a setting it leaves out keeps the field's default)."""
    left_out = SETTINGS_LEFT_OUT[command]
    chosen = [f for f in settings_fields() if f.name not in left_out]

    def decorate(func: F) -> F:
        names = [f.name for f in chosen]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {n: kwargs.pop(n) for n in names}
            return func(*args, settings=RunSettings(**values), **kwargs)

        out: Any = wrapper
        for f in reversed(chosen):
            out = _setting_option(f, command)(out)
        return out

    return decorate


def _apply_device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from spinescan.training.device import select_tf_device

    if not ctx.resilient_parsing:  # not while completing or printing --help
        select_tf_device(value)
    return value


def device_option(f: F) -> F:
    """``--device cpu|gpu|auto`` for the commands that run TensorFlow, applied while the command
    line is parsed: before TensorFlow starts (:mod:`spinescan.training.device`). The command does
    not receive it."""
    return click.option(
        "--device",
        type=click.Choice(["cpu", "gpu", "auto"]),
        default=lambda: os.environ.get("SPINESCAN_DEVICE") or "auto",
        show_default="$SPINESCAN_DEVICE or auto",
        expose_value=False,
        callback=_apply_device,
        help="Where TensorFlow runs: cpu, gpu (an error when TensorFlow sees none) or auto (the GPU "
        "when there is one).",
    )(f)


# --- the output vocabulary: -q/--quiet, -v/--verbose, --json (issue 25 #5) -----------------------

#: What ``--json`` means on every command that has it.
JSON_HELP = "Print the result as one JSON document on stdout; progress and messages go to stderr."


def json_option(help_text: str = JSON_HELP) -> Callable[[F], F]:
    """``--json`` (parameter ``as_json``): the command's result as one JSON document on stdout."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def verbosity_options(
    quiet_help: str = "No progress lines: only the result and errors.",
    verbose_help: str = "More detail.",
) -> Callable[[F], F]:
    """``-q/--quiet`` and ``-v/--verbose`` (parameters ``quiet``, ``verbose``), declared once so every
    command spells them alike; each command says in ``verbose_help`` what ``-v`` adds. Both at once
    is a usage error (see :func:`verbosity`). TensorFlow's own log lines are the group's
    ``spinescan --verbose CMD``, not these."""

    def decorate(f: F) -> F:
        f = click.option("-v", "--verbose", is_flag=True, help=verbose_help)(f)
        return click.option("-q", "--quiet", is_flag=True, help=quiet_help)(f)

    return decorate


def verbosity(quiet: bool, verbose: bool) -> int:
    """0 (``-q``), 1 (the default) or 2 (``-v``); both flags together is a usage error."""
    if quiet and verbose:
        raise click.UsageError("-q/--quiet and -v/--verbose contradict each other; pass one")
    return 0 if quiet else 2 if verbose else 1
