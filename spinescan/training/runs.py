"""Run directories: where one training run leaves everything needed to trust and reuse it.

:class:`RunDir` owns every file name of a run (``runs/<model>/<run-id>/``), each written atomically::

    config.json       the run configuration document (schema spinescan.run/1, :class:`RunConfig`)
    split.json        the train/val/test split (rel paths) the run used
    history.csv       one row per finished epoch (continues across --resume)
    metrics.json      {"finished": true, "val": {...}, "test": {...}, kept epoch, time to target, ...}
    model.keras       the kept epoch's weights (see HParams.checkpoint), loaded in Keras safe mode
    curves.png        loss and accuracy per epoch
    predictions.csv   split, file, label, p_<class>... for every validation and test image
    benchmark.json    written into a winning run by `spinescan bench`; quoted by the model card
    state.json, .backup/   resumable state while a run is unfinished (removed when done)

and the runs folder's ``winners.json`` (:func:`winners_file`). A run is *finished* once
``metrics.json`` says so; anything else is an interrupted run that ``--resume`` can continue. The
benchmark reuses finished runs through :func:`find_matching_run` rather than training twice.
Keras is never imported here (model I/O is :mod:`spinescan.training.inference`).
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from spinescan.atomic import atomic_write_json, atomic_write_text
from spinescan.errors import SpineScanError
from spinescan.training.runconfig import RunConfig, RunIdentity, parse_run_config

if TYPE_CHECKING:
    from spinescan.data.splits import Split
    from spinescan.zoo.spec import ModelSpec

WINNERS = "winners.json"  # in the runs folder: {model: run_dir}, written by bench, read by export
PARTS = ("val", "test")
HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")


def winners_file(runs_dir: str | Path) -> Path:
    return Path(runs_dir) / WINNERS


@dataclass(frozen=True)
class RunDir:
    """One run directory and the names of its files; reading and writing go through here."""

    path: Path

    CONFIG: ClassVar[str] = "config.json"
    SPLIT: ClassVar[str] = "split.json"
    HISTORY: ClassVar[str] = "history.csv"
    METRICS: ClassVar[str] = "metrics.json"
    MODEL: ClassVar[str] = "model.keras"
    CURVES: ClassVar[str] = "curves.png"
    PREDICTIONS: ClassVar[str] = "predictions.csv"
    BENCHMARK: ClassVar[str] = "benchmark.json"
    STATE: ClassVar[str] = "state.json"
    BACKUP: ClassVar[str] = ".backup"
    TENSORBOARD: ClassVar[str] = "tensorboard"
    #: What every finished run holds.
    FILES: ClassVar[tuple[str, ...]] = (CONFIG, SPLIT, HISTORY, METRICS, MODEL, CURVES, PREDICTIONS)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def of(cls, runs_dir: str | Path, model: str, run_id: str) -> RunDir:
        return cls(Path(runs_dir) / model / run_id)

    @property
    def run_id(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def model_file(self) -> Path:
        return self.path / self.MODEL

    @property
    def backup_dir(self) -> Path:
        return self.path / self.BACKUP

    def exists(self) -> bool:
        return (self.path / self.CONFIG).is_file()

    # -- JSON documents ------------------------------------------------------------------------
    def read_json(self, name: str) -> dict[str, Any] | None:
        return _read_json(self.path / name)

    def write_json(self, name: str, obj: Any) -> Path:
        return atomic_write_json(self.path / name, obj)

    def read_config(self) -> RunConfig:
        doc = self.read_json(self.CONFIG)
        if doc is None:
            raise SpineScanError(f"{self.path} is not a run directory (no {self.CONFIG})")
        return parse_run_config(doc, where=str(self.path / self.CONFIG))

    def write_config(self, config: RunConfig) -> Path:
        return self.write_json(self.CONFIG, config.to_dict())

    def read_metrics(self) -> dict[str, Any] | None:
        return self.read_json(self.METRICS)

    def is_finished(self) -> bool:
        try:
            metrics = self.read_metrics()
        except SpineScanError:
            return False
        return bool(metrics and metrics.get("finished"))

    def read_split(self) -> Split | None:
        from spinescan.data.splits import Split

        path = self.path / self.SPLIT
        return Split.load(path) if path.is_file() else None

    # -- history ---------------------------------------------------------------------------------
    def read_history(self) -> list[dict[str, float]]:
        path = self.path / self.HISTORY
        if not path.is_file():
            return []
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        out = []
        for row in rows:
            parsed = {k: float(v) for k, v in row.items() if v not in ("", None)}
            parsed["epoch"] = int(parsed["epoch"])
            out.append(parsed)
        return out

    def write_history(self, rows: Sequence[dict[str, float]]) -> Path:
        buf = io.StringIO()
        extra = sorted({k for r in rows for k in r} - set(HISTORY_FIELDS))
        writer = csv.DictWriter(buf, fieldnames=[*HISTORY_FIELDS, *extra], lineterminator="\n", restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        return atomic_write_text(self.path / self.HISTORY, buf.getvalue())

    # -- predictions -----------------------------------------------------------------------------
    def write_predictions(
        self, classes: Sequence[str], parts: dict[str, tuple[Sequence[str], Sequence[str], np.ndarray]]
    ) -> Path:
        """``predictions.csv``: split, file (rel), label, then ``p_<class>`` per class."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["split", "file", "label", *(f"p_{c}" for c in classes)])
        for part, (files, labels, probs) in parts.items():
            for file, label, row in zip(files, labels, probs, strict=True):
                writer.writerow([part, file, label, *(f"{float(p):.6g}" for p in row)])
        return atomic_write_text(self.path / self.PREDICTIONS, buf.getvalue())

    def read_predictions(self) -> dict[str, tuple[list[str], list[str], np.ndarray]]:
        """``{split: (files, labels, probs N x K)}`` from the run's ``predictions.csv``."""
        path = self.path / self.PREDICTIONS
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                rows = list(csv.reader(fh))
        except OSError as exc:
            raise SpineScanError(f"cannot read {path}: {exc}") from None
        if not rows:
            raise SpineScanError(f"{path} is empty")
        header, body = rows[0], rows[1:]
        n_classes = len(header) - 3
        out: dict[str, tuple[list[str], list[str], list[list[float]]]] = {}
        for row in body:
            files, labels, probs = out.setdefault(row[0], ([], [], []))
            files.append(row[1])
            labels.append(row[2])
            probs.append([float(v) for v in row[3:]])
        return {
            part: (files, labels, np.asarray(probs, dtype=np.float32).reshape(-1, n_classes))
            for part, (files, labels, probs) in out.items()
        }


