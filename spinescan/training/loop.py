"""The one Keras training loop every plugin shares: ``train(TrainConfig) -> RunResult``.

What it guarantees, and why:

* **Reproducible**: seeds fixed with ``keras.utils.set_random_seed``; the split is computed from
  ``(dataset, seed)`` over *all* images of the spec's view, then narrowed to the spec's classes,
  so the generalist and the specialists are tested on the same films.
* **Trustworthy validation**: validation accuracy is measured in inference mode (BatchNorm moving
  statistics, momentum 0.9 in our backbones), the kept epoch's weights (``HParams.checkpoint``)
  are what ``model.keras`` holds, and the final metrics are recomputed from that saved file, not
  from training state.
* **Survives interruption**: ``keras.callbacks.BackupAndRestore`` keeps the last finished epoch
  (weights, optimizer, epoch); ``--resume`` continues it and ``history.csv`` continues with it.
  Every file is replaced atomically, so a kill never leaves a half-written model.
* **Scales**: ``tf.distribute`` (:mod:`spinescan.training.distribute`; only the chief writes the
  run directory), mixed precision on GPU only, XLA off on CPU where it measured slower.

Argument errors are raised by :func:`spinescan.training.config.resolve_request` before
TensorFlow is imported. Messages go to ``config.progress`` (quiet by default).
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spinescan.errors import DataError, SpineScanError, require_tensorflow
from spinescan.training import callbacks as cb
from spinescan.training import inference
from spinescan.training.config import Resolved, TrainConfig, resolve_request
from spinescan.training.distribute import make_strategy, patch_keras_for_multiworker, worker_role
from spinescan.training.failures import (
    RunNotSaved,
    TrainingInterrupted,
    check_runs_writable,
    is_write_failure,
)
from spinescan.training.finish import RunResult, finish_run, rescore
from spinescan.training.prepare import Plan, load_view_samples, prepare_run, split_for_run
from spinescan.training.runconfig import DatasetRecord, RunConfig, dataset_fingerprint, split_hash, versions
from spinescan.training.runs import RunDir, kept_epoch
from spinescan.training.tasks import task_for
from spinescan.zoo.spec import build_model

if TYPE_CHECKING:
    import keras

    from spinescan.data.datasets import Dataset, Sample
    from spinescan.data.splits import Split

__all__ = [
    "RunNotSaved",
    "RunResult",
    "TrainConfig",
    "TrainingInterrupted",
    "build_compiled",
    "check_runs_writable",
    "make_inputs",
    "rescore",
    "train",
]


@dataclass(frozen=True)
class TrainingData:
    """The images a run trains, validates and tests on."""

    dataset: Dataset
    view_samples: list[Sample]
    split: Split
    parts: dict[str, list[Sample]]
    skipped: list[tuple[str, str]]


def train(config: TrainConfig, resolved: Resolved | None = None) -> RunResult:
    """Train ``config.model`` and leave a complete run directory; see the module docstring.

    ``resolved``: ``resolve_request(config)`` when the caller has already made it (the CLI, the
    benchmark, the pretraining stage), so a run is resolved once; otherwise it is made here."""
    resolved = resolved or resolve_request(config)  # argument errors, before TensorFlow
    check_runs_writable(config.runs_dir)  # before TensorFlow and the data: not 10 s of loading first
    require_tensorflow("Training")  # fail early, naming the 'train' extra
    strategy, strategy_name = make_strategy(config.settings.strategy)
    chief, worker = worker_role(strategy)
    plan = prepare_run(config, resolved, chief)
    if plan.resuming and plan.rundir.is_finished():
        config.progress.info(f"Run {plan.rundir.path} already finished; nothing to resume.")
        return RunResult(plan.rundir.path, plan.rundir.read_metrics() or {})
    data = load_training_data(plan)
    out = plan.rundir if chief else RunDir(Path(tempfile.mkdtemp(prefix=f"spinescan-worker{worker}-")))
    try:
        out.path.mkdir(parents=True, exist_ok=True)
        if chief and not plan.resuming:
            strategy_doc = {"name": strategy_name, "replicas": int(strategy.num_replicas_in_sync)}
            out.write_config(_run_config(plan, data, strategy_doc))
            data.split.save(out.file(RunDir.SPLIT))
        with tempfile.TemporaryDirectory(prefix=".cache-", dir=out.path.parent) as cache:
            return _fit_and_record(plan, data, (strategy, strategy_name), chief, (out, Path(cache)))
    except Exception as exc:
        if chief and is_write_failure(exc) and not isinstance(exc, SpineScanError):
            raise RunNotSaved(plan, exc) from None
        raise
    finally:
        if not chief:
            shutil.rmtree(out.path, ignore_errors=True)


def load_training_data(plan: Plan) -> TrainingData:
    """The view's samples, the split, and the usable images of the spec's classes per part."""
    from spinescan.data.checks import samples_for_spec

    spec, progress = plan.spec, plan.config.progress
    dataset, view_samples = load_view_samples(plan.data, spec)
    if plan.stored is not None and plan.stored.dataset.fingerprint not in (
        "",
        dataset_fingerprint(view_samples),
    ):
        progress.info(f"Warning: the dataset under {plan.data} changed since this run started.")
    split = plan.split or split_for_run(plan.config, plan.hparams, plan.seed, view_samples)
    samples, skipped = samples_for_spec(
        dataset, spec.view, spec.classes, skip_unreadable=True, progress=progress
    )
    if skipped:
        shown = "; ".join(f"{rel} ({why})" for rel, why in skipped[:3])
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        progress.info(f"Skipped {len(skipped)} unreadable image(s): {shown}{more}")
    parts = split.assign(samples)
    for part in ("train", "val"):
        if not parts[part]:
            raise DataError(
                f"the {part} split of {spec.name!r} is empty ({len(samples)} usable images); "
                "the dataset is too small for a train/validation/test split"
            )
    return TrainingData(dataset, view_samples, split, parts, skipped)


def _run_config(plan: Plan, data: TrainingData, strategy: dict[str, Any]) -> RunConfig:
    from spinescan.data.provenance import read_provenance

    config = plan.config
    return RunConfig(
        run_id=plan.rundir.run_id,
        model=plan.spec.name,
        hparams=plan.hparams,
        spec=plan.spec.summary(),
        seed=plan.seed,
        weights=plan.weights,
        init_from=plan.init_from,
        dataset=DatasetRecord(
            root=str(plan.data),
            layout=data.dataset.layout,
            fingerprint=dataset_fingerprint(data.view_samples),
            view_images=len(data.view_samples),
            synthetic=read_provenance(plan.data).synthetic,
        ),
        split_source="override" if config.split is not None else "computed",
        split_hash=split_hash(data.split),
        counts={p: len(v) for p, v in data.parts.items()},
        skipped=[{"file": rel, "reason": why} for rel, why in data.skipped],
        strategy=strategy,
        in_memory=config.in_memory,
        tensorboard=config.tensorboard,
        versions=versions(),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )


@dataclass(frozen=True)
class Inputs:
    """Arrays and tf.data pipelines of one run."""

    x: dict[str, Any]
    y: dict[str, np.ndarray]
    train_ds: Any
    val_ds: Any
    steps: int
    images_per_epoch: int


def _inputs(plan: Plan, data: TrainingData, replicas: int, cache_dir: Path) -> Inputs:
    """Arrays and targets of the run, as the spec's task makes them (:mod:`.tasks`), then its pipelines."""
    spec, progress = plan.spec, plan.config.progress
    task = task_for(spec)
    parts = data.parts
    x, y = {}, {}
    for p in ("train", "val", "test"):
        # file-backed: decoded once into memory-mapped files, paged in by the OS
        cache = None if plan.config.in_memory else cache_dir / f"{p}.npy"
        verb = "Loading" if cache is None else "Caching"
        x[p], y[p] = task.load(parts[p], spec, progress, f"{verb} {p} images", cache)
    return make_inputs(plan, x, y, replicas)


