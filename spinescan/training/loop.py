"""The one Keras training loop every plugin shares: ``train(TrainConfig) -> RunResult``.

What it guarantees, and why:

* **Reproducible**: seeds fixed with ``keras.utils.set_random_seed``; the split is computed from
  ``(dataset, seed)`` over *all* images of the spec's view, then narrowed to the spec's classes,
  so the generalist and the specialists are tested on the same films.
* **Trustworthy validation**: validation accuracy is measured in inference mode (BatchNorm moving
  statistics, momentum 0.9 in our backbones), the best epoch's weights are what ``model.keras``
  holds, and the final metrics are recomputed from that saved file, not from training state.
* **Survives interruption**: ``keras.callbacks.BackupAndRestore`` keeps the last finished epoch
  (weights, optimizer, epoch); ``--resume`` continues it and ``history.csv`` continues with it.
  Every file is replaced atomically, so a kill never leaves a half-written model.
* **Scales**: ``tf.distribute`` (Mirrored for several GPUs, MultiWorkerMirrored from
  ``TF_CONFIG`` for several machines; only the chief writes the run directory), mixed precision on
  GPU only, XLA off on CPU where it measured slower.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import shutil
import sys
import tempfile
import time
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from spinescan.errors import DataError, SpineScanError, require_tensorflow
from spinescan.training import runs
from spinescan.zoo.spec import CHECKPOINTS

if TYPE_CHECKING:
    import keras

    from spinescan.data.datasets import Dataset, Sample
    from spinescan.data.splits import Split
    from spinescan.zoo.spec import ModelSpec

DEFAULT_DATA = Path("dataset/phantoms")
STRATEGIES = ("auto", "mirrored", "multiworker")
LR_SCHEDULES = ("cosine", "plateau")


class TrainingInterrupted(SpineScanError):
    """Ctrl-C during training: finished epochs are saved; the message says how to resume."""

    exit_code = 130


@dataclass
class TrainConfig:
    """Everything ``spinescan train`` accepts. ``None`` means "the plugin's default"."""

    model: str
    data: Path = DEFAULT_DATA
    epochs: int | None = None
    batch_size: int | None = None
    image_size: int | None = None
    seed: int = 0
    runs_dir: Path = Path("runs")
    resume: bool = False
    target_accuracy: float | None = None
    backbone: str | None = None
    weights: str | None = None
    learning_rate: float | None = None
    patience: int | None = None
    min_epochs: int | None = None
    strategy: str = "auto"
    augment: bool | None = None
    run_id: str | None = None
    split: Split | None = None  # override (k-fold benchmarks); otherwise computed from the data
    init_from: Path | None = None  # a run dir whose weights initialise the model (by layer name)
    tensorboard: bool = False
    verbose: int = 1
    in_memory: bool = True
    lr_schedule: str = "cosine"
    resize: str | None = None  # preprocessing resize override: letterbox | spine_crop
    checkpoint: str | None = None  # which epoch the run keeps: best | last (spec.TrainDefaults)


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)


# -- resolving the configuration ---------------------------------------------------------------------


def resolve_arguments(config: TrainConfig, spec: ModelSpec) -> dict[str, Any]:
    """Every setting with the plugin's defaults filled in: what ``config.json`` records."""
    from spinescan.zoo.backbones import get_backbone, normalize_weights  # noqa: PLC0415

    d = spec.train

    def pick(value: Any, default: Any) -> Any:
        return default if value is None else value

    if config.strategy not in STRATEGIES:
        raise SpineScanError(f"unknown strategy {config.strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if config.lr_schedule not in LR_SCHEDULES:
        raise SpineScanError(f"unknown lr schedule {config.lr_schedule!r}; choose one of {LR_SCHEDULES}")
    args = {
        "model": spec.name,
        "data": str(Path(config.data).expanduser().resolve()),
        "epochs": int(pick(config.epochs, d.epochs)),
        "batch_size": int(pick(config.batch_size, d.batch_size)),
        "image_size": config.image_size,
        "input_size": list(spec.input_size),
        "resize": spec.preprocessing.resize,
        "preprocessing": json.loads(spec.preprocessing.to_json()),  # all of it, for run matching
        "seed": int(config.seed),
        "backbone": get_backbone(pick(config.backbone, d.backbone)).name,
        "weights": normalize_weights(config.weights),
        "learning_rate": float(pick(config.learning_rate, d.learning_rate)),
        "lr_schedule": config.lr_schedule,
        "patience": int(pick(config.patience, d.patience)),
        "min_epochs": int(pick(config.min_epochs, d.min_epochs)),
        "augment": bool(pick(config.augment, d.augment)),
        "checkpoint": str(pick(config.checkpoint, d.checkpoint)),
        "target_accuracy": float(pick(config.target_accuracy, d.target_accuracy)),
        "validation_fraction": d.validation_fraction,
        "test_fraction": d.test_fraction,
        "strategy": config.strategy,
        "in_memory": bool(config.in_memory),
        "init_from": str(Path(config.init_from).resolve()) if config.init_from else None,
        "tensorboard": bool(config.tensorboard),
        "split_source": "override" if config.split is not None else "computed",
    }
    if args["checkpoint"] not in CHECKPOINTS:
        raise SpineScanError(
            f"unknown checkpoint {args['checkpoint']!r}; choose one of {', '.join(CHECKPOINTS)}"
        )
    if args["tensorboard"] and importlib.util.find_spec("tensorboard") is None:
        raise SpineScanError("--tensorboard needs the 'tensorboard' package: pip install tensorboard")
    if args["epochs"] < 0 or args["batch_size"] < 1:
        raise SpineScanError("epochs must be >= 0 and batch size >= 1")
    return args


def _spec_for(config: TrainConfig) -> ModelSpec:
    from spinescan.zoo.registry import get_spec  # noqa: PLC0415

    spec = get_spec(config.model).with_image_size(config.image_size)
    if config.resize and config.resize != spec.preprocessing.resize:
        from spinescan.edge.preprocess import RESIZE_MODES  # noqa: PLC0415

        if config.resize not in RESIZE_MODES:
            raise SpineScanError(f"unknown resize {config.resize!r}; choose one of {', '.join(RESIZE_MODES)}")
        spec = spec.with_preprocessing(resize=config.resize)
    return spec


def _load_data(root: Path, spec: ModelSpec) -> tuple[Dataset, list[Sample]]:
    """The dataset and all samples of the spec's view (every class: the split's domain)."""
    from spinescan.data.datasets import load_dataset  # noqa: PLC0415

    root = Path(root).expanduser()
    if not root.exists():
        hint = (
            " Create synthetic phantoms with `spinescan synth` (writes dataset/phantoms), or pass --data DIR."
            if root.resolve() == DEFAULT_DATA.resolve()
            else " Pass --data DIR pointing at DIR/<class>/*, DIR/<view>/<class>/* or a manifest.csv."
        )
        raise DataError(f"dataset folder not found: {root}.{hint}")
    dataset = load_dataset(root, default_view=spec.view)
    view_samples = dataset.select(view=spec.view).samples
    if not view_samples:
        raise DataError(
            f"no {spec.view}-view images in {root} for model {spec.name!r} "
            f"(views found: {', '.join(dataset.views()) or 'none'})"
        )
    return dataset, view_samples


def _make_split(config: TrainConfig, args: dict[str, Any], view_samples: list[Sample]) -> Split:
    from spinescan.data.splits import make_split  # noqa: PLC0415

    if config.split is not None:
        return config.split
    return make_split(view_samples, args["seed"], args["validation_fraction"], args["test_fraction"])


def resolve_for_matching(config: TrainConfig) -> dict[str, Any]:
    """What :func:`spinescan.training.runs.find_matching_run` compares: arguments, fingerprint, split."""
    spec = _spec_for(config)
    args = resolve_arguments(config, spec)
    _, view_samples = _load_data(Path(config.data), spec)
    split = _make_split(config, args, view_samples)
    return {
        "arguments": args,
        "fingerprint": runs.dataset_fingerprint(view_samples),
        "split_hash": runs.split_hash(split),
    }


# -- distribution --------------------------------------------------------------------------------------


def _cluster_workers() -> int:
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "") or "{}").get("cluster", {})
    except json.JSONDecodeError as exc:
        raise SpineScanError(f"TF_CONFIG is not valid JSON: {exc}") from None
    return sum(len(v) for k, v in cluster.items() if k in ("chief", "worker"))


