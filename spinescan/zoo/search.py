"""A plugin's hyper-parameter search space (``ModelSpec.search``), declared without keras-tuner.

``spinescan tune NAME`` searches the space the model's spec declares. Each dimension names an
:class:`~spinescan.zoo.hparams.HParams` field, so a tuned value is an ordinary hyper-parameter and
the best ones are written as a ``spinescan.hparams/1`` file that ``train --hparams`` applies. The
space is plain data (no keras-tuner import) so that listing models stays fast and a plugin can
declare it next to its defaults; :mod:`spinescan.training.tune` turns it into keras-tuner
hyper-parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from spinescan.errors import SpecError
from spinescan.zoo.hparams import HParams

__all__ = ["Choice", "Dimension", "Range", "SearchSpace", "compact_search"]


@dataclass(frozen=True)
class Choice:
    """One of ``values`` (categorical; ints, floats or strings)."""

    name: str
    values: tuple[Any, ...]

    def check(self) -> str | None:
        if not self.values:
            return f"{self.name}: no values"
        for value in self.values:
            try:
                HParams().override({self.name: value}, "search space")
            except Exception as exc:  # reported as a spec problem
                return str(exc)
        return None


@dataclass(frozen=True)
class Range:
    """A number in ``[low, high]``: ints when both bounds are ints, ``log`` for rates."""

    name: str
    low: float
    high: float
    step: float | None = None
    log: bool = False

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)

    def check(self) -> str | None:
        if not self.low < self.high:
            return f"{self.name}: low {self.low} must be below high {self.high}"
        if self.log and self.low <= 0:
            return f"{self.name}: a log range needs low > 0"
        for value in (self.low, self.high):
            try:
                HParams().override({self.name: value}, "search space")
            except Exception as exc:  # reported as a spec problem
                return str(exc)
        return None


Dimension = Choice | Range


@dataclass(frozen=True)
class SearchSpace:
    """The dimensions ``spinescan tune`` searches; every other field keeps the plugin default."""

    dimensions: tuple[Dimension, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "dimensions", tuple(self.dimensions))
        known = {f.name for f in fields(HParams)}
        names = [d.name for d in self.dimensions]
        problems = [f"unknown hyper-parameter {n!r}" for n in names if n not in known]
        problems += [f"{n!r} listed twice" for n in sorted({n for n in names if names.count(n) > 1})]
        if not self.dimensions:
            problems.append("no dimensions")
        if "epochs" in names:
            problems.append("epochs is set by Hyperband (--max-epochs), not searched")
        problems += [p for d in self.dimensions if d.name in known and (p := d.check())]
        if problems:
            raise SpecError("invalid search space: " + "; ".join(problems))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    def describe(self) -> list[str]:
        """One line per dimension (``spinescan tune`` prints it before searching)."""
        out = []
        for d in self.dimensions:
            if isinstance(d, Choice):
                out.append(f"{d.name}: one of {', '.join(str(v) for v in d.values)}")
            else:
                scale = ", log scale" if d.log else (f", step {d.step:g}" if d.step else "")
                out.append(f"{d.name}: {d.low:g} to {d.high:g}{scale}")
        return out


def compact_search() -> SearchSpace:
    """The space of the built-in models on the compact backbone: the original notebook's
    convolution widths, depth, dropout, learning rate and optimizer. ``backbone`` is not searched:
    the keras.applications backbones from scratch cost many times the compact one per epoch on a
    CPU, which a Hyperband budget would spend on them; a plugin may add ``Choice("backbone", ...)``."""
    return SearchSpace(
        (
            Choice("width", (16, 24, 32, 48)),
            Range("depth", 2, 5),
            Range("dropout", 0.0, 0.5, step=0.1),
            Range("learning_rate", 3e-4, 1e-2, log=True),
            Choice("optimizer", ("adam", "adamw", "sgd")),
        )
    )