def make_inputs(plan: Plan, x: dict[str, Any], y: dict[str, np.ndarray], replicas: int = 1) -> Inputs:
    """The training and validation pipelines (the task's augmentation, weights and batching) over
    decoded arrays; public so that ``spinescan tune`` trains its trials on exactly what a run trains on."""
    spec, hp = plan.spec, plan.hparams
    task = task_for(spec)
    global_batch = hp.batch_size * replicas
    train_ds = task.dataset(x["train"], y["train"], spec, hp, global_batch, training=True, seed=plan.seed)
    val_ds = task.dataset(x["val"], y["val"], spec, hp, global_batch, training=False, seed=plan.seed)
    n_train = len(y["train"])
    drop = n_train >= 2 * global_batch  # as the datasets do for training
    steps = n_train // global_batch if drop else math.ceil(n_train / global_batch)
    return Inputs(x, y, train_ds, val_ds, steps, steps * global_batch if drop else n_train)


def build_compiled(plan: Plan, keras: Any, steps: int, gpu: bool) -> keras.Model:
    """Build (or initialise from ``init_from``) and compile the model (optimizer, learning-rate
    schedule, loss); call inside the strategy scope. Public for ``spinescan tune``'s trials."""
    hp = plan.hparams
    model = build_model(plan.spec, hp, plan.weights)
    if plan.init_from:
        from spinescan.zoo.backbones import transfer_weights

        copied, skipped = transfer_weights(inference.load_run_model(plan.init_from), model)
        plan.config.progress.info(f"Initialised {copied} layers from {plan.init_from} ({skipped} skipped)")
    model.compile(
        optimizer=_optimizer(keras, hp.optimizer, _lr(keras, hp, steps)),
        **task_for(plan.spec).compile_args(keras, plan.spec, hp),
        jit_compile="auto" if gpu else False,
    )
    return model


