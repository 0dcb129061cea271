"""Spine Scan: classify spinal radiographs with a plugin model zoo and edge export.

The package root stays light: it imports neither TensorFlow nor onnxruntime, so that
``import spinescan`` is cheap on any install.
"""

from __future__ import annotations

from typing import Any

from spinescan.zoo.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl", "predict_image"]


def predict_image(
    path: str, model: str = "generalist", models_dir: str | None = None, heatmap: bool = False
) -> Any:
    """Classify one image with an exported ONNX model, without TensorFlow.

    Mirrors the original notebook's ``predict_image(image_path, model)``; see
    :func:`spinescan.edge.predictor.predict_image`.
    """
    from spinescan.edge.predictor import predict_image as _predict

    return _predict(path, model=model, models_dir=models_dir, heatmap=heatmap)
