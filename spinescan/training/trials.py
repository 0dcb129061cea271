"""What ``spinescan tune`` records of its trials: ``trials.csv`` and ``trials.json`` (schema
``spinescan.tune/1``), one row per trial, best score first, with each trial's seconds and fold scores
(kept across a resumed search). Apart from :mod:`spinescan.training.tune`, which runs the search."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spinescan.atomic import atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from spinescan.zoo.search import SearchSpace

TUNE_SCHEMA = "spinescan.tune/1"
TRIALS_CSV = "trials.csv"
TRIALS_JSON = "trials.json"
OBJECTIVE = "val_accuracy"


def read_timings(project: Path) -> dict[str, dict[str, Any]]:
    """Each finished trial's seconds and fold scores as ``trials.json`` last recorded them (keras-tuner
    keeps neither): ``{}`` when the file is missing or unreadable."""
    import json

    path = project / TRIALS_JSON
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {
        t["trial_id"]: {"seconds": t.get("seconds"), "fold_scores": t.get("fold_scores")}
        for t in doc.get("trials", [])
        if t.get("seconds") is not None
    }


def write_tables(
    project: Path, oracle: Any, space: SearchSpace, timings: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """``trials.csv`` and ``trials.json``: one row per trial, best score first."""
    rows = []
    for trial_id, trial in sorted(oracle.trials.items(), key=lambda kv: int(kv[0])):
        values = trial.hyperparameters.values
        best = trial.metrics.get_best_value(OBJECTIVE) if trial.metrics.exists(OBJECTIVE) else None
        row = {
            "trial_id": trial_id,
            "status": str(getattr(trial.status, "value", trial.status)),
            OBJECTIVE: None if best is None else round(float(best), 4),
            "epochs": values.get("tuner/epochs"),
            "bracket": values.get("tuner/bracket"),
            "round": values.get("tuner/round"),
            **{n: values.get(n) for n in space.names},
            "seconds": timings.get(trial_id, {}).get("seconds"),
            "fold_scores": timings.get(trial_id, {}).get("fold_scores"),
        }
        rows.append(row)
    rows.sort(
        key=lambda r: (r[OBJECTIVE] is None, -(r[OBJECTIVE] or 0.0), -(r["epochs"] or 0), r["trial_id"])
    )
    if not project.is_dir():
        return rows
    atomic_write_json(project / TRIALS_JSON, {"schema": TUNE_SCHEMA, "objective": OBJECTIVE, "trials": rows})
    buffer = io.StringIO()
    columns = [c for c in rows[0] if c != "fold_scores"] if rows else ["trial_id"]
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(project / TRIALS_CSV, buffer.getvalue())
    return rows