def make_strategy(name: str) -> tuple[Any, str]:
    """The tf.distribute strategy for ``--strategy`` (created before any other TF work, as
    MultiWorkerMirroredStrategy requires)."""
    tf = require_tensorflow()
    if name == "auto":
        if _cluster_workers() > 1:
            name = "multiworker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            return tf.distribute.get_strategy(), "default"
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(), "mirrored"
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise SpineScanError(
                "--strategy multiworker needs TF_CONFIG (cluster and task) in the environment of every worker"
            )
        implementation = (
            tf.distribute.experimental.CommunicationImplementation.NCCL
            if tf.config.list_physical_devices("GPU")
            else tf.distribute.experimental.CommunicationImplementation.RING
        )
        options = tf.distribute.experimental.CommunicationOptions(implementation=implementation)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options), "multiworker"
    raise SpineScanError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def patch_keras_for_multiworker(model: Any, strategy: Any) -> None:
    """Work around two Keras 3 bugs that break ``fit`` under MultiWorkerMirroredStrategy
    (keras-team/keras#20585, open; TF 2.21 / Keras 3.15 here).

    1. ``fit`` builds its state from a first batch that it ``strategy.reduce``s as one nested
       structure, which the collective strategy cannot do ("Attempt to convert a value
       (PerReplica...)"). Building from this worker's local slice needs no communication.
    2. Each step's logs are reduced with ``strategy.reduce("MEAN", v, axis=0)``, which fails on the
       scalar metric results ("Invalid reduction dimension 0"). Those results come from metric
       variables that are already all-reduced across workers on every update, so the local value
       is the global one: we take it ("first", as Keras does on TPUs).
    """
    tf = require_tensorflow()
    keras = _keras()
    from keras.src.backend.tensorflow import trainer as tf_trainer  # noqa: PLC0415

    def local(value: Any) -> Any:
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> None:
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = keras.tree.map_structure(local, next(it))
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = types.MethodType(maybe_symbolic_build, model)

    original = tf_trainer.reduce_per_replica
    if getattr(original, "_spinescan_patched", False):
        return

    def reduce_per_replica(values: Any, strategy_: Any, reduction: str) -> Any:
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy_):
            reduction = "first"
        return original(values, strategy_, reduction)

    reduce_per_replica._spinescan_patched = True  # type: ignore[attr-defined]
    tf_trainer.reduce_per_replica = reduce_per_replica


