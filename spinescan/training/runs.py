"""Run directories: where one training run leaves everything needed to trust and reuse it.

Layout (``runs/<model>/<run-id>/``), every file written atomically::

    config.json       all arguments resolved, spec summary, versions, dataset root + fingerprint
    split.json        the train/val/test split (rel paths) the run used
    history.csv       one row per finished epoch (continues across --resume)
    metrics.json      {"finished": true, "val": {...}, "test": {...}, best epoch, time to target, ...}
    model.keras       the best weights (by validation accuracy), loaded in Keras safe mode
    curves.png        loss and accuracy per epoch
    predictions.csv   split, file, label, p_<class>... for every validation and test image
    .backup/          BackupAndRestore state while a run is unfinished (removed when done)

A run is *finished* once ``metrics.json`` says so; anything else is an interrupted run that
``--resume`` can continue. The benchmark reuses finished runs through :func:`find_matching_run`
rather than training the same thing twice.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spinescan.atomic import atomic_path, atomic_write_json, atomic_write_text
from spinescan.edge.preprocess import Preprocessing
from spinescan.errors import SpineScanError, require_tensorflow

if TYPE_CHECKING:
    import keras

    from spinescan.data.datasets import Sample
    from spinescan.data.splits import Split
    from spinescan.training.loop import TrainConfig
    from spinescan.zoo.spec import ModelSpec

CONFIG = "config.json"
SPLIT = "split.json"
HISTORY = "history.csv"
METRICS = "metrics.json"
MODEL = "model.keras"
CURVES = "curves.png"
PREDICTIONS = "predictions.csv"
STATE = "state.json"
BACKUP = ".backup"
BENCHMARK = "benchmark.json"  # written into a winning run by `spinescan bench`; read by the model card
RUN_FILES = (CONFIG, SPLIT, HISTORY, METRICS, MODEL, CURVES, PREDICTIONS)
PARTS = ("val", "test")

# What must agree for a finished run to stand in for a new one (find_matching_run).
MATCH_KEYS = (
    "model",
    "seed",
    "epochs",
    "batch_size",
    "input_size",
    "backbone",
    "weights",
    "learning_rate",
    "lr_schedule",
    "patience",
    "min_epochs",
    "augment",
    "checkpoint",
    "target_accuracy",
    "init_from",
    "resize",
    "preprocessing",
)


@dataclass
class Run:
    """A run directory, read back. ``metrics`` is None while the run is unfinished."""

    dir: Path
    config: dict[str, Any]
    metrics: dict[str, Any] | None
    split: Split | None
    spec: ModelSpec

    @property
    def finished(self) -> bool:
        return bool(self.metrics and self.metrics.get("finished"))

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes


# -- identity -------------------------------------------------------------------------------------


def new_run_id(runs_dir: Path, model: str, seed: int) -> str:
    """A sortable, readable id: ``20250101-120000-s0`` (suffixed if that second is taken)."""
    base = time.strftime("%Y%m%d-%H%M%S") + f"-s{seed}"
    run_id, n = base, 1
    while (Path(runs_dir) / model / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def dataset_fingerprint(samples: Sequence[Sample]) -> str:
    """md5 of the sorted (rel path, label, view, patient, size in bytes) of ``samples``.

    Cheap (no file is read) yet changes when an image is added, removed, relabelled or
    replaced by a file of another size.
    """
    h = hashlib.md5(usedforsecurity=False)
    for s in sorted(samples, key=lambda s: s.rel):
        try:
            size = os.stat(s.path).st_size
        except OSError:
            size = -1
        h.update(f"{s.rel}\x1f{s.label}\x1f{s.view}\x1f{s.patient_id}\x1f{size}\n".encode())
    return h.hexdigest()


def split_hash(split: Split) -> str:
    body = json.dumps({p: sorted(getattr(split, p)) for p in ("train", "val", "test")}, sort_keys=True)
    return hashlib.md5(body.encode(), usedforsecurity=False).hexdigest()


def versions() -> dict[str, str]:
    from spinescan import __version__  # noqa: PLC0415

    out = {"python": platform.python_version(), "numpy": np.__version__, "spinescan": __version__}
    try:
        import keras  # noqa: PLC0415
        import tensorflow as tf  # noqa: PLC0415

        out.update(tensorflow=tf.__version__, keras=keras.__version__)
    except ImportError:  # pragma: no cover - reading runs on a light install
        pass
    return out


# -- reading --------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise SpineScanError(f"cannot read {path}: {exc}") from None


def is_finished(run_dir: Path) -> bool:
    try:
        metrics = _read_json(Path(run_dir) / METRICS)
    except SpineScanError:
        return False
    return bool(metrics and metrics.get("finished"))


def spec_from_config(config: dict[str, Any]) -> ModelSpec:
    """The spec a run was trained with: the registered one, overridden by what the run recorded
    (classes, input size, preprocessing), so a later plugin change cannot silently alter it."""
    from spinescan.zoo.registry import get_registry  # noqa: PLC0415
    from spinescan.zoo.spec import ModelSpec, default_builder  # noqa: PLC0415

    summary = config.get("spec", {})
    name = summary.get("name") or config.get("arguments", {}).get("model")
    known = get_registry().models.get(name)
    fields = {
        "classes": tuple(summary.get("classes", ())),
        "input_size": tuple(summary.get("input_size", ())),
        "preprocessing": Preprocessing.from_dict(summary.get("preprocessing", {})),
    }
    fields = {k: v for k, v in fields.items() if v or k == "preprocessing"}
    if known is not None:
        return replace(known, **fields)
    return ModelSpec(
        name=name,
        description=summary.get("description", ""),
        view=summary.get("view", "lateral"),
        build=default_builder,
        negative_class=summary.get("negative_class", "healthy"),
        plugin=summary.get("plugin", ""),
        **fields,
    )


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory (finished or not)."""
    from spinescan.data.splits import Split  # noqa: PLC0415

    run_dir = Path(run_dir)
    config = _read_json(run_dir / CONFIG)
    if config is None:
        raise SpineScanError(f"{run_dir} is not a run directory (no {CONFIG})")
    split = Split.load(run_dir / SPLIT) if (run_dir / SPLIT).is_file() else None
    return Run(run_dir, config, _read_json(run_dir / METRICS), split, spec_from_config(config))


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
            if not (run_dir / CONFIG).is_file():
                continue
            if finished is None or is_finished(run_dir) == finished:
                found.append(run_dir)
    # config.json is written once, when a run starts (resuming does not rewrite it).
    return sorted(found, key=lambda p: ((p / CONFIG).stat().st_mtime, p.name, p.parent.name))