def _optimizer(keras: Any, name: str, learning_rate: Any) -> Any:
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9, nesterov=True)
    return keras.optimizers.Adam(learning_rate=learning_rate)


def _fit_and_record(
    plan: Plan,
    data: TrainingData,
    strategy_and_name: tuple[Any, str],
    chief: bool,
    where: tuple[RunDir, Path],
) -> RunResult:
    """Load the images, build and fit the model, then evaluate (chief). ``where`` is the output
    directory (the run dir, or a scratch dir on non-chief workers) and the image-cache dir."""
    tf = require_tensorflow()
    import keras

    out, cache_dir = where
    strategy = strategy_and_name[0]
    progress = plan.config.progress
    inputs = _inputs(plan, data, int(strategy.num_replicas_in_sync), cache_dir)
    gpu = bool(tf.config.list_physical_devices("GPU"))
    previous_policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_float16" if gpu else "float32")
    history, state = _history_for_resume(plan, out, chief)
    try:
        model = _build_attempt(plan, keras, strategy_and_name, inputs.steps, gpu, state)
        if state.get("fit_done"):
            progress.info("Training had already finished; evaluating the kept model.")
        else:
            while _fit(plan, keras, model, inputs, (out, chief), history, state):
                _discard_stalled_attempt(plan, out, history, state)
                model = _build_attempt(plan, keras, strategy_and_name, inputs.steps, gpu, state)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    if not chief:
        return RunResult(plan.rundir.path, {})
    return finish_run(plan, data, inputs, model, history, state)


def attempt_seed(seed: int, attempt: int) -> int:
    """The initialisation seed of a run's ``attempt`` (0 = the first; later ones follow stalled
    starts): the run's seed first, so a run that never stalls is the run it always was."""
    return seed + 1_000_003 * attempt


def _build_attempt(
    plan: Plan, keras: Any, strategy_and_name: tuple[Any, str], steps: int, gpu: bool, state: dict[str, Any]
) -> keras.Model:
    """Seed and build the compiled model of the current attempt (after ``state``'s restarts)."""
    strategy, strategy_name = strategy_and_name
    keras.utils.set_random_seed(attempt_seed(plan.seed, len(state.get("restarts", []))))
    with strategy.scope():
        model = build_compiled(plan, keras, steps, gpu)
    if strategy_name == "multiworker":
        patch_keras_for_multiworker(model, strategy)
    return model


