"""Does the exported file compute what the trained model computes? The images a run is checked
on (its own split, read as the predictor reads them) and the comparisons of Keras against
onnxruntime for probabilities, class activation maps and landmark points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spinescan.errors import ImageReadError
from spinescan.export.onnx_convert import ExportError
from spinescan.radiograph.imageio import read_image
from spinescan.radiograph.preprocess import preprocess

if TYPE_CHECKING:
    from spinescan.data.datasets import Sample
    from spinescan.edge.onnxmodel import OnnxModel
    from spinescan.training.runs import Run
    from spinescan.zoo.spec import ModelSpec

PARITY_TOLERANCE = 1e-4
PARITY_IMAGES = 64
#: Largest Keras-vs-onnxruntime landmark difference accepted, in model-input pixels.
LANDMARK_PARITY_PX = 0.05


# --- images of the run's split ------------------------------------------------------------------


@dataclass
class SplitImages:
    """Preprocessed images of one part of the run's split, with their labels (class indices)."""

    part: str
    files: list[str]
    x: np.ndarray
    y: np.ndarray
    skipped: list[str] = field(default_factory=list)


def split_samples(run: Run, data: str | Path | None = None) -> dict[str, list[Sample]]:
    """The run's train/val/test samples, found in the dataset its ``config.json`` names (or ``data``)."""
    from spinescan.data.datasets import load_dataset

    if run.split is None:
        raise ExportError(
            f"{run.dir} has no split.json; cannot find its validation images for the parity check"
        )
    root = Path(data) if data else Path(run.config.dataset.root)
    if not str(root) or not root.is_dir():
        raise ExportError(
            f"the run's dataset {str(root)!r} is not available; the parity check needs the run's own "
            "images (pass --data DIR if the dataset moved)"
        )
    spec = run.spec
    dataset = load_dataset(root, default_view=spec.view).select(view=spec.view, classes=spec.classes)
    return run.split.assign(dataset.samples)


def load_images(
    samples: Sequence[Sample], spec: ModelSpec, part: str, limit: int | None = None
) -> SplitImages:
    """Decode and preprocess (the shared functions) up to ``limit`` samples; unreadable ones are skipped."""
    index = {c: i for i, c in enumerate(spec.classes)}
    xs, ys, files, skipped = [], [], [], []
    for sample in samples:
        if limit is not None and len(xs) >= limit:
            break
        try:
            xs.append(preprocess(read_image(sample.path), spec.input_size, spec.preprocessing))
        except ImageReadError:
            skipped.append(sample.rel)
            continue
        ys.append(index[sample.label])
        files.append(sample.rel)
    x = np.stack(xs) if xs else np.zeros((0, *spec.input_size), dtype=np.float32)
    return SplitImages(part, files, x, np.asarray(ys, dtype=int), skipped)


def spread_samples(samples: Sequence[Sample], limit: int) -> list[Sample]:
    """Up to ``limit`` samples taken evenly across the (label-sorted) list, so every class is seen."""
    ordered = sorted(samples, key=lambda s: (s.label, s.rel))
    if len(ordered) <= limit:
        return ordered
    picks = np.linspace(0, len(ordered) - 1, limit).round().astype(int)
    return [ordered[i] for i in dict.fromkeys(picks.tolist())]


def parity_images(
    parts: dict[str, list[Sample]], spec: ModelSpec, limit: int = PARITY_IMAGES
) -> tuple[SplitImages, str]:
    """Validation images for the parity check; test, then training images only if there are none."""
    for part in ("val", "test", "train"):
        images = load_images(spread_samples(parts.get(part, []), limit), spec, part)
        if len(images.x):
            note = (
                ""
                if part == "val"
                else f"The run has no readable validation images; {part} images were used."
            )
            return images, note
    raise ExportError("the run's split has no readable image for the parity check")


# --- checks -----------------------------------------------------------------------------------


