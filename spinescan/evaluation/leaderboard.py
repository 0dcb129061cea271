"""The leaderboard: typed entries, one versioned document (``leaderboard.json``), written once.

:class:`ModelEntry` (one model x backbone over its seeds/folds), :class:`ProbeEntry` (a shortcut
probe on the same test images) and :class:`Leaderboard` are what the benchmark produces;
``to_dict`` gives the JSON form (schema ``spinescan.leaderboard/2``) that the report renders and
:func:`load_leaderboard` reads back. The per-model scores (``evaluate_parts``: accuracy with SD,
worst and CI, AUC, ECE, confusion, ROC, reliability ...) travel as one ``scores`` mapping and are
flattened into the entry in JSON, as the first version wrote them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from spinescan.atomic import atomic_write_json
from spinescan.errors import SpineScanError
from spinescan.training.runs import RunDir

LEADERBOARD_SCHEMA = "spinescan.leaderboard/2"

FIGURE_KEYS = ("n_runs", "n_test_total", "accuracy", "accuracy_sd", "accuracy_worst", "accuracy_ci", "auc",
               "auc_sd", "auc_worst", "auc_ci", "balanced_accuracy", "balanced_accuracy_ci")  # fmt: skip


def jsonable(obj: Any) -> Any:
    """numpy scalars/arrays to Python, NaN/inf to None: leaderboard.json must be strict JSON."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return None if math.isnan(value) or math.isinf(value) else round(value, 6)
    if isinstance(obj, Path):
        return obj.as_posix()
    return obj


class _Scored:
    """What a model entry and a probe entry both answer from their ``scores``."""

    scores: dict[str, Any]

    @property
    def accuracy(self) -> float | None:
        return self.scores.get("accuracy")

    def figures(self) -> dict[str, Any]:
        """The cross-run figures a model card quotes (:data:`FIGURE_KEYS`)."""
        return {k: self.scores.get(k) for k in FIGURE_KEYS}


@dataclass(frozen=True)
class RunEntry:
    """One run (seed, fold) of a model entry: its own test figures and training facts."""

    run_dir: str
    seed: int
    fold: int | None
    reused: bool
    n_test: int
    accuracy: float | None
    balanced_accuracy: float | None
    macro_f1: float | None
    auc: float | None
    ece: float | None
    sensitivity: dict[str, float | None]
    specificity: dict[str, float | None]
    confusion_matrix: list[list[int]]
    val_accuracy: float | None
    train_seconds: float | None = None
    seconds_to_target: float | None = None
    epochs_to_target: int | None = None
    kept_epoch: int | None = None
    epochs_run: int | None = None
    params: int | None = None


def _split(cls: type, d: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}, {k: v for k, v in d.items() if k not in names}


@dataclass(frozen=True)
class ModelEntry(_Scored):
    """One model (and backbone) over all its runs."""

    key: str
    name: str
    backbone: str = ""
    view: str = ""
    classes: tuple[str, ...] = ()
    scores: dict[str, Any] = field(default_factory=dict)  # evaluate_parts() over every run's test set
    val_accuracy: float | None = None
    train_seconds: float | None = None
    seconds_to_target: float | None = None
    epochs_to_target: float | None = None
    target_accuracy: float | None = None
    reached_target: str = ""
    params: int | None = None
    inference_ms: float | None = None
    preprocess_ms: float | None = None
    winner: bool = False
    winner_run: str | None = None
    runs: tuple[RunEntry, ...] = ()
    subgroups: dict[str, dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("scores", "runs")}
        out = {**out, **self.scores, "runs": [asdict(r) for r in self.runs]}
        if self.subgroups is None:
            out.pop("subgroups")
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelEntry:
        named, scores = _split(cls, d)
        runs = []
        for r in d.get("runs", []):
            known, _ = _split(RunEntry, {"kept_epoch": r.get("best_epoch"), **r})
            runs.append(RunEntry(**known))
        named.update(classes=tuple(named.get("classes", ())), runs=tuple(runs))
        return cls(scores=scores, **named)


@dataclass(frozen=True)
class ProbeEntry(_Scored):
    """A shortcut probe scored on the same test images as the CNN of its task."""

    probe: str
    task: str
    key: str = ""
    name: str = ""
    features: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    cv_folds: int = 0
    scores: dict[str, Any] = field(default_factory=dict)
    subgroups: dict[str, dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "scores"}
        out = {**out, **self.scores}
        if self.subgroups is None:
            out.pop("subgroups")
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProbeEntry:
        named, scores = _split(cls, d)
        named.update(features=tuple(named.get("features", ())), classes=tuple(named.get("classes", ())))
        return cls(scores=scores, **named)