def latest_run(runs_dir: str | Path, model: str) -> Path | None:
    """The most recent finished run of ``model``."""
    runs = list_runs(runs_dir, model, finished=True)
    return runs[-1] if runs else None


def latest_unfinished_run(runs_dir: str | Path, model: str) -> Path | None:
    runs = list_runs(runs_dir, model, finished=False)
    return runs[-1] if runs else None


def find_matching_run(runs_dir: str | Path, config: TrainConfig) -> Path | None:
    """A finished run equivalent to training ``config`` now, or None.

    Equivalent means: the same model, resolved hyper-parameters (:data:`MATCH_KEYS`), dataset
    fingerprint and split. The newest match wins.
    """
    from spinescan.training.loop import resolve_for_matching  # noqa: PLC0415

    runs = list_runs(runs_dir, config.model, finished=True)
    if not runs:
        return None
    wanted = resolve_for_matching(config)
    for run_dir in reversed(runs):
        stored = _read_json(run_dir / CONFIG) or {}
        args = stored.get("arguments", {})
        if any(args.get(k) != wanted["arguments"].get(k) for k in MATCH_KEYS):
            continue
        if stored.get("dataset", {}).get("fingerprint") != wanted["fingerprint"]:
            continue
        if stored.get("split_hash") != wanted["split_hash"]:
            continue
        return run_dir
    return None


def load_model(run_dir: str | Path) -> keras.Model:
    """The run's best model, loaded in Keras safe mode (no arbitrary code from the file)."""
    require_tensorflow("Loading a model")
    import keras  # noqa: PLC0415

    path = Path(run_dir) / MODEL
    if not path.is_file():
        raise SpineScanError(f"{run_dir} has no {MODEL} (the run never finished an epoch)")
    from spinescan.training.model_files import load_keras_safely  # noqa: PLC0415

    return load_keras_safely(keras, path)


def save_model(model: keras.Model, run_dir: str | Path) -> Path:
    """Write ``model.keras`` atomically: a crash mid-save leaves the previous best in place."""
    target = Path(run_dir) / MODEL
    with atomic_path(target) as tmp:
        model.save(tmp)
    return target