def parity_check(
    keras_probs: np.ndarray, onnx_probs: np.ndarray, tolerance: float = PARITY_TOLERANCE
) -> dict[str, Any]:
    """Compare two probability arrays: max |Δp| and whether every argmax is identical.

    An image whose two best classes are within ``tolerance`` of each other in the Keras output
    is a tie: either argmax is faithful there, so it is counted (``ties``) but cannot fail the
    check. Any other argmax difference fails it.
    """
    if keras_probs.shape != onnx_probs.shape:
        raise ExportError(f"Keras gives shape {keras_probs.shape}, onnxruntime {onnx_probs.shape}")
    diff = float(np.max(np.abs(keras_probs - onnx_probs))) if keras_probs.size else 0.0
    differs = keras_probs.argmax(axis=1) != onnx_probs.argmax(axis=1)
    top2 = np.sort(keras_probs, axis=1)[:, -2:] if keras_probs.size else np.zeros((0, 2))
    tie = (top2[:, 1] - top2[:, 0]) <= tolerance
    same = not bool(np.any(differs & ~tie))
    return {
        "images": len(keras_probs),
        "max_abs_diff": diff,
        "argmax_identical": same,
        "ties": int(np.sum(tie)),
        "tolerance": tolerance,
        "passed": bool(diff <= tolerance and same),
    }


def cam_parity(
    model: Any, onnx_model: OnnxModel, x: np.ndarray, tolerance: float = PARITY_TOLERANCE
) -> dict[str, Any]:
    """Keras' class activation maps against the ONNX ``cam`` output on the same images.

    CAM values are logit-scale, so the limit is relative: max |Δ| <= tolerance x max(1, max |cam|).
    """
    from spinescan.export.onnx_convert import with_cam

    two, _ = with_cam(model)
    keras_cam = np.asarray(two.predict(x, verbose=0)["cam"]) if len(x) else np.zeros((0,))
    _, onnx_cam = onnx_model.predict_cam(x)
    if onnx_cam is None or keras_cam.shape != onnx_cam.shape:
        shape = None if onnx_cam is None else onnx_cam.shape
        raise ExportError(f"CAM shapes differ: Keras {keras_cam.shape}, onnxruntime {shape}")
    diff = float(np.max(np.abs(keras_cam - onnx_cam))) if keras_cam.size else 0.0
    scale = max(1.0, float(np.max(np.abs(keras_cam)))) if keras_cam.size else 1.0
    return {"max_abs_diff": diff, "scale": scale, "tolerance": tolerance, "passed": diff <= tolerance * scale}


def landmark_parity(keras_out: np.ndarray, onnx_out: np.ndarray, input_hw: tuple[int, int]) -> dict[str, Any]:
    """Compare two landmark outputs (N, K, >= 3): the largest point difference in input pixels, and
    whether every point's visible/not-visible decision agrees (a logit within 1e-3 of 0 is a tie)."""
    if keras_out.shape != onnx_out.shape:
        raise ExportError(f"Keras gives shape {keras_out.shape}, onnxruntime {onnx_out.shape}")
    scale = np.array([input_hw[1], input_hw[0]], dtype=np.float64)
    diff = float(np.max(np.abs(keras_out[..., :2] - onnx_out[..., :2]) * scale)) if keras_out.size else 0.0
    k_vis, o_vis = keras_out[..., 2] > 0, onnx_out[..., 2] > 0
    tie = np.abs(keras_out[..., 2]) <= 1e-3
    same = not bool(np.any((k_vis != o_vis) & ~tie))
    return {
        "images": len(keras_out),
        "max_abs_diff": diff,
        "unit": "input pixels",
        "argmax_identical": same,  # here: identical visibility decisions
        "ties": int(np.sum(tie)),
        "tolerance": LANDMARK_PARITY_PX,
        "passed": bool(diff <= LANDMARK_PARITY_PX and same),
    }
