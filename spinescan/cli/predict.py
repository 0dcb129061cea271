"""``spinescan predict``: the edge predictor (``spinescan-predict``) reached from the main command.

``spinescan-predict`` stays the light, TensorFlow-free program (argparse, so that the standalone
``predict.py`` written by the export needs no click). This command is the same program: its click
options are derived from the predictor's own argparse parser, so the two cannot drift apart (same
option names, choices, defaults and help), and its work is ``predictor.main`` itself, so the output
and the exit status are the same too.
"""

from __future__ import annotations

import argparse
from typing import Any

import click

from spinescan.edge import predict_args, predictor


def _click_params(parser: argparse.ArgumentParser) -> list[click.Parameter]:
    """One click parameter per argparse action (help excluded), in the parser's order."""
    params: list[click.Parameter] = []
    for action in parser._actions:  # argparse has no public accessor for its actions
        if isinstance(action, argparse._HelpAction):
            continue
        if not action.option_strings:  # the positional IMAGE_OR_DIR...
            params.append(
                click.Argument(
                    [action.dest], nargs=-1, required=action.nargs == "+", metavar=f"{action.metavar}..."
                )
            )
            continue
        if isinstance(action, argparse._StoreTrueAction):
            params.append(click.Option([*action.option_strings, action.dest], is_flag=True, help=action.help))
            continue
        kind: Any = click.Choice(list(action.choices)) if action.choices else (action.type or str)
        params.append(
            click.Option(
                [*action.option_strings, action.dest],
                type=kind,
                default=action.default,
                metavar=action.metavar,
                help=action.help,
                show_default=action.default is not None,
            )
        )
    return params


def _argv(parser: argparse.ArgumentParser, values: dict[str, Any]) -> list[str]:
    """The command line ``predictor.main`` would have been given for these click values."""
    argv: list[str] = []
    positional: list[str] = []
    for action in parser._actions:
        value = values.get(action.dest)
        if isinstance(action, argparse._HelpAction) or value in (None, False):
            continue
        if not action.option_strings:
            positional.extend(str(v) for v in value)
        elif isinstance(action, argparse._StoreTrueAction):
            argv.append(action.option_strings[-1])
        else:
            argv.extend([action.option_strings[-1], str(value)])
    return [*argv, "--", *positional]


def _make_command() -> click.Command:
    parser = predict_args.build_parser()

    @click.pass_context
    def callback(ctx: click.Context, **values: Any) -> None:
        ctx.exit(predictor.main(_argv(parser, values)))

    return click.Command(
        "predict",
        callback=callback,
        params=_click_params(parser),
        help=f"{parser.description}\n\nThe same program as `spinescan-predict` (same options, same output). "
        f"{parser.epilog}",
        short_help="Classify and measure films with exported ONNX models (no TensorFlow).",
    )


predict = _make_command()

COMMANDS = [predict]
