"""What differs between a classifier and a landmark model in the shared training loop, in one place.

The loop (:mod:`spinescan.training.loop`) is the same for every model: split, runs, resume,
callbacks, tf.distribute. A :class:`Task` (chosen by ``spec.task`` through :func:`task_for`)
supplies the rest: how a part of the split becomes arrays and targets, the tf.data pipeline, the
loss and metrics, and the evaluation summary and predictions written at the end of a run.

Both tasks report a Keras metric named ``accuracy`` (higher is better), so the kept-epoch rule
(:func:`spinescan.training.callbacks.keeps`), early stopping, ``target_accuracy`` and the history
columns serve both: a classifier's is classification accuracy, a landmark model's is PCK (the
share of visible landmarks within :data:`PCK_TOLERANCE` of the input height of the truth).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from spinescan.atomic import atomic_write_text
from spinescan.errors import DataError, SpineScanError
from spinescan.progress import Progress, as_progress
from spinescan.training import inference
from spinescan.training.runs import RunDir

if TYPE_CHECKING:
    from spinescan.data.datasets import Sample
    from spinescan.zoo.hparams import HParams
    from spinescan.zoo.spec import ModelSpec

#: PCK tolerance (fraction of the input height) behind a landmark model's ``accuracy``.
PCK_TOLERANCE = 0.02


class Task:
    """The task-specific half of a run. Subclasses implement every method."""

    name: ClassVar[str] = ""
    #: What the ``accuracy`` column of ``history.csv`` means for this task.
    accuracy_means: ClassVar[str] = ""

    def check(self, spec: ModelSpec, hp: HParams, weights: str | None) -> None:
        """Refuse settings the task cannot honour (before TensorFlow); a one-line error."""

    def load(
        self, samples: Sequence[Sample], spec: ModelSpec, progress: Progress, label: str, cache: Path | None
    ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def dataset(
        self,
        x: np.ndarray,
        y: np.ndarray,
        spec: ModelSpec,
        hp: HParams,
        batch: int,
        training: bool,
        seed: int,
    ) -> Any:
        raise NotImplementedError

    def compile_args(self, keras: Any, spec: ModelSpec, hp: HParams) -> dict[str, Any]:
        raise NotImplementedError

    def evaluate(
        self,
        model: Any,
        parts: dict[str, tuple[Sequence[Sample], np.ndarray, np.ndarray]],
        spec: ModelSpec,
        batch: int,
        rundir: RunDir,
    ) -> dict[str, Any]:
        """Summaries of ``val`` and ``test`` (``{part: {...}}``); writes ``predictions.csv``."""
        raise NotImplementedError


class ClassificationTask(Task):
    """Class probabilities, sparse cross-entropy, class-balanced weights, augmentation."""

    name = "classification"
    accuracy_means = "classification accuracy"

    def load(self, samples, spec, progress, label, cache):  # see Task
        from spinescan.training import pipeline

        y = pipeline.encode_labels(samples, spec.classes)
        if cache is None:
            return pipeline.load_arrays(samples, spec, progress=progress, label=label), y
        return pipeline.cache_arrays(samples, spec, cache, progress, label), y

    def dataset(self, x, y, spec, hp, batch, training, seed):
        from spinescan.training import pipeline

        if not training:
            return pipeline.make_dataset(x, y, spec, batch)
        weights = pipeline.class_weights(y, spec.num_classes)[y]
        return pipeline.make_dataset(
            x, y, spec, batch, training=True, augment=hp.augment, sample_weights=weights, seed=seed
        )

    def compile_args(self, keras, spec, hp):
        return {"loss": keras.losses.SparseCategoricalCrossentropy(), "metrics": ["accuracy"]}

    def evaluate(self, model, parts, spec, batch, rundir):
        results, predictions = {}, {}
        for part, (samples, x, y) in parts.items():
            probs = inference.predict_arrays(model, x, batch)
            results[part] = inference.summarize_predictions(y, probs, spec.classes)
            predictions[part] = ([s.rel for s in samples], [s.label for s in samples], probs)
        rundir.write_predictions(spec.classes, predictions)
        return results


# -- landmarks -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """A landmark model's reading of one film, in the film's pixels."""

    landmarks: np.ndarray  # (68, 2), NaN where not visible
    sacrum: np.ndarray  # (2, 2)
    angles: dict[str, Any]  # name -> spinescan.radiograph.angles.Angle
    label: str | None
    label_reason: str | None
    plausibility: Any = None  # spinescan.radiograph.plausibility.Plausibility (severe: angles are None)


def read_film(output: np.ndarray, placement: Any, spec: ModelSpec, image_hw: tuple[int, int]) -> Reading:
    """One film's model output (K, >=3) -> landmarks, angles and label, as the predictor reads it."""
    from spinescan.radiograph.angle_defs import definitions
    from spinescan.radiograph.measure import read_landmarks

    extra = definitions(spec.measurements)  # a registered angle beyond the view's built-ins
    return Reading(**read_landmarks(output, placement, spec.view, spec.input_size[:2], image_hw, extra))