@dataclass(frozen=True)
class Run:
    """A run directory, read back. ``metrics`` is None while the run is unfinished."""

    dir: Path
    config: RunConfig
    metrics: dict[str, Any] | None
    split: Split | None
    spec: ModelSpec

    @property
    def finished(self) -> bool:
        return bool(self.metrics and self.metrics.get("finished"))

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes

    @property
    def rundir(self) -> RunDir:
        return RunDir(self.dir)


def kept_epoch(metrics: dict[str, Any]) -> int | None:
    """The epoch whose weights the run kept (``best_epoch`` in runs written before the typed config)."""
    value = metrics.get("kept_epoch", metrics.get("best_epoch"))
    return None if value is None else int(value)


# -- identity -------------------------------------------------------------------------------------


def new_run_id(runs_dir: Path, model: str, seed: int, prefix: str = "") -> str:
    """A sortable, readable id: ``20250101-120000-s0`` (suffixed if that second is taken)."""
    base = prefix + time.strftime("%Y%m%d-%H%M%S") + f"-s{seed}"
    run_id, n = base, 1
    while (Path(runs_dir) / model / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


# -- reading --------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise SpineScanError(f"cannot read {path}: {exc}") from None


def is_finished(run_dir: str | Path) -> bool:
    return RunDir(Path(run_dir)).is_finished()


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory (finished or not)."""
    rd = RunDir(Path(run_dir))
    config = rd.read_config()
    return Run(rd.path, config, rd.read_metrics(), rd.read_split(), config.model_spec())


def list_runs(runs_dir: str | Path, model: str | None = None, finished: bool | None = True) -> list[Path]:
    """Run directories, oldest first (by when the run started). ``finished=None`` lists all."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    model_dirs = [root / model] if model else sorted(p for p in root.iterdir() if p.is_dir())
    found = []
    for model_dir in model_dirs:
        if not model_dir.is_dir():
            continue
        for run_dir in sorted(model_dir.iterdir()):
            rd = RunDir(run_dir)
            if not rd.exists():
                continue
            if finished is None or rd.is_finished() == finished:
                found.append(run_dir)
    # config.json is written once, when a run starts (resuming does not rewrite it).
    return sorted(found, key=lambda p: ((p / RunDir.CONFIG).stat().st_mtime, p.name, p.parent.name))


def latest_run(runs_dir: str | Path, model: str) -> Path | None:
    """The most recent finished run of ``model``."""
    runs = list_runs(runs_dir, model, finished=True)
    return runs[-1] if runs else None


def latest_unfinished_run(runs_dir: str | Path, model: str) -> Path | None:
    runs = list_runs(runs_dir, model, finished=False)
    return runs[-1] if runs else None


def find_matching_run(runs_dir: str | Path, model: str, wanted: RunIdentity) -> Path | None:
    """A finished run of ``model`` whose :class:`RunIdentity` equals ``wanted`` (the newest wins).

    Equal means: the same model, seed, weights, starting point, spec (input size, preprocessing),
    the hyper-parameters declared ``match=True`` (:func:`spinescan.zoo.hparams.matching_fields`),
    dataset fingerprint and split. ``wanted`` comes from :func:`spinescan.training.prepare.identity_for`.
    """
    for run_dir in reversed(list_runs(runs_dir, model, finished=True)):
        try:
            stored = RunDir(run_dir).read_config()
        except SpineScanError:
            continue
        if stored.identity() == wanted:
            return run_dir
    return None


def read_winners(runs_dir: str | Path) -> dict[str, str]:
    """``{model: run_dir}`` from ``winners.json``; {} when absent or unreadable."""
    path = winners_file(runs_dir)
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return {k: v for k, v in loaded.items() if isinstance(v, str)} if isinstance(loaded, dict) else {}


def write_winners(runs_dir: str | Path, winners: dict[str, str]) -> Path:
    """Merge ``{model: run_dir}`` into ``winners.json`` (other models keep theirs)."""
    current = read_winners(runs_dir)
    current.update(winners)
    return atomic_write_json(winners_file(runs_dir), dict(sorted(current.items())))