def predict_probs(
    model: keras.Model, samples: Sequence[Sample], spec: ModelSpec, batch_size: int = 64
) -> np.ndarray:
    """Class probabilities (N x K, spec order) for ``samples``, read and preprocessed exactly as
    in training, in chunks so memory stays bounded."""
    from spinescan.training.pipeline import load_arrays  # noqa: PLC0415

    out = np.zeros((len(samples), spec.num_classes), dtype=np.float32)
    chunk = max(batch_size, 256)
    for start in range(0, len(samples), chunk):
        x = load_arrays(samples[start : start + chunk], spec)
        out[start : start + len(x)] = predict_arrays(model, x, batch_size)
    return out


def predict_arrays(model: keras.Model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Inference-mode probabilities for preprocessed images.

    Calls the model eagerly batch by batch rather than through ``model.predict``: no graph is
    traced per model, so scoring many runs in one process (the benchmark) stays quiet and fast.
    """
    if len(x) == 0:
        return np.zeros((0, int(model.output_shape[-1])), dtype=np.float32)
    out = [
        np.asarray(model(np.ascontiguousarray(x[i : i + batch_size]), training=False), dtype=np.float32)
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out)


# -- predictions and metrics ------------------------------------------------------------------------


def write_predictions(
    run_dir: Path, classes: Sequence[str], parts: dict[str, tuple[Sequence[str], Sequence[str], np.ndarray]]
) -> Path:
    """``predictions.csv``: split, file (rel), label, then ``p_<class>`` per class."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["split", "file", "label", *(f"p_{c}" for c in classes)])
    for part, (files, labels, probs) in parts.items():
        for file, label, row in zip(files, labels, probs, strict=True):
            writer.writerow([part, file, label, *(f"{float(p):.6g}" for p in row)])
    return atomic_write_text(Path(run_dir) / PREDICTIONS, buf.getvalue())


def read_predictions(run_dir: str | Path) -> dict[str, tuple[list[str], list[str], np.ndarray]]:
    """``{split: (files, labels, probs N x K)}`` from a run's ``predictions.csv``."""
    path = Path(run_dir) / PREDICTIONS
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


def _clean(value: float) -> float | None:
    return (
        None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 6)
    )


def summarize_predictions(labels: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1, cross-entropy and the confusion matrix."""
    from spinescan import metrics as m  # noqa: PLC0415

    labels = np.asarray(labels, dtype=int)
    k = len(classes)
    if len(labels) == 0:
        return {"n": 0, "accuracy": None, "balanced_accuracy": None, "macro_f1": None, "loss": None}
    cm = m.confusion_matrix(labels, probs.argmax(axis=1), k)
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0))))
    return {
        "n": len(labels),
        "accuracy": _clean(m.accuracy_from_cm(cm)),
        "balanced_accuracy": _clean(m.balanced_accuracy_from_cm(cm)),
        "macro_f1": _clean(m.macro_f1_from_cm(cm)),
        "loss": _clean(loss),
        "confusion": cm.tolist(),
    }


# -- history and curves -----------------------------------------------------------------------------

HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")


def read_history(run_dir: str | Path) -> list[dict[str, float]]:
    path = Path(run_dir) / HISTORY
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


def write_history(run_dir: str | Path, rows: Sequence[dict[str, float]]) -> Path:
    buf = io.StringIO()
    extra = sorted({k for r in rows for k in r} - set(HISTORY_FIELDS))
    writer = csv.DictWriter(buf, fieldnames=[*HISTORY_FIELDS, *extra], lineterminator="\n", restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return atomic_write_text(Path(run_dir) / HISTORY, buf.getvalue())


def plot_curves(run_dir: str | Path, rows: Sequence[dict[str, float]], title: str = "") -> Path | None:
    """``curves.png``: loss and accuracy per epoch, training vs validation."""
    if not rows:
        return None
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # noqa: PLC0415

    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(9, 3.5), dpi=100)
    for i, (metric, label) in enumerate((("loss", "loss"), ("accuracy", "accuracy"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for key, name in ((metric, "train"), (f"val_{metric}", "validation")):
            values = [r.get(key, float("nan")) for r in rows]
            ax.plot(epochs, values, marker="o", markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if metric == "accuracy":
            ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    target = Path(run_dir) / CURVES
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    return target


def write_json(run_dir: str | Path, name: str, obj: Any) -> Path:
    return atomic_write_json(Path(run_dir) / name, obj)


def read_json(run_dir: str | Path, name: str) -> dict[str, Any] | None:
    return _read_json(Path(run_dir) / name)