def worker_role(strategy: Any) -> tuple[bool, int]:
    """(is_chief, worker index). Outside multi-worker training every process is the chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True, 0
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief)
    return chief, task_id


# -- callbacks -------------------------------------------------------------------------------------------


def _keras() -> Any:
    require_tensorflow()
    import keras  # noqa: PLC0415

    return keras


def _make_recorder(keras: Any) -> type:
    class RunRecorder(keras.callbacks.Callback):
        """History, best checkpoint, time to target and resumable state, one epoch at a time.

        Placed *before* BackupAndRestore, so when a kill lands between the two, the history
        already holds the epoch the backup is about to save; on resume the history is cut back to
        the backup's epoch.
        """

        def __init__(
            self, out_dir: Path, args: dict[str, Any], history: list[dict], state: dict, images_per_epoch: int
        ) -> None:
            super().__init__()
            self.out_dir = out_dir
            self.args = args
            self.history = history
            self.state = state
            self.images_per_epoch = images_per_epoch
            self._t_epoch = self._t_train_end = 0.0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._t_epoch = time.perf_counter()
            self._t_train_end = 0.0

        def on_test_begin(self, logs: dict | None = None) -> None:
            if not self._t_train_end:
                self._t_train_end = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = dict(logs or {})
            now = time.perf_counter()
            seconds = now - self._t_epoch
            train_seconds = (self._t_train_end or now) - self._t_epoch
            self.state["train_seconds"] = self.state.get("train_seconds", 0.0) + seconds
            row = {
                "epoch": epoch + 1,
                "loss": float(logs.get("loss", math.nan)),
                "accuracy": float(logs.get("accuracy", math.nan)),
                "val_loss": float(logs.get("val_loss", math.nan)),
                "val_accuracy": float(logs.get("val_accuracy", math.nan)),
                "learning_rate": float(_current_lr(self.model)),
                "seconds": round(seconds, 3),
                "images_per_second": round(self.images_per_epoch / max(train_seconds, 1e-9), 2),
            }
            self.history.append(row)
            if _update_state(self.state, row, self.args, self.state["train_seconds"]):
                runs.save_model(self.model, self.out_dir)  # atomic: never a half-written best
            runs.write_history(self.out_dir, self.history)
            runs.write_json(self.out_dir, runs.STATE, self.state)

    return RunRecorder


def _make_early_stopping(keras: Any) -> type:
    class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
        """Keras' EarlyStopping whose patience counter survives ``--resume``."""

        def __init__(self, resume_best: float | None, resume_wait: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._resume_best, self._resume_wait = resume_best, resume_wait

        def on_train_begin(self, logs: dict | None = None) -> None:
            super().on_train_begin(logs)
            if self._resume_best is not None:
                self.best, self.wait = self._resume_best, self._resume_wait

    return ResumableEarlyStopping


def _current_lr(model: Any) -> float:
    try:
        return float(np.asarray(model.optimizer.learning_rate))
    except (TypeError, ValueError, AttributeError):
        return math.nan


def _early_stopping_state(history: list[dict], min_epochs: int) -> tuple[float | None, int]:
    """EarlyStopping's (best, wait) after the epochs in ``history`` (only epochs it monitors)."""
    best, wait = None, 0
    for row in history:
        if row["epoch"] - 1 < min_epochs:
            continue
        if best is None or row["val_accuracy"] > best:
            best, wait = row["val_accuracy"], 0
        else:
            wait += 1
    return best, wait


def _keeps(row: dict, state: dict[str, Any], args: dict[str, Any]) -> bool:
    """Whether this epoch's weights become the run's model (one rule for training and resume).

    During the first ``min_epochs`` the latest epoch is kept (BatchNorm statistics are still
    settling, so an early "best" on a small validation set is luck); after that the best by
    validation accuracy, then loss, or with ``checkpoint="last"`` always the latest.
    """
    acc, loss = row["val_accuracy"], row["val_loss"]
    if math.isnan(acc):
        return False
    best, best_epoch = state.get("best_val_accuracy"), state.get("best_epoch")
    if args.get("checkpoint") == "last" or best is None or best_epoch <= args["min_epochs"]:
        return True
    return acc > best or (acc == best and loss < state["best_val_loss"])


def _update_state(state: dict[str, Any], row: dict, args: dict[str, Any], elapsed: float) -> bool:
    """Fold one epoch's history row into the recorder state; True when its weights are kept."""
    keep = _keeps(row, state, args)
    if keep:
        state.update(
            best_val_accuracy=row["val_accuracy"], best_val_loss=row["val_loss"], best_epoch=row["epoch"]
        )
    if state.get("epochs_to_target") is None and row["val_accuracy"] >= args["target_accuracy"]:
        state.update(epochs_to_target=row["epoch"], seconds_to_target=round(elapsed, 3))
    state["epochs_done"] = row["epoch"]
    return keep


def _restore_state(history: list[dict], args: dict[str, Any]) -> dict[str, Any]:
    """The recorder's state rebuilt from the history rows kept on resume."""
    state: dict[str, Any] = {
        "train_seconds": float(sum(r.get("seconds", 0.0) for r in history)),
        "epochs_done": 0,
    }
    elapsed = 0.0
    for row in history:
        elapsed += row.get("seconds", 0.0)
        _update_state(state, row, args, elapsed)
    return state


# -- the run directory --------------------------------------------------------------------------------


@dataclass
class _Prepared:
    run_dir: Path
    run_id: str
    resuming: bool
    args: dict[str, Any]
    split: Split | None
    stored: dict[str, Any] = field(default_factory=dict)  # config.json of a resumed run


def _prepare_run(config: TrainConfig, spec: ModelSpec, args: dict[str, Any], chief: bool) -> _Prepared:
    """Pick the run directory: a new one, or (``--resume``) the interrupted one to continue."""
    from spinescan.data.splits import Split  # noqa: PLC0415

    model_dir = Path(config.runs_dir) / spec.name
    if config.resume:
        run_dir = (
            model_dir / config.run_id
            if config.run_id
            else runs.latest_unfinished_run(config.runs_dir, spec.name)
        )
        if run_dir is not None and (run_dir / runs.CONFIG).is_file():
            stored = json.loads((run_dir / runs.CONFIG).read_text(encoding="utf-8"))
            # The interrupted run's own settings win: resuming with other settings would make
            # the backup invalid (Keras' BackupAndRestore contract).
            resumed_args = {**stored["arguments"], "tensorboard": args["tensorboard"]}
            _note_ignored(config, args, resumed_args)
            split = Split.load(run_dir / runs.SPLIT) if (run_dir / runs.SPLIT).is_file() else None
            return _Prepared(run_dir, run_dir.name, True, resumed_args, split, stored)
        if config.run_id:
            raise SpineScanError(f"cannot resume: {model_dir / config.run_id} is not a run directory")
        _echo(config, f"No interrupted {spec.name} run under {model_dir}; starting a new run.")
    run_id = config.run_id or runs.new_run_id(Path(config.runs_dir), spec.name, args["seed"])
    run_dir = model_dir / run_id
    if chief and (run_dir / runs.CONFIG).is_file():
        raise SpineScanError(f"run {run_dir} already exists; use --resume to continue it or another --run-id")
    return _Prepared(run_dir, run_id, False, args, None)


def _note_ignored(config: TrainConfig, wanted: dict[str, Any], stored: dict[str, Any]) -> None:
    """Say which explicitly given settings a resumed run ignores (its own settings win)."""
    given = {
        "epochs": config.epochs, "batch_size": config.batch_size, "image_size": config.image_size,
        "backbone": config.backbone, "learning_rate": config.learning_rate, "patience": config.patience,
        "min_epochs": config.min_epochs, "augment": config.augment, "target_accuracy": config.target_accuracy,
    }  # fmt: skip
    ignored = [f"{k}={wanted[k]}" for k, v in given.items() if v is not None and wanted[k] != stored.get(k)]
    if ignored:
        _echo(config, f"Resuming with the run's own settings; ignored: {', '.join(ignored)}")


def _echo(config: TrainConfig, message: str) -> None:
    if config.verbose:
        click.echo(message, err=True)


# -- training ------------------------------------------------------------------------------------------


def train(config: TrainConfig) -> RunResult:
    """Train ``config.model`` and leave a complete run directory; see the module docstring."""
    require_tensorflow("Training")  # fail early, naming the 'train' extra
    strategy, strategy_name = make_strategy(config.strategy)
    chief, worker = worker_role(strategy)
    spec = _spec_for(config)
    args = resolve_arguments(config, spec)
    prepared = _prepare_run(config, spec, args, chief)
    args = prepared.args
    if prepared.resuming:
        if runs.is_finished(prepared.run_dir):
            _echo(config, f"Run {prepared.run_dir} already finished; nothing to resume.")
            return RunResult(prepared.run_dir, runs.read_json(prepared.run_dir, runs.METRICS) or {})
        spec = runs.spec_from_config(prepared.stored)  # the spec the run started with

    dataset, view_samples = _load_data(Path(args["data"]), spec)
    if prepared.resuming:
        before = prepared.stored.get("dataset", {}).get("fingerprint")
        if before and before != runs.dataset_fingerprint(view_samples):
            _echo(config, f"Warning: the dataset under {args['data']} changed since this run started.")
    split = prepared.split or _make_split(config, args, view_samples)
    from spinescan.data.datasets import samples_for_spec  # noqa: PLC0415

    samples, skipped = samples_for_spec(
        dataset, spec.view, spec.classes, skip_unreadable=True, progress=config.verbose > 0
    )
    if skipped:
        shown = "; ".join(f"{rel} ({why})" for rel, why in skipped[:3])
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        _echo(config, f"Skipped {len(skipped)} unreadable image(s): {shown}{more}")
    parts = split.assign(samples)
    for part in ("train", "val"):
        if not parts[part]:
            raise DataError(
                f"the {part} split of {spec.name!r} is empty ({len(samples)} usable images); "
                "the dataset is too small for a train/validation/test split"
            )

    out_dir = prepared.run_dir if chief else Path(tempfile.mkdtemp(prefix=f"spinescan-worker{worker}-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    if chief:
        config_doc = {
            "run_id": prepared.run_id,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "arguments": args,
            "spec": spec.summary(),
            "versions": runs.versions(),
            "dataset": {
                "root": args["data"],
                "layout": dataset.layout,
                "fingerprint": runs.dataset_fingerprint(view_samples),
                "view_images": len(view_samples),
            },
            "split_hash": runs.split_hash(split),
            "counts": {p: len(v) for p, v in parts.items()},
            "skipped": [{"file": rel, "reason": why} for rel, why in skipped],
            "strategy": {"name": strategy_name, "replicas": int(strategy.num_replicas_in_sync)},
        }
        if not prepared.resuming:
            runs.write_json(out_dir, runs.CONFIG, config_doc)
            split.save(out_dir / runs.SPLIT)
    try:
        with tempfile.TemporaryDirectory(prefix=".cache-", dir=out_dir.parent) as cache:
            where = (out_dir, Path(cache))
            return _fit_and_record(
                config, spec, args, prepared, parts, (strategy, strategy_name), chief, where
            )
    finally:
        if not chief:
            shutil.rmtree(out_dir, ignore_errors=True)


def _fit_and_record(
    config: TrainConfig,
    spec: ModelSpec,
    args: dict[str, Any],
    prepared: _Prepared,
    parts: dict[str, list[Sample]],
    strategy_and_name: tuple[Any, str],
    chief: bool,
    where: tuple[Path, Path],
) -> RunResult:
    """Load the images, build and fit the model, then evaluate (chief). ``where`` is the output
    directory (the run dir, or a scratch dir on non-chief workers) and the image-cache dir."""
    from spinescan.training import pipeline  # noqa: PLC0415

    tf = require_tensorflow()
    keras = _keras()
    out_dir, cache_dir = where

    strategy, strategy_name = strategy_and_name
    classes = spec.classes
    y = {p: pipeline.encode_labels(parts[p], classes) for p in ("train", "val", "test")}
    progress = config.verbose > 0
    if args["in_memory"]:
        x = {
            p: pipeline.load_arrays(parts[p], spec, progress=progress, label=f"Loading {p} images")
            for p in ("train", "val", "test")
        }
    else:  # file-backed: decoded once into memory-mapped files, paged in by the OS
        x = {
            p: pipeline.cache_arrays(parts[p], spec, cache_dir / f"{p}.npy", progress, f"Caching {p} images")
            for p in ("train", "val", "test")
        }
    weights = pipeline.class_weights(y["train"], len(classes))[y["train"]]
    replicas = int(strategy.num_replicas_in_sync)
    global_batch = args["batch_size"] * replicas
    train_ds = pipeline.make_dataset(
        x["train"],
        y["train"],
        spec,
        global_batch,
        training=True,
        augment=args["augment"],
        sample_weights=weights,
        seed=args["seed"],
    )
    val_ds = pipeline.make_dataset(x["val"], y["val"], spec, global_batch)
    n_train = len(y["train"])
    drop = n_train >= 2 * global_batch  # as make_dataset does for training
    steps = n_train // global_batch if drop else math.ceil(n_train / global_batch)
    images_per_epoch = steps * global_batch if drop else n_train

    gpu = bool(tf.config.list_physical_devices("GPU"))
    previous_policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_float16" if gpu else "float32")
    keras.utils.set_random_seed(args["seed"])
    try:
        with strategy.scope():
            model = spec.build(spec, backbone=args["backbone"], weights=args["weights"])
            if args["init_from"]:
                from spinescan.zoo.backbones import transfer_weights  # noqa: PLC0415

                copied, skipped_layers = transfer_weights(runs.load_model(args["init_from"]), model)
                _echo(
                    config, f"Initialised {copied} layers from {args['init_from']} ({skipped_layers} skipped)"
                )
            model.compile(
                optimizer=keras.optimizers.Adam(learning_rate=_lr(keras, args, steps)),
                loss=keras.losses.SparseCategoricalCrossentropy(),
                metrics=["accuracy"],
                jit_compile="auto" if gpu else False,
            )
        if strategy_name == "multiworker":
            patch_keras_for_multiworker(model, strategy)
        history, state = _history_for_resume(prepared, out_dir, args, chief)
        if state.get("fit_done"):
            _echo(config, "Training had already finished; evaluating the saved best model.")
        else:
            callbacks = _callbacks(
                keras, config, args, prepared, out_dir, history, state, images_per_epoch, chief
            )
            verbose = config.verbose
            if verbose == 1 and not sys.stderr.isatty():
                verbose = 2  # one line per epoch in logs instead of a carriage-return bar
            _echo(
                config,
                f"Training {spec.name} ({args['backbone']}, {model.count_params():,} parameters) on "
                f"{len(y['train'])} images, validating on {len(y['val'])}; run: {prepared.run_dir}",
            )
            try:
                model.fit(
                    train_ds,
                    validation_data=val_ds,
                    epochs=args["epochs"],
                    callbacks=callbacks,
                    verbose=verbose,
                    shuffle=False,
                )  # the dataset shuffles itself
            except KeyboardInterrupt:
                raise TrainingInterrupted(_resume_message(config, args, prepared, state)) from None
            state["fit_done"] = True
            runs.write_json(out_dir, runs.STATE, state)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    if not chief:
        return RunResult(prepared.run_dir, {})
    return _finish(config, spec, args, prepared, parts, x, y, model, history, state)


def _lr(keras: Any, args: dict[str, Any], steps: int) -> Any:
    """Cosine decay with a one-epoch warm-up (stable from scratch), or a constant for plateau."""
    lr, epochs = args["learning_rate"], max(1, args["epochs"])
    if args["lr_schedule"] == "plateau":
        return lr
    warmup = steps if epochs > 2 else 0
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=lr * 0.1 if warmup else lr,
        decay_steps=max(1, steps * epochs - warmup),
        alpha=0.02,
        warmup_target=lr if warmup else None,
        warmup_steps=warmup,
    )


def _history_for_resume(
    prepared: _Prepared, out_dir: Path, args: dict[str, Any], chief: bool
) -> tuple[list[dict], dict[str, Any]]:
    """History and recorder state to continue from: cut back to the backup's last epoch."""
    if not prepared.resuming:
        return [], {}
    if not chief:
        _copy_backup_for_worker(prepared.run_dir, out_dir)
    state = runs.read_json(prepared.run_dir, runs.STATE) or {}
    if state.get("fit_done"):
        return runs.read_history(prepared.run_dir), state
    meta = runs.read_json(prepared.run_dir / runs.BACKUP, "training_metadata.json") or {}
    done = int(meta.get("epoch", 0))
    history = [r for r in runs.read_history(prepared.run_dir) if r["epoch"] <= done]
    return history, _restore_state(history, args)


def _copy_backup_for_worker(run_dir: Path, out_dir: Path) -> None:
    """A non-chief worker restores from the chief's backup when the file system is shared."""
    source = run_dir / runs.BACKUP
    if source.is_dir():
        shutil.copytree(source, out_dir / runs.BACKUP, dirs_exist_ok=True)


def _callbacks(
    keras: Any,
    config: TrainConfig,
    args: dict[str, Any],
    prepared: _Prepared,
    out_dir: Path,
    history: list[dict],
    state: dict[str, Any],
    images_per_epoch: int,
    chief: bool,
) -> list[Any]:
    recorder = _make_recorder(keras)(out_dir, args, history, state, images_per_epoch)
    from spinescan.training.guards import make_guard  # noqa: PLC0415

    callbacks = [
        make_guard(keras),  # first: a non-finite loss stops the run before the recorder saves it
        recorder,
        # Kept after a successful fit (delete_checkpoint=False) until metrics.json is written, so
        # a kill during the final evaluation does not send --resume back to epoch 1.
        keras.callbacks.BackupAndRestore(
            str(out_dir / runs.BACKUP), double_checkpoint=True, delete_checkpoint=False
        ),
    ]
    if args.get("checkpoint") != "last":  # "last" runs the whole schedule
        best, wait = _early_stopping_state(history, args["min_epochs"])
        early = _make_early_stopping(keras)(
            best,
            wait,
            monitor="val_accuracy",
            mode="max",
            patience=args["patience"],
            start_from_epoch=args["min_epochs"],
            # No in-memory copy of the best weights: the recorder saved the kept epoch to disk
            # (best validation accuracy, ties by loss) and _finish evaluates that file.
            restore_best_weights=False,
        )
        callbacks.append(early)
    if args["lr_schedule"] == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=max(2, args["patience"] // 3), min_lr=1e-6
            )
        )
    if args["tensorboard"] and chief:
        callbacks.append(keras.callbacks.TensorBoard(str(prepared.run_dir / "tensorboard")))
    return callbacks


def _resume_message(config: TrainConfig, args: dict[str, Any], prepared: _Prepared, state: dict) -> str:
    done = state.get("epochs_done", 0)
    command = (
        f"spinescan train {args['model']} --resume --run-id {prepared.run_id} "
        f"--runs {config.runs_dir} --data {args['data']}"
    )
    return (
        f"Interrupted after {done} finished epoch(s). The history, the best model so far and the "
        f"training state are saved in {prepared.run_dir}. Resume with: {command}"
    )


def _finish(
    config: TrainConfig,
    spec: ModelSpec,
    args: dict[str, Any],
    prepared: _Prepared,
    parts: dict[str, list[Sample]],
    x: dict[str, Any],
    y: dict[str, np.ndarray],
    model: keras.Model,
    history: list[dict],
    state: dict[str, Any],
) -> RunResult:
    """Evaluate the *saved* best model (inference mode) and write the remaining run files."""
    run_dir = prepared.run_dir
    if not (run_dir / runs.MODEL).is_file():  # zero epochs: keep what we have
        runs.save_model(model, run_dir)
    best = runs.load_model(run_dir)
    if any(layer.dtype_policy.name != "float32" for layer in best.layers):
        best = _to_float32(best, spec, args)
        runs.save_model(best, run_dir)
    batch = max(32, args["batch_size"])
    results: dict[str, Any] = {}
    predictions = {}
    for part in ("val", "test"):
        probs = runs.predict_arrays(best, x[part], batch)
        results[part] = runs.summarize_predictions(y[part], probs, spec.classes)
        predictions[part] = ([s.rel for s in parts[part]], [s.label for s in parts[part]], probs)
    runs.write_predictions(run_dir, spec.classes, predictions)
    history = history or runs.read_history(run_dir)
    runs.plot_curves(run_dir, history, title=f"{spec.name} ({args['backbone']}) {prepared.run_id}")
    speeds = [r["images_per_second"] for r in history[1:] if r.get("images_per_second")]
    metrics = {
        "finished": True,
        "model": spec.name,
        "run_id": prepared.run_id,
        "val": results["val"],
        "test": results["test"],
        "best_epoch": state.get("best_epoch"),
        "best_val_accuracy_during_training": state.get("best_val_accuracy"),
        "epochs_run": len(history),
        "train_seconds": round(float(state.get("train_seconds", 0.0)), 3),
        "train_images_per_second": round(float(np.median(speeds)), 2) if speeds else None,
        "target_accuracy": args["target_accuracy"],
        "epochs_to_target": state.get("epochs_to_target"),
        "seconds_to_target": state.get("seconds_to_target"),
        "params": int(best.count_params()),
        "backbone": args["backbone"],
        "weights": args["weights"],
        "classes": list(spec.classes),
        "counts": {p: len(v) for p, v in parts.items()},
    }
    runs.write_json(run_dir, runs.METRICS, metrics)
    shutil.rmtree(run_dir / runs.BACKUP, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (run_dir / runs.STATE).unlink()
    return RunResult(run_dir, metrics)


def _to_float32(model: keras.Model, spec: ModelSpec, args: dict[str, Any]) -> keras.Model:
    """The same weights in an all-float32 model: mixed-precision (GPU) runs must still export and
    run on CPU predictors in float32. Variables are float32 under mixed precision, so this is exact."""
    keras = _keras()
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("float32")
    try:
        clean = spec.build(spec, backbone=args["backbone"], weights=None)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    clean.set_weights(model.get_weights())
    return clean


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """JSON-ready TrainConfig (paths as strings, the split as its dict)."""
    out = asdict(config)
    out["split"] = config.split.to_dict() if config.split is not None else None
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in out.items()}
