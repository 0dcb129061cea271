"""The training loop's Keras callbacks, and the one rule for which epoch a run keeps.

:func:`assemble_callbacks` is the single place where the loop's callbacks are put together (add a
callback there). :func:`keeps` decides whether an epoch's weights become the run's model; it serves
training and ``--resume`` alike (``restore_state`` replays it over the kept history).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from spinescan.training.inference import save_model
from spinescan.training.runs import RunDir
from spinescan.zoo.hparams import HParams


@dataclass(frozen=True)
class RecorderSetup:
    """What the recorder needs besides the mutable history and state it appends to."""

    out: RunDir  # the run dir (chief) or a scratch dir (other workers)
    hparams: HParams
    images_per_epoch: int
    steps_per_epoch: int = 1


def _make_recorder(keras: Any) -> type:
    class RunRecorder(keras.callbacks.Callback):
        """History, kept checkpoint, time to target and resumable state, one epoch at a time.

        Placed *before* BackupAndRestore, so when a kill lands between the two, the history
        already holds the epoch the backup is about to save; on resume the history is cut back to
        the backup's epoch.
        """

        def __init__(self, setup: RecorderSetup, history: list[dict], state: dict) -> None:
            super().__init__()
            self.setup, self.history, self.state = setup, history, state
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
                **{k: float(logs.get(k, math.nan)) for k in ("loss", "accuracy", "val_loss", "val_accuracy")},
                "learning_rate": float(_current_lr(self.model)),
                "seconds": round(seconds, 3),
                "images_per_second": round(self.setup.images_per_epoch / max(train_seconds, 1e-9), 2),
            }
            self.history.append(row)
            out = self.setup.out
            if update_state(self.state, row, self.setup.hparams, self.state["train_seconds"]):
                save_model(self.model, out.path)  # atomic: never a half-written model
            out.write_history(self.history)
            out.write_json(RunDir.STATE, self.state)

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


def stall_check_epoch(hp: HParams, steps_per_epoch: int) -> int | None:
    """The epoch (1-based) after which the stalled-start check runs, or None when it does not.

    The first epoch by whose end ``restart_check_steps`` optimizer steps have run: counted in steps
    rather than epochs because a plateau is a matter of updates, so the same setting suits a
    2,000-film and a 20,000-film dataset. None when ``restart_below`` is 0, when no restart is
    allowed, or when the check would leave fewer epochs after it than before it (a restart would
    not have the time to pay off; this also keeps tiny test runs from restarting).
    """
    if hp.restart_below <= 0 or hp.max_restarts <= 0:
        return None
    epoch = math.ceil(hp.restart_check_steps / max(1, steps_per_epoch))
    return epoch if 2 * epoch <= hp.epochs else None


def _make_stall_check(keras: Any) -> type:
    class StalledStart(keras.callbacks.Callback):
        """Stops the fit when validation accuracy at the check epoch is below ``restart_below``.

        It only marks ``state["stalled"]`` and stops; the loop discards the attempt and starts a
        new one (:func:`spinescan.training.loop`), so this callback never touches the files.
        """

        def __init__(self, setup: RecorderSetup, state: dict) -> None:
            super().__init__()
            self.hp, self.state = setup.hparams, state
            self.check_epoch = stall_check_epoch(setup.hparams, setup.steps_per_epoch)
            self.steps_per_epoch = setup.steps_per_epoch

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if self.check_epoch is None or epoch + 1 != self.check_epoch:
                return
            accuracy = float((logs or {}).get("val_accuracy", math.nan))
            if len(self.state.get("restarts", [])) >= self.hp.max_restarts:
                return
            if math.isnan(accuracy) or accuracy < self.hp.restart_below:
                self.state["stalled"] = {
                    "epoch": epoch + 1,
                    "steps": (epoch + 1) * self.steps_per_epoch,
                    "val_accuracy": None if math.isnan(accuracy) else round(accuracy, 4),
                }
                self.model.stop_training = True

    return StalledStart


def _current_lr(model: Any) -> float:
    try:
        return float(np.asarray(model.optimizer.learning_rate))
    except (TypeError, ValueError, AttributeError):
        return math.nan


def early_stopping_state(history: list[dict], min_epochs: int) -> tuple[float | None, int]:
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


def keeps(row: dict, state: dict[str, Any], hp: HParams) -> bool:
    """Whether this epoch's weights become the run's model (one rule for training and resume).

    With ``checkpoint="last"`` always the latest epoch. With ``"best"``: during the first
    ``min_epochs`` the latest epoch (BatchNorm statistics are still settling, so an early "best"
    on a small validation set is luck); after that the best by validation accuracy, then loss.
    """
    acc, loss = row["val_accuracy"], row["val_loss"]
    if math.isnan(acc):
        return False
    kept, kept_epoch = state.get("kept_val_accuracy"), state.get("kept_epoch")
    if hp.checkpoint == "last" or kept is None or kept_epoch <= hp.min_epochs:
        return True
    return acc > kept or (acc == kept and loss < state["kept_val_loss"])


def update_state(state: dict[str, Any], row: dict, hp: HParams, elapsed: float) -> bool:
    """Fold one epoch's history row into the recorder state; True when its weights are kept."""
    keep = keeps(row, state, hp)
    if keep:
        state.update(
            kept_val_accuracy=row["val_accuracy"], kept_val_loss=row["val_loss"], kept_epoch=row["epoch"]
        )
    if state.get("epochs_to_target") is None and row["val_accuracy"] >= hp.target_accuracy:
        state.update(epochs_to_target=row["epoch"], seconds_to_target=round(elapsed, 3))
    state["epochs_done"] = row["epoch"]
    return keep


