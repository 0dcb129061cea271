"""Keras model I/O and inference-mode scoring of a run's model (TensorFlow imported lazily).

Kept apart from :mod:`spinescan.training.runs` so that reading run directories never needs Keras.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spinescan.atomic import atomic_path
from spinescan.errors import SpineScanError, require_tensorflow
from spinescan.training.runs import RunDir

if TYPE_CHECKING:
    import keras

    from spinescan.data.datasets import Sample
    from spinescan.zoo.spec import ModelSpec


def load_run_model(run_dir: str | Path) -> keras.Model:
    """The run's kept model, loaded in Keras safe mode (no arbitrary code from the file)."""
    require_tensorflow("Loading a model")
    import keras

    path = RunDir(Path(run_dir)).model_file
    if not path.is_file():
        raise SpineScanError(f"{run_dir} has no {RunDir.MODEL} (the run never finished an epoch)")
    from spinescan.landmark_net.model import custom_objects
    from spinescan.training.model_files import load_keras_safely

    custom_objects()  # registers the landmark model's layers, so safe mode can rebuild them

    return load_keras_safely(keras, path)


def save_model(model: keras.Model, run_dir: str | Path) -> Path:
    """Write ``model.keras`` atomically: a crash mid-save leaves the previously kept model in place."""
    target = RunDir(Path(run_dir)).model_file
    with atomic_path(target) as tmp:
        model.save(tmp)
    return target


def predict_probs(
    model: keras.Model, samples: Sequence[Sample], spec: ModelSpec, batch_size: int = 64
) -> np.ndarray:
    """Class probabilities (N x K, spec order) for ``samples``, read and preprocessed exactly as
    in training, in chunks so memory stays bounded."""
    from spinescan.training.pipeline import load_arrays

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


def _clean(value: float | None) -> float | None:
    return (
        None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 6)
    )


def summarize_predictions(labels: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1, cross-entropy and the confusion matrix (classification)."""
    from spinescan import metrics as m

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


def plot_curves(run_dir: str | Path, rows: Sequence[dict[str, float]], title: str = "") -> Path | None:
    """``curves.png``: loss and accuracy per epoch, training vs validation."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(9, 3.5), dpi=100)
    for i, metric in enumerate(("loss", "accuracy")):
        ax = fig.add_subplot(1, 2, i + 1)
        for key, name in ((metric, "train"), (f"val_{metric}", "validation")):
            values = [r.get(key, float("nan")) for r in rows]
            ax.plot(epochs, values, marker="o", markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        if metric == "accuracy":
            ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    target = RunDir(Path(run_dir)).file(RunDir.CURVES)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    return target
