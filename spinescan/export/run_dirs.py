"""Which run directories ``spinescan export`` takes when it is told which: ``--run DIR``, the named
models' latest finished runs, else the benchmark's winners (``<runs>/winners.json``).

The choice with no names and no ``--run`` (newest run vs the benchmark's winner, and the weak-model
gate) is :mod:`spinescan.export.selection`, which reads winners.json paths through
:func:`winner_dir` here, the one reader of them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from spinescan.errors import SpineScanError
from spinescan.training import runs
from spinescan.training.config import DEFAULT_RUNS
from spinescan.training.runs import winners_file


def resolve_runs(
    names: Sequence[str] = (), run: str | Path | None = None, runs_dir: str | Path = DEFAULT_RUNS
) -> list[Path]:
    """The run directories to export: ``run``; else the named models' latest finished runs; else
    the benchmark's winners (``<runs>/winners.json``)."""

    runs_dir = Path(runs_dir)
    if run is not None:
        if names:
            raise SpineScanError("give either model names or --run DIR, not both")
        return [Path(run)]
    if names:
        found = []
        for name in dict.fromkeys(names):
            latest = runs.latest_run(runs_dir, name)
            if latest is None:
                raise SpineScanError(
                    f"no finished run of {name!r} in {runs_dir}; train it first (spinescan train {name})"
                )
            found.append(latest)
        return found
    winners_path = winners_file(runs_dir)
    if not winners_path.is_file():
        raise SpineScanError(
            f"no {winners_path}: run `spinescan bench` first, or name the models to export, or pass --run DIR"
        )
    try:
        winners = json.loads(winners_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SpineScanError(f"cannot read {winners_path}: {exc}") from None
    if not isinstance(winners, dict) or not winners:
        raise SpineScanError(f"{winners_path} lists no winners")
    return [winner_dir(runs_dir, model, str(path)) for model, path in sorted(winners.items())]


def winner_dir(runs_dir: Path, model: str, recorded: str) -> Path:
    """winners.json records paths as the benchmark saw them; accept them relative to the runs folder too."""
    path = Path(recorded)
    for candidate in (path, runs_dir / model / path.name):
        if candidate.is_dir():
            return candidate
    raise SpineScanError(f"winner of {model!r} ({recorded}) is not a run directory any more")
