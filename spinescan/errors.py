"""Exceptions that the CLI turns into one-line messages instead of tracebacks.

Anything a user can cause (a missing folder, an unknown model, bad data) raises a subclass of
:class:`SpineScanError`; everything else is a bug and is allowed to show its traceback.
"""

from __future__ import annotations


class SpineScanError(Exception):
    """A user-facing error: the message is printed as is and the command exits non-zero."""

    exit_code = 1

    def _render_traceback_(self) -> list[str]:
        """IPython/Jupyter show this instead of a traceback: the one line that says what to do
        (a notebook calling ``spinescan.predict_image`` before anything is exported)."""
        return [f"{type(self).__name__}: {self}"]


class PluginError(SpineScanError):
    """A plugin could not be loaded or registered something invalid."""


class SpecError(SpineScanError):
    """A model spec is malformed (raised at registration, so the culprit plugin is named)."""


class DataError(SpineScanError):
    """The dataset cannot be used as asked (missing folder, empty class, conflicting labels)."""


class ImageReadError(SpineScanError):
    """One image could not be read; callers usually record it and carry on."""


class ModelRefusedError(SpineScanError):
    """An ONNX file that must not be used: unreadable, not ours, or not the file the manifest lists."""


class MissingExtraError(SpineScanError):
    """An optional dependency group is not installed."""

    def __init__(self, extra: str, module: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs '{module}', which is not installed. "
            f"Install the '{extra}' extra: pip install 'spinescan[{extra}]'"
        )
        self.extra = extra
        self.module = module


def require_tensorflow(purpose: str = "Training"):
    """Import TensorFlow on demand, turning its absence into a message naming the extra.

    TensorFlow is heavy and absent from the edge install, so it is never imported at module
    level anywhere in the package.
    """
    try:
        import tensorflow as tf
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingExtraError("train", "tensorflow", purpose) from exc
    return tf