def manifest_points(sample: Sample) -> tuple[np.ndarray, np.ndarray | None]:
    """The manifest's 68 corners and S1 endplate of one sample (film pixels), or a DataError."""
    raw = sample.extra.get("landmarks") or ""
    try:
        lm = np.asarray(json.loads(raw), dtype=np.float64).reshape(68, 2)
        sac_raw = sample.extra.get("sacrum") or ""
        sacrum = np.asarray(json.loads(sac_raw), dtype=np.float64).reshape(2, 2) if sac_raw else None
    except (ValueError, TypeError) as exc:
        raise DataError(
            f"{sample.rel}: a landmark model needs the 68 corners in manifest.csv's 'landmarks' column "
            f"(phantoms from `spinescan synth` carry them): {exc}"
        ) from None
    return lm, sacrum


class LandmarkTask(Task):
    """Heatmap landmarks (:mod:`spinescan.landmark_net.model`): targets from ``manifest.csv``."""

    name = "landmarks"
    accuracy_means = f"PCK: share of visible landmarks within {PCK_TOLERANCE:g} x input height"

    def check(self, spec, hp, weights):
        if hp.backbone != "compact" or weights is not None:
            raise SpineScanError(
                f"{spec.name} is a landmark model with its own encoder-decoder: "
                "--backbone and --weights do not apply"
            )
        h, w = spec.input_size[:2]
        if h % 32 or w % 32:  # the encoder halves the input five times
            raise SpineScanError(
                f"{spec.name} needs an input whose height and width are multiples of 32, got {h}x{w} "
                "(e.g. --image-size 512x192)"
            )

    def load(self, samples, spec, progress, label, cache):
        from spinescan.radiograph.imageio import read_image
        from spinescan.radiograph.landmark_codec import encode
        from spinescan.radiograph.preprocess import preprocess_placed

        k = len(spec.landmarks)
        x = np.empty((len(samples), *spec.input_size), dtype=np.float32)
        y = np.zeros((len(samples), k, 3), dtype=np.float32)
        with as_progress(progress).bar(len(samples), label) as advance:
            for i, s in enumerate(samples):
                lm, sacrum = manifest_points(s)
                x[i], placement = preprocess_placed(read_image(s.path), spec.input_size, spec.preprocessing)
                t = encode(lm, sacrum, placement, spec.input_size[:2])
                y[i, :, :2], y[i, :, 2] = t.coords[:k], t.visible[:k]
                advance(1)
        return x, y

    def dataset(self, x, y, spec, hp, batch, training, seed):
        from spinescan.errors import require_tensorflow
        from spinescan.training import augment

        tf = require_tensorflow()
        ds = tf.data.Dataset.from_tensor_slices((np.asarray(x, np.float32), np.asarray(y, np.float32)))
        if training:
            ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        drop = training and len(x) >= 2 * batch
        ds = ds.batch(batch, drop_remainder=drop)
        fill = float(spec.preprocessing.pad_value)
        if training and hp.augment and hp.geometric_augment:
            # The film and its targets move together (rotation, shift, isotropic zoom; a mirror for
            # AP films, whose corners swap sides), then exposure, contrast, tone, blur and noise.
            # With a few hundred real films, geometry is what keeps the model from learning where each
            # film's vertebrae happen to sit (benchmarks/aasce_cv.py).
            from spinescan.radiograph.landmark_codec import mirror_order

            aug = augment.LANDMARK_AUGMENTATION
            if spec.view != "ap":  # a mirrored lateral film faces the other way: no flip
                aug = replace(aug, flip=False)
            ds = augment.augment_landmark_batches(ds, seed, aug, fill, mirror_order(spec.landmarks))
        elif training and hp.augment:
            # exposure, contrast, tone, blur and noise only: nothing moves, the targets stay put
            ds = augment.augment_batches(ds, seed, augment.PHOTOMETRIC_AUGMENTATION, fill)
        return ds.prefetch(tf.data.AUTOTUNE)

    def compile_args(self, keras, spec, hp):
        from spinescan.landmark_net.model import make_loss

        hw = spec.input_size[:2]
        ops = keras.ops
        tol = PCK_TOLERANCE * hw[0]

        def pck(y_true: Any, y_pred: Any) -> Any:
            vis = ops.cast(y_true[..., 2], "float32")
            scale = ops.convert_to_tensor([float(hw[1]), float(hw[0])])
            d = ops.sqrt(ops.sum(ops.square((y_pred[..., :2] - y_true[..., :2]) * scale), axis=-1))
            hit = ops.cast(d <= tol, "float32") * vis
            return ops.sum(hit) / ops.maximum(ops.sum(vis), 1.0)

        return {
            # spread weight 0.01: 0.1 stalled training (landmarks branch 7bda1eb); stated explicitly
            "loss": make_loss(hw, angle_weight=20.0, spread_weight=0.01),
            "metrics": [keras.metrics.MeanMetricWrapper(pck, name="accuracy")],
        }

    def evaluate(self, model, parts, spec, batch, rundir):
        from spinescan.radiograph.imageio import read_image
        from spinescan.radiograph.preprocess import preprocess_placed

        results: dict[str, Any] = {}
        rows: list[dict[str, Any]] = []
        for part, (samples, x, _y) in parts.items():
            out = inference.predict_arrays(model, x, batch)
            readings, truths, sizes = [], [], []
            for o, s in zip(out, samples, strict=True):
                img = read_image(s.path)
                hw = img.shape[:2]
                _, pl = preprocess_placed(img, spec.input_size, spec.preprocessing)
                r = read_film(o, pl, spec, hw)
                readings.append(r)
                truths.append(manifest_points(s))
                sizes.append(hw)
                rows.append(_prediction_row(part, s, r, spec))
            results[part] = summarize_landmarks(spec, samples, readings, truths, sizes)
        fields = ["split", "file", "label", "pred_label", *spec.measurements, "landmarks"]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(rundir.file(RunDir.PREDICTIONS), buf.getvalue())
        return results


