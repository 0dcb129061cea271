"""``--device cpu|gpu|auto`` for the commands that run TensorFlow (train, tune, bench, export).

Why a module of its own: the choice must take effect before TensorFlow initialises its devices,
so the command line applies it while parsing (an option callback), before any model is built.
``cpu`` hides the GPUs (``CUDA_VISIBLE_DEVICES=-1`` before TensorFlow is imported, or
``tf.config.set_visible_devices`` after); ``gpu`` is a promise the user asked for, so a machine
where TensorFlow sees no GPU (the ``train`` extra installs ``tensorflow-cpu``) is one clear error
rather than a silent CPU run; ``auto`` is TensorFlow's own behaviour (the GPU when there is one).
"""

from __future__ import annotations

import os
import sys

from spinescan.errors import SpineScanError, require_tensorflow

DEVICES = ("cpu", "gpu", "auto")


def select_tf_device(device: str) -> None:
    """Make TensorFlow run on ``device`` (see the module docstring); raise when it cannot."""
    if device not in DEVICES:
        raise SpineScanError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")
    if device == "auto":
        return
    if device == "cpu":
        if "tensorflow" not in sys.modules:
            os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
            return
        tf = sys.modules["tensorflow"]
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:  # devices already initialised: nothing can change now
            if tf.config.get_visible_devices("GPU"):
                raise SpineScanError("--device cpu: TensorFlow already started on the GPU") from None
        return
    tf = require_tensorflow()
    if not tf.config.list_physical_devices("GPU"):
        raise SpineScanError(
            "--device gpu: TensorFlow sees no GPU here (the train extra installs tensorflow-cpu); "
            "install a CUDA build of TensorFlow with its driver, or use --device cpu"
        )
