"""The command line's :class:`spinescan.progress.Progress`: every core message reaches the terminal here."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import click


class ClickProgress:
    """Lines and bars on stderr (stdout stays for results, e.g. ``--json``)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def info(self, message: str) -> None:
        """A line on stderr; ``--quiet`` drops progress lines but never a warning."""
        if not self.quiet or message.startswith("Warning:"):
            click.echo(message, err=True)

    @contextlib.contextmanager
    def bar(self, total: int, label: str) -> Iterator[Callable[[int], None]]:
        if self.quiet:
            yield lambda _n=1: None
            return
        with click.progressbar(length=total, label=label, file=click.get_text_stream("stderr")) as bar:
            yield bar.update
