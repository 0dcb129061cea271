"""Finished runs read back for evaluation (:class:`RunRecord`), and on-demand access to their models.

The benchmark, the study and the leaderboard all work on records; the Keras model behind a record
is loaded only through :class:`ModelAccess` (timing, scoring images outside the run's own split).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from spinescan import metrics as m
from spinescan.errors import SpineScanError
from spinescan.training.runs import RunDir

if TYPE_CHECKING:
    from spinescan.data.datasets import Sample
    from spinescan.zoo.spec import ModelSpec


class Part(NamedTuple):
    """One split's predictions: rel paths, class indices (spec order) and probabilities."""

    files: list[str]
    labels: np.ndarray
    probs: np.ndarray


@dataclass
class RunRecord:
    """One finished run, read back for evaluation."""

    model: str
    backbone: str
    seed: int
    fold: int | None
    run_dir: Path
    classes: tuple[str, ...]
    view: str
    negative_class: str
    val: Part
    test: Part
    info: dict[str, Any] = field(default_factory=dict)  # metrics.json
    reused: bool = False
    spec: ModelSpec | None = None  # the spec the run was trained with

    @property
    def slot(self) -> tuple[int, int | None]:
        """Runs in the same slot (seed, fold) share one split: the pairing key of the study."""
        return (self.seed, self.fold)

    @property
    def val_accuracy(self) -> float:
        if len(self.val.labels):
            return m.accuracy(self.val.labels, self.val.probs.argmax(axis=1))
        value = (self.info.get("val") or {}).get("accuracy")
        return float("nan") if value is None else float(value)


def _part(files: Sequence[str], labels: Sequence[str], probs: np.ndarray, classes: Sequence[str]) -> Part:
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({lab for lab in labels if lab not in index})
    if unknown:
        raise SpineScanError(f"predictions name classes {unknown} that the run's spec does not have")
    return Part(list(files), np.array([index[lab] for lab in labels], dtype=int), np.asarray(probs, float))


def load_record(run_dir: str | Path, reused: bool = False) -> RunRecord:
    """Read a finished run directory (config, metrics and predictions) into a :class:`RunRecord`."""
    from spinescan.training import runs

    run = runs.load_run(run_dir)
    if not run.finished:
        raise SpineScanError(f"{run_dir} is not a finished run")
    preds = run.rundir.read_predictions()
    empty = ([], [], np.zeros((0, len(run.spec.classes))))
    fold = run.split.fold if run.split is not None else None
    return RunRecord(
        model=run.spec.name,
        backbone=run.config.hparams.backbone,
        seed=run.config.seed,
        fold=fold,
        run_dir=Path(run_dir),
        classes=tuple(run.spec.classes),
        view=run.spec.view,
        negative_class=run.spec.negative_class,
        val=_part(*preds.get("val", empty), run.spec.classes),
        test=_part(*preds.get("test", empty), run.spec.classes),
        info=run.metrics or {},
        reused=reused,
        spec=run.spec,
    )


# -- the models behind the records (prediction on other images, timing) ----------------------------
class ModelAccess:
    """Loads a run's Keras model on demand, to score extra images and to time inference.

    Kept behind one small interface so that the evaluation logic can be tested with fake runs.
    """

    def __init__(self) -> None:
        self._models: dict[Path, Any] = {}

    def _model(self, record: RunRecord) -> Any:
        from spinescan.training.inference import load_run_model

        if record.run_dir not in self._models:
            self._models[record.run_dir] = load_run_model(record.run_dir)
        return self._models[record.run_dir]

    def predict(self, record: RunRecord, samples: Sequence[Sample]) -> np.ndarray:
        from spinescan.training.inference import predict_probs

        return predict_probs(self._model(record), samples, record.spec)

    def timing(self, record: RunRecord, samples: Sequence[Sample], n: int = 16) -> dict[str, float | None]:
        """Milliseconds per image: decode + preprocess, and the Keras forward pass at batch 1.

        The forward pass (Keras ``predict_on_batch``, compiled graph) is timed after two warm-up
        calls, as the median of ``n`` single-image calls on this machine's CPU.
        """
        from spinescan.training.pipeline import load_image

        samples = list(samples)[:n]
        if not samples or not RunDir(record.run_dir).model_file.is_file():
            return {"inference_ms": None, "preprocess_ms": None}
        spec = record.spec
        t0 = time.perf_counter()
        x = np.stack([load_image(s.path, spec.input_size, spec.preprocessing) for s in samples])
        prep_ms = (time.perf_counter() - t0) * 1000 / len(samples)
        model = self._model(record)
        for i in range(2):  # the first calls trace and compile the predict function
            model.predict_on_batch(x[i % len(x) : i % len(x) + 1])
        times = []
        for i in range(len(x)):
            t0 = time.perf_counter()
            model.predict_on_batch(x[i : i + 1])
            times.append((time.perf_counter() - t0) * 1000)
        return {"inference_ms": statistics.median(times), "preprocess_ms": prep_ms}

    def release(self) -> None:
        self._models.clear()
