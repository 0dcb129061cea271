"""The end of a run: the kept model (float32 again after mixed precision) scored on the run's val and
test films, ``metrics.json`` written and the resume state cleared (:func:`finish_run`); and
:func:`rescore`, the same scoring of a finished run with today's read-out. Apart from
:mod:`spinescan.training.loop`, which fits the model."""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spinescan.errors import SpineScanError
from spinescan.training import inference
from spinescan.training.prepare import Plan, load_view_samples
from spinescan.training.runs import RunDir, kept_epoch, load_run
from spinescan.training.tasks import task_for
from spinescan.zoo.spec import build_model

if TYPE_CHECKING:
    import keras

    from spinescan.progress import Progress
    from spinescan.training.loop import Inputs, TrainingData


#: Schema of :meth:`RunResult.to_dict` (``spinescan train --json``).
RESULT_SCHEMA = "spinescan.train-result/1"


@dataclass(frozen=True)
class RunResult:
    """What a training call leaves: the run directory and its ``metrics.json`` (empty for a
    non-chief worker of a multi-worker run, whose chief writes the run, or when the run stopped
    before it was scored)."""

    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The result as ``spinescan train --json`` prints it: where the run is, what was trained,
        the last epoch's training-log figures (``final_epoch``, a row of history.csv) and the
        kept model's validation and test summaries, as metrics.json records them."""
        m = self.metrics
        history = RunDir(self.run_dir).read_history() if m else []
        return {
            "schema": RESULT_SCHEMA,
            "run_dir": self.run_dir.as_posix(),
            "run_id": m.get("run_id", self.run_dir.name),
            "model": m.get("model", self.run_dir.parent.name),
            "worker": not m,  # True: a worker of a multi-worker run; the chief writes the figures
            "task": m.get("task"),
            "backbone": m.get("backbone"),
            "params": m.get("params"),
            "classes": m.get("classes"),
            "counts": m.get("counts"),
            "epochs_run": m.get("epochs_run"),
            "checkpoint": m.get("checkpoint"),
            "kept_epoch": kept_epoch(m) if m else None,
            "train_seconds": m.get("train_seconds"),
            "target_accuracy": m.get("target_accuracy"),
            "epochs_to_target": m.get("epochs_to_target"),
            "final_epoch": history[-1] if history else None,
            "val": m.get("val"),
            "test": m.get("test"),
            "pretrain": m.get("pretrain"),
            "metrics_file": (self.run_dir / RunDir.METRICS).as_posix() if m else None,
        }


def finish_run(
    plan: Plan,
    data: TrainingData,
    inputs: Inputs,
    model: keras.Model,
    history: list[dict],
    state: dict[str, Any],
) -> RunResult:
    """Evaluate the *saved* kept model (inference mode) and write the remaining run files."""
    spec, hp, rundir = plan.spec, plan.hparams, plan.rundir
    if not rundir.model_file.is_file():  # zero epochs: keep what we have
        inference.save_model(model, rundir.path)
    kept = inference.load_run_model(rundir.path)
    if any(layer.dtype_policy.name != "float32" for layer in kept.layers):
        kept = _to_float32(kept, plan)
        inference.save_model(kept, rundir.path)
    batch = max(32, hp.batch_size)
    task = task_for(spec)
    parts = {p: (data.parts[p], inputs.x[p], inputs.y[p]) for p in ("val", "test")}
    results = task.evaluate(kept, parts, spec, batch, rundir)
    history = history or rundir.read_history()
    inference.plot_curves(rundir.path, history, title=f"{spec.name} ({hp.backbone}) {rundir.run_id}")
    speeds = [r["images_per_second"] for r in history[1:] if r.get("images_per_second")]
    metrics = {
        "finished": True,
        "model": spec.name,
        "task": spec.task,
        "accuracy_means": task.accuracy_means,
        "run_id": rundir.run_id,
        "val": results["val"],
        "test": results["test"],
        "checkpoint": hp.checkpoint,
        "kept_epoch": state.get("kept_epoch"),
        "kept_val_accuracy_during_training": state.get("kept_val_accuracy"),
        "epochs_run": len(history),
        # stalled starts discarded before the kept attempt (their time is in train_seconds)
        "restarts": list(state.get("restarts", [])),
        "train_seconds": round(float(state.get("train_seconds", 0.0)), 3),
        "train_images_per_second": round(float(np.median(speeds)), 2) if speeds else None,
        "target_accuracy": hp.target_accuracy,
        "epochs_to_target": state.get("epochs_to_target"),
        "seconds_to_target": state.get("seconds_to_target"),
        "params": int(kept.count_params()),
        "backbone": hp.backbone,
        "weights": plan.weights,
        "classes": list(spec.classes),
        "counts": {p: len(v) for p, v in data.parts.items()},
    }
    rundir.write_json(RunDir.METRICS, metrics)
    shutil.rmtree(rundir.backup_dir, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        rundir.file(RunDir.STATE).unlink()
    return RunResult(rundir.path, metrics)


def rescore(
    run_dir: str | Path, data: str | Path | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Score a finished run's kept model again on its own val and test films with today's code, and
    rewrite its ``predictions.csv`` and the ``val``/``test`` figures of ``metrics.json`` (recording
    when). The model and its split do not change; what can change is how its outputs are read: a
    landmark model's angles come from the read-out in :mod:`spinescan.radiograph.angles`, which may be
    newer than the run. Returns the new metrics."""
    rundir = RunDir(Path(run_dir))
    run = load_run(rundir.path)
    metrics, split = rundir.read_metrics(), rundir.read_split()
    if not run.finished or metrics is None or split is None:
        raise SpineScanError(f"{rundir.path}: not a finished run (nothing to rescore)")
    spec = run.spec
    root = Path(data) if data is not None else Path(run.config.dataset.root)
    _, view_samples = load_view_samples(root, spec)
    parts = split.assign(view_samples)
    task = task_for(spec)
    model = inference.load_run_model(rundir.path)
    scored = {}
    for p in ("val", "test"):
        x, y = task.load(parts[p], spec, progress, f"rescoring {p} images", None)
        scored[p] = (parts[p], x, y)
    results = task.evaluate(model, scored, spec, 32, rundir)
    metrics.update(val=results["val"], test=results["test"], rescored=time.strftime("%Y-%m-%dT%H:%M:%S"))
    rundir.write_json(RunDir.METRICS, metrics)
    return metrics


def _to_float32(model: keras.Model, plan: Plan) -> keras.Model:
    """The same weights in an all-float32 model: mixed-precision (GPU) runs must still export and
    run on CPU predictors in float32. Variables are float32 under mixed precision, so this is exact."""
    import keras

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("float32")
    try:
        clean = build_model(plan.spec, plan.hparams, None)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    clean.set_weights(model.get_weights())
    return clean