@dataclass(frozen=True)
class Leaderboard:
    """``leaderboard.json``."""

    created: str = ""
    spinescan_version: str = ""
    dataset: dict[str, Any] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)
    models: tuple[ModelEntry, ...] = ()
    probes: tuple[ProbeEntry, ...] = ()
    study: dict[str, Any] | None = None
    winners: dict[str, str] = field(default_factory=dict)
    winners_file: str = ""
    elapsed_seconds: float = 0.0
    notes: tuple[str, ...] = ()
    report: str | None = None
    schema: str = LEADERBOARD_SCHEMA

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Leaderboard:
        named, _ = _split(cls, doc)
        named.update(
            models=tuple(ModelEntry.from_dict(m) for m in doc.get("models", [])),
            probes=tuple(ProbeEntry.from_dict(p) for p in doc.get("probes", [])),
            notes=tuple(doc.get("notes", [])),
            schema=LEADERBOARD_SCHEMA,
        )
        return cls(**named)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["models"] = [m.to_dict() for m in self.models]
        out["probes"] = [p.to_dict() for p in self.probes]
        out["notes"] = list(self.notes)
        return jsonable(out)

    def write(self, path: Path) -> Path:
        return atomic_write_json(path, self.to_dict())


def load_leaderboard(path: str | Path) -> Leaderboard:
    """Read ``leaderboard.json`` (this schema, or the first version's ``"schema": 1``)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SpineScanError(f"cannot read {path}: {exc}") from None
    if doc.get("schema") not in (1, LEADERBOARD_SCHEMA):
        raise SpineScanError(f"{path}: unsupported leaderboard schema {doc.get('schema')!r}")
    return Leaderboard.from_dict(doc)


def evidence_for(leaderboard: Leaderboard, entry: ModelEntry, leaderboard_path: Path) -> dict[str, Any]:
    """What a winning run carries about the benchmark that chose it (its model card quotes it).

    The winner's own test split is one fold of one seed; the honest figures are the benchmark's
    across every fold and seed, per subgroup, beside the shortcut probes of the same task.
    """
    probes = [p for p in leaderboard.probes if p.task in (entry.key, entry.name)]
    protocol = leaderboard.protocol
    return jsonable({
        "leaderboard": Path(leaderboard_path).as_posix(),
        "report": leaderboard.report,
        "created": leaderboard.created,
        "dataset": leaderboard.dataset.get("root"),
        "synthetic": leaderboard.dataset.get("synthetic"),
        "protocol": {k: protocol.get(k) for k in ("seeds", "folds", "resize", "pretrain", "by")},
        "figures": entry.figures(),
        "subgroups": {name: _figures(g) for name, g in (entry.subgroups or {}).items()},
        "probes": [
            {
                "probe": p.probe,
                "features": list(p.features),
                "figures": p.figures(),
                "subgroups": {name: _figures(g) for name, g in (p.subgroups or {}).items()},
            }
            for p in probes
        ],
    })  # fmt: skip


def _figures(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: scores.get(k) for k in FIGURE_KEYS}


def record_evidence(leaderboard: Leaderboard, leaderboard_path: Path) -> None:
    """Write ``benchmark.json`` into each winning run (atomically; a later benchmark replaces it)."""
    for entry in leaderboard.models:
        if entry.winner and entry.winner_run:
            rundir = RunDir(Path(entry.winner_run))
            if rundir.path.is_dir():
                rundir.write_json(RunDir.BENCHMARK, evidence_for(leaderboard, entry, leaderboard_path))


def notes_for(models: tuple[ModelEntry, ...], probes: tuple[ProbeEntry, ...], synthetic: bool) -> list[str]:
    notes = [
        "Accuracy, balanced accuracy, macro-F1 and the confusion matrix use the argmax decision; "
        "AUC is one-vs-rest (for 2 classes, the positive class); ECE uses 10 equal-width bins of "
        "top-class confidence.",
        "Inference ms / image: Keras forward pass (predict_on_batch) at batch 1 on the CPU that ran "
        "the benchmark, median of 16 calls after warm-up, preprocessing excluded (reported separately "
        "as preprocess_ms); other load on the machine inflates it.",
    ]
    if synthetic:
        notes.append("The dataset is synthetic: figures describe phantoms, not patients.")
    for probe in probes:
        for entry in models:
            if probe.task != entry.key or probe.accuracy is None or not entry.accuracy:
                continue
            if probe.accuracy >= entry.accuracy - 0.05:
                notes.append(
                    f"{entry.key}: the {probe.probe} shortcut probe scores {probe.accuracy:.3f} "
                    f"against the CNN's {entry.accuracy:.3f} (not 0.05 or more below it): the CNN "
                    "has not shown that it reads more than the film's framing and exposure."
                )
    return notes
