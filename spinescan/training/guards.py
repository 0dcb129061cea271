"""Stop training the moment it goes non-finite, before a poisoned model can be recorded.

A NaN loss never recovers: every later weight update is NaN too, and the run recorder would
save the NaN weights as the "best" model (a NaN accuracy compares false with everything, so the
last epoch wins), write ``Finished`` and exit 0. :func:`make_guard` builds a Keras callback that
is placed *first* in the callback list, so on every batch and every epoch end it runs before the
recorder and ``BackupAndRestore``: the last saved model and backup stay the last finite ones.

The image reader already refuses non-finite pixels; this guard covers what remains (a learning
rate that diverges, a plugin's custom loss, a broken backbone).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from spinescan.errors import SpineScanError

#: Logged values whose non-finiteness ends the run (training and validation losses).
WATCHED = ("loss", "val_loss")


class NonFiniteTrainingError(SpineScanError):
    """Training produced a NaN or infinite loss or weight; the run is stopped, nothing recorded."""


def _scalar(value: Any) -> float | None:
    try:
        return float(np.asarray(value, dtype=np.float64).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return None


def first_non_finite(
    logs: dict[str, Any] | None, keys: tuple[str, ...] = WATCHED
) -> tuple[str, float] | None:
    """The first watched log value that is NaN or infinite, as ``(key, value)``, else ``None``."""
    for key in keys:
        if logs and key in logs:
            value = _scalar(logs[key])
            if value is not None and not math.isfinite(value):
                return key, value
    return None


def _advice(where: str, what: str) -> str:
    return (
        f"training stopped: {what} at {where}; the model of the last finite epoch (if any) is kept "
        "and no model of this epoch was recorded. Check the data with `spinescan data check` or "
        "lower the learning rate (--lr)"
    )


def make_guard(keras: Any) -> Any:
    """A ``keras.callbacks.Callback`` instance raising :class:`NonFiniteTrainingError` on the first
    non-finite training loss (per batch), validation loss or weight (per epoch)."""

    class NonFiniteGuard(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch = epoch

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            bad = first_non_finite(logs, ("loss",))
            if bad:
                raise NonFiniteTrainingError(
                    _advice(f"epoch {self.epoch + 1}, batch {batch + 1}", f"{bad[0]} is {bad[1]}")
                )

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            bad = first_non_finite(logs)
            if bad:
                raise NonFiniteTrainingError(
                    _advice(f"the end of epoch {epoch + 1}", f"{bad[0]} is {bad[1]}")
                )
            for weight in self.model.weights:
                if not np.all(np.isfinite(np.asarray(weight))):
                    raise NonFiniteTrainingError(
                        _advice(f"the end of epoch {epoch + 1}", f"weight {weight.path} is not finite")
                    )

    return NonFiniteGuard()