def _discard_stalled_attempt(plan: Plan, out: RunDir, history: list[dict], state: dict[str, Any]) -> None:
    """Forget a stalled attempt's epochs (history, backup, kept weights are overwritten by the next
    attempt's first epoch) and record it under ``state["restarts"]``, with the time spent so far."""
    stalled = state.pop("stalled")
    restarts = [*state.get("restarts", []), {**stalled, "seconds": round(state.get("train_seconds", 0.0), 3)}]
    hp = plan.hparams
    accuracy = "nan" if stalled["val_accuracy"] is None else f"{stalled['val_accuracy']:.3f}"
    plan.config.progress.info(
        f"Stalled start: validation accuracy {accuracy} < {hp.restart_below:g} after epoch "
        f"{stalled['epoch']} ({stalled['steps']} steps). Restart {len(restarts)} of at most "
        f"{hp.max_restarts}: training again from a new initialisation."
    )
    shutil.rmtree(out.backup_dir, ignore_errors=True)
    history.clear()
    seconds = state.get("train_seconds", 0.0)
    state.clear()
    state.update(restarts=restarts, train_seconds=seconds)
    out.write_history(history)
    out.write_json(RunDir.STATE, state)


def _fit(
    plan: Plan,
    keras: Any,
    model: keras.Model,
    inputs: Inputs,
    out_and_chief: tuple[RunDir, bool],
    history: list[dict],
    state: dict[str, Any],
) -> bool:
    """``model.fit`` with the run's callbacks; Ctrl-C becomes :class:`TrainingInterrupted`.
    True when the fit stopped on a stalled start (``state["stalled"]``) and should start again."""
    out, chief = out_and_chief
    setup = cb.RecorderSetup(out, plan.hparams, inputs.images_per_epoch, inputs.steps)
    tensorboard = plan.rundir if plan.config.tensorboard and chief else None
    callbacks = cb.assemble_callbacks(keras, setup, history, state, tensorboard)
    verbose = plan.config.verbose
    if verbose == 1 and not sys.stderr.isatty():
        verbose = 2  # one line per epoch in logs instead of a carriage-return bar
    hp = plan.hparams
    renamed = cb.epoch_log(keras, plan.spec.task, hp.epochs) if verbose else None
    if renamed is not None:  # a landmark model's "accuracy" is PCK: our own log line says so
        callbacks.append(renamed)
        verbose = 0
    plan.config.progress.info(
        f"Training {plan.spec.name} ({hp.backbone}, {model.count_params():,} parameters) on "
        f"{len(inputs.y['train'])} images, validating on {len(inputs.y['val'])}; run: {plan.rundir.path}"
    )
    try:  # the dataset shuffles itself
        model.fit(
            inputs.train_ds, validation_data=inputs.val_ds, epochs=hp.epochs,
            callbacks=callbacks, verbose=verbose, shuffle=False,
        )  # fmt: skip
    except KeyboardInterrupt:
        raise TrainingInterrupted(plan, int(state.get("epochs_done", 0))) from None
    if "stalled" in state:
        return True
    state["fit_done"] = True
    out.write_json(RunDir.STATE, state)
    return False


def _lr(keras: Any, hp: Any, steps: int) -> Any:
    """Cosine decay with a one-epoch warm-up (stable from scratch), or a constant for plateau."""
    lr, epochs = hp.learning_rate, max(1, hp.epochs)
    if hp.lr_schedule == "plateau":
        return lr
    warmup = steps if epochs > 2 else 0
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=lr * 0.1 if warmup else lr,
        decay_steps=max(1, steps * epochs - warmup),
        alpha=0.02,
        warmup_target=lr if warmup else None,
        warmup_steps=warmup,
    )


def _history_for_resume(plan: Plan, out: RunDir, chief: bool) -> tuple[list[dict], dict[str, Any]]:
    """History and recorder state to continue from: cut back to the backup's last epoch."""
    if not plan.resuming:
        return [], {}
    rundir = plan.rundir
    if not chief and rundir.backup_dir.is_dir():  # a worker restores from the chief's backup (shared FS)
        shutil.copytree(rundir.backup_dir, out.backup_dir, dirs_exist_ok=True)
    state = rundir.read_json(RunDir.STATE) or {}
    if state.get("fit_done"):
        return rundir.read_history(), state
    meta = RunDir(rundir.backup_dir).read_json("training_metadata.json") or {}
    done = int(meta.get("epoch", 0))
    history = [r for r in rundir.read_history() if r["epoch"] <= done]
    return history, cb.restore_state(history, plan.hparams, state.get("restarts"))


__all__ += ["kept_epoch"]
