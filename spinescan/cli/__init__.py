"""The ``spinescan`` command line: argument parsing only; the work lives in the core modules.

Each area has its own module here (``models``, ``synth``, ``data``, ``train``, ``bench``,
``export``); plugins add more through the ``register_commands`` hook. User errors
(:class:`~spinescan.errors.SpineScanError`) become one-line messages with a non-zero exit code.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

import click

from spinescan import __version__
from spinescan.errors import SpineScanError

#: Python loggers whose warnings are TensorFlow's internals, not the user's business: the
#: tf.function retracing warning ("5 out of the last 5 calls ... triggered tf.function retracing"),
#: absl's, tf2onnx's conversion chatter.
NOISY_LOGGERS = ("tensorflow", "absl", "tf2onnx")


def quiet_tensorflow(verbose: bool) -> None:
    """Keep TensorFlow's C++ log lines (absl, oneDNN, cpu_feature_guard) and its Python warnings
    (retracing) out of the command's output unless ``--verbose``. Called before any command runs,
    so before TensorFlow is imported: its C++ level is read once, at import. A level the user set
    in the environment is kept."""
    if verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="spinescan")
@click.option(
    "--verbose",
    is_flag=True,
    help="Also show TensorFlow's own log lines (absl, oneDNN) and warnings (tf.function retracing).",
)
def cli(verbose: bool) -> None:
    """Spine Scan: a plugin model zoo for spinal radiographs.

    Typical flow: synth -> train -> bench -> export -> predict (or val on your own labelled films).
    """
    quiet_tensorflow(verbose)


def _add_builtin_commands(group: click.Group) -> None:
    from spinescan.cli import (
        bench,
        data,
        export,
        models,
        predict,
        serve,
        synth,
        train,
        tune,
        val,
    )

    for module in (models, synth, data, train, tune, bench, export, predict, val, serve):
        for command in module.COMMANDS:
            group.add_command(command)


def _add_plugin_commands(group: click.Group) -> None:
    """Let plugins add commands, one plugin at a time so a broken one is isolated.

    A plugin may add commands but not replace a built-in one: that would silently change what a
    documented command does, so the built-in is restored and the plugin reported.
    """
    from spinescan.zoo.registry import get_registry

    registry = get_registry()
    builtins = dict(group.commands)
    for impl in registry.manager.hook.register_commands.get_hookimpls():
        try:
            impl.function(cli=group)
        except Exception as exc:  # isolate any plugin failure
            registry.report(impl.plugin_name, exc, "failed in register_commands")
        for name, command in builtins.items():
            if group.commands.get(name) is not command:
                group.commands[name] = command
                registry.report(impl.plugin_name, ValueError(name), "tried to replace a built-in command")


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"Warning: {message}\n"


def build_cli() -> click.Group:
    _add_builtin_commands(cli)
    _add_plugin_commands(cli)
    return cli


def __getattr__(name: str) -> click.Group:
    """``spinescan.cli.full_cli``: the group with every command added, for the generated command
    reference (mkdocs-click reads a module attribute; building it on import would load plugins)."""
    if name == "full_cli":
        return build_cli()
    raise AttributeError(name)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    warnings.formatwarning = _format_warning
    try:
        group = build_cli()
        code = group.main(args=argv, prog_name="spinescan", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)  # ctx.exit(n) returns n when click is not standalone
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SpineScanError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted. Files already saved are intact.", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()
