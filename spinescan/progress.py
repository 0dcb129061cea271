"""How the core reports progress: a small interface with a quiet default.

Core modules (data, synth, training, evaluation, export) never print and never import click: they
take a :class:`Progress` and call :meth:`Progress.info` for a line and :meth:`Progress.bar` around a
loop. The default, :data:`QUIET`, says nothing, so library callers and tests get silence unless
they ask. The command line passes its own implementation (``spinescan.cli.progress``), which is the
one place that decides how messages look on a terminal.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable


@runtime_checkable
class Progress(Protocol):
    """Where the core sends what it is doing."""

    def info(self, message: str) -> None:
        """One line of progress or a notice (a warning starts with ``Warning:``)."""

    def bar(self, total: int, label: str) -> contextlib.AbstractContextManager[Callable[[int], None]]:
        """A progress bar over ``total`` steps; the context yields ``advance(n)``."""


class Quiet:
    """Says nothing: the default everywhere in the core."""

    def info(self, message: str) -> None:
        pass

    @contextlib.contextmanager
    def bar(self, total: int, label: str) -> Iterator[Callable[[int], None]]:
        yield lambda _n=1: None


class Plain:
    """Lines on stderr, no bars: for scripts that want to see progress without the CLI."""

    def info(self, message: str) -> None:
        print(message, file=sys.stderr)

    @contextlib.contextmanager
    def bar(self, total: int, label: str) -> Iterator[Callable[[int], None]]:
        print(f"{label} ({total})", file=sys.stderr)
        yield lambda _n=1: None


QUIET: Progress = Quiet()


@contextlib.contextmanager
def stdout_to_stderr(enabled: bool = True) -> Iterator[None]:
    """Keep stdout for one JSON document (``--json``): Keras' progress bars and per-epoch lines,
    and keras-tuner's, are printed to stdout, so while ``enabled`` they go to stderr instead."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def as_progress(progress: Progress | bool | None) -> Progress:
    """Accept the old ``progress=True/False`` flags: True is :class:`Plain`, False/None quiet."""
    if progress is True:
        return Plain()
    if progress is False or progress is None:
        return QUIET
    return progress
