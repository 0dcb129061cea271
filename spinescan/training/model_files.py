"""Load a ``model.keras`` file as a user-facing operation: one line for every way it can fail.

``export --run`` and ``train --init-from`` read model files that may come from elsewhere. Keras
answers a truncated archive with "File not found" or a zipfile traceback, and a file holding a
``Lambda`` layer (arbitrary Python code) with a multi-paragraph ValueError from safe mode. Safe
mode stays on; this module only turns each failure into a :class:`~spinescan.errors.SpineScanError`
that names the file and the reason.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from spinescan.errors import SpineScanError


class ModelFileError(SpineScanError):
    """A ``model.keras`` that cannot or must not be loaded."""


def check_archive(path: Path) -> None:
    """Refuse a file that is not a complete ``.keras`` archive (zip with config and weights)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            bad = archive.testzip()  # CRC of every member: catches truncation and bit flips
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise ModelFileError(
            f"{path}: not a complete .keras model file ({exc}); it may be truncated"
        ) from None
    if bad is not None:
        raise ModelFileError(f"{path}: corrupt .keras model file (member {bad} fails its checksum)")
    if "config.json" not in names:
        raise ModelFileError(f"{path}: not a .keras model file (no config.json inside)")


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def load_keras_safely(keras: Any, path: str | Path) -> Any:
    """``keras.models.load_model(path, compile=False, safe_mode=True)`` with one-line failures."""
    path = Path(path)
    check_archive(path)
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for bad files
        text = str(exc)
        if "Lambda" in text or "safe_mode" in text or "unsafe" in text.lower():
            raise ModelFileError(
                f"{path}: refused by Keras safe mode (the file contains Python code, e.g. a Lambda "
                "layer); only models trained by spinescan can be loaded"
            ) from None
        raise ModelFileError(
            f"{path}: cannot load the model ({type(exc).__name__}: {_first_line(exc)})"
        ) from None