def restore_state(history: list[dict], hp: HParams, restarts: list[dict] | None = None) -> dict[str, Any]:
    """The recorder's state rebuilt from the history rows kept on resume, after ``restarts``
    (discarded stalled attempts, whose time still counts towards the run's training time)."""
    restarts = list(restarts or [])
    spent = float(restarts[-1]["seconds"]) if restarts else 0.0
    state: dict[str, Any] = {
        "train_seconds": spent + float(sum(r.get("seconds", 0.0) for r in history)),
        "epochs_done": 0,
    }
    if restarts:
        state["restarts"] = restarts
    elapsed = spent
    for row in history:
        elapsed += row.get("seconds", 0.0)
        update_state(state, row, hp, elapsed)
    return state


#: What the ``accuracy`` metric is called in a task's training log. The metric keeps the name
#: ``accuracy`` inside Keras and history.csv (the kept-epoch rule and early stopping read it), but a
#: landmark model's is PCK, and a log line saying "accuracy: 0.41" for it misleads.
LOG_NAMES = {"landmarks": {"accuracy": "pck", "val_accuracy": "val_pck"}}


def epoch_line(epoch: int, epochs: int, logs: dict[str, Any], seconds: float, names: dict[str, str]) -> str:
    """One epoch of the training log, as Keras' ``verbose=2`` writes it, metrics renamed by ``names``."""
    shown = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in logs]
    shown += [k for k in logs if k not in shown and k not in ("learning_rate", "lr")]
    parts = [f"{names.get(k, k)}: {float(logs[k]):.4f}" for k in shown]
    return " - ".join([f"Epoch {epoch}/{epochs}", f"{seconds:.0f}s", *parts])


def _make_epoch_log(keras: Any) -> type:
    class EpochLog(keras.callbacks.Callback):
        """The per-epoch log line with the task's metric names (the fit itself runs silent)."""

        def __init__(self, epochs: int, names: dict[str, str]) -> None:
            super().__init__()
            self.epochs, self.names, self._t = epochs, names, 0.0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            seconds = time.perf_counter() - self._t
            print(epoch_line(epoch + 1, self.epochs, dict(logs or {}), seconds, self.names), flush=True)

    return EpochLog


def epoch_log(keras: Any, task: str, epochs: int) -> Any | None:
    """A callback that writes the epoch log with ``task``'s metric names, or None where Keras' own
    log already names them right (classifiers)."""
    names = LOG_NAMES.get(task)
    return None if names is None else _make_epoch_log(keras)(epochs, names)


def assemble_callbacks(
    keras: Any, setup: RecorderSetup, history: list[dict], state: dict[str, Any], tensorboard: RunDir | None
) -> list[Any]:
    """Every callback of a fit, in order. ``tensorboard``: where its logs go (chief only), or None."""
    from spinescan.training.guards import make_guard

    hp = setup.hparams
    callbacks = [
        make_guard(keras),  # first: a non-finite loss stops the run before the recorder saves it
        _make_recorder(keras)(setup, history, state),
        # Kept after a successful fit (delete_checkpoint=False) until metrics.json is written, so
        # a kill during the final evaluation does not send --resume back to epoch 1.
        keras.callbacks.BackupAndRestore(
            str(setup.out.backup_dir), double_checkpoint=True, delete_checkpoint=False
        ),
    ]
    if stall_check_epoch(hp, setup.steps_per_epoch) is not None:
        callbacks.append(_make_stall_check(keras)(setup, state))
    if hp.checkpoint != "last":  # "last" runs the whole schedule
        best, wait = early_stopping_state(history, hp.min_epochs)
        early = _make_early_stopping(keras)(
            best,
            wait,
            monitor="val_accuracy",
            mode="max",
            patience=hp.patience,
            start_from_epoch=hp.min_epochs,
            # No in-memory copy of the best weights: the recorder saved the kept epoch to disk
            # (best validation accuracy, ties by loss) and the loop evaluates that file.
            restore_best_weights=False,
        )
        callbacks.append(early)
    if hp.lr_schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=max(2, hp.patience // 3), min_lr=1e-6
            )
        )
    if tensorboard is not None:
        callbacks.append(keras.callbacks.TensorBoard(str(tensorboard.file(RunDir.TENSORBOARD))))
    return callbacks