def _prediction_row(part: str, s: Sample, r: Reading, spec: ModelSpec) -> dict[str, Any]:
    def fmt(v: float | None) -> str:
        return "" if v is None else f"{float(v):.3f}"

    lm = np.round(r.landmarks, 2)
    return {
        "split": part,
        "file": s.rel,
        "label": s.label,
        "pred_label": r.label or "",
        **{m: fmt(r.angles[m].value) for m in spec.measurements},
        "landmarks": json.dumps([[None if not np.isfinite(v) else float(v) for v in p] for p in lm]),
    }


def summarize_landmarks(
    spec: ModelSpec,
    samples: Sequence[Sample],
    readings: Sequence[Reading],
    truths: Sequence[tuple[np.ndarray, np.ndarray | None]],
    sizes: Sequence[tuple[int, int]],
) -> dict[str, Any]:
    """Landmark error (fraction of film height), angle MAE against the manifest's angles, SMAPE,
    and the accuracy of the label that follows from the measured angles."""
    from spinescan.metrics import landmark_summary
    from spinescan.radiograph.angles import manifest_angles

    pred_angles = [{m: r.angles[m].value for m in spec.measurements} for r in readings]
    true_angles = [
        manifest_angles(spec.view, spec.measurements, s.extra, lm, sacrum, hw)
        for s, (lm, sacrum), hw in zip(samples, truths, sizes, strict=True)
    ]
    return landmark_summary(
        pred_landmarks=[r.landmarks for r in readings],
        true_landmarks=[t[0] for t in truths],
        heights=[h for h, _ in sizes],
        pred_angles=pred_angles,
        true_angles=true_angles,
        labels=[s.label for s in samples],
        pred_labels=[r.label for r in readings],
        smape_angles=_smape_angles(spec),
        largest="cobb_deg" if spec.view == "ap" and "cobb_deg" in spec.measurements else None,
    )


def _smape_angles(spec: ModelSpec) -> list[str] | None:
    """The angles SMAPE is computed over: for AP models the AASCE challenge's three (the published
    figures' metric) when the model measures them, else every angle but the largest."""
    from spinescan.radiograph.aasce import AASCE_ANGLES

    if spec.view != "ap":
        return None
    if all(m in spec.measurements for m in AASCE_ANGLES):
        return list(AASCE_ANGLES)
    return [m for m in spec.measurements if m != "cobb_deg"]


TASKS: dict[str, Task] = {"classification": ClassificationTask(), "landmarks": LandmarkTask()}


def task_for(spec: ModelSpec) -> Task:
    """The task strategy of ``spec`` (``spec.task`` is validated by the spec itself)."""
    return TASKS[spec.task]


__all__ = ["PCK_TOLERANCE", "ClassificationTask", "LandmarkTask", "Reading", "Task", "task_for"]
