"""What explains a prediction, film by film: a classifier's class activation map (its heatmap entry
and overlay PNG), a landmark model's landmarks, end-vertebra lines and angles drawn on the film.
The predictor (:mod:`spinescan.edge.predictor`) takes this path when heatmaps or overlays are asked for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from spinescan.edge.guard import skipped_entry
from spinescan.edge.landmark_overlay import write_overlay
from spinescan.edge.onnxmodel import OnnxModel
from spinescan.radiograph.preprocess import film_placement


def explain_film(
    path: Path,
    image: np.ndarray,
    models: list[OnnxModel],
    heatmap: bool,
    overlay_dir: Path | None,
    written: set[str],
    skip: list[str | None] | None = None,
) -> Iterator[dict[str, Any]]:
    """One film through every model with what explains its answer: a classifier's class activation
    map, a landmark model's landmarks and angle lines. Heatmap entries and overlay PNGs need the
    decoded film, so this path runs film by film: memory stays one decoded image. ``skip``: per
    model, the view guard's reason not to run it (:func:`spinescan.edge.predictor._plan`)."""
    for model, why in zip(models, skip or [None] * len(models), strict=True):
        if why:
            yield {"image": str(path), **skipped_entry(model, why)}
            continue
        if model.info.task == "landmarks":
            yield _explain_landmarks(path, image, model, overlay_dir, written)
            continue
        try:
            probs, cam = model.predict_cam(model.prepare(image)[0][None])
        except Exception as exc:  # onnxruntime errors: report, keep going
            first = (str(exc).strip().splitlines() or [""])[0]
            failed = f"{path}: {model.name}: inference failed ({first})"
            yield {"image": str(path), "model": model.name, "error": failed}
            continue
        if not np.all(np.isfinite(probs[0])):
            yield {
                "image": str(path),
                "model": model.name,
                "error": f"{path}: {model.name} gave non-finite probabilities (a broken model)",
            }
            continue
        result = {"image": str(path), **model.result(probs[0])}
        entry = model.heatmap(image, probs[0], None if cam is None else cam[0])
        if overlay_dir is not None:
            result["overlay"] = _write_overlay(overlay_dir, path, image, model, result, entry, written)
        if heatmap:
            result["heatmap"] = entry
        yield result


def _explain_landmarks(
    path: Path, image: np.ndarray, model: OnnxModel, overlay_dir: Path | None, written: set[str]
) -> dict[str, Any]:
    """A landmark model's entry for one film, with its overlay (landmarks, end-vertebra lines and
    angles drawn on the film) when ``overlay_dir`` is given."""
    try:
        x, context = model.prepare(image)
        out = model.predict(x[None])[0]
        reading = model.read(out, context)
    except Exception as exc:  # onnxruntime errors: report, keep going
        first = (str(exc).strip().splitlines() or [""])[0]
        failed = f"{path}: {model.name}: inference failed ({first})"
        return {"image": str(path), "model": model.name, "error": failed}
    result = {"image": str(path), **model.result(out, context, reading)}
    if overlay_dir is not None:
        target = overlay_dir / overlay_name(path, model, written)
        try:
            result["overlay"] = str(write_overlay(image, reading, target))
        except OSError as exc:  # a failed drawing must not lose the measurement
            result["overlay_error"] = f"{target}: {exc}"
    return result


def overlay_name(path: Path, model: OnnxModel, written: set[str]) -> str:
    """``<film stem>.<model>.png``, with ``-2``, ``-3``... when film names repeat in one call."""
    stem = path.stem if path.stem else "image"
    name, n = f"{stem}.{model.name}.png", 1
    while name in written:
        n += 1
        name = f"{stem}-{n}.{model.name}.png"
    written.add(name)
    return name


def _write_overlay(
    folder: Path,
    path: Path,
    image: np.ndarray,
    model: OnnxModel,
    result: dict[str, Any],
    entry: dict[str, Any],
    written: set[str],
) -> str | None:
    """``<folder>/<film stem>.<model>.png`` (``-2``, ``-3``... when stems repeat): the film with
    its predicted class's heatmap."""
    from spinescan.edge import overlay

    caption = [f"{model.name}: {result['label']} p={result['probabilities'][result['label']]:.3f}"]
    heat = None
    if "grid" in entry:
        placement = film_placement(image, model.info.input_size, model.info.preprocessing)
        cam = np.asarray(entry["cam"], dtype=np.float32)
        heat = overlay.film_heatmap(cam, placement, image.shape[:2], model.info.input_size[:2])
        caption.append(f"{entry['class']} {overlay.DISCLAIMER}")
    else:
        caption.append(entry.get("error", "no heatmap"))
    target = folder / overlay_name(path, model, written)
    try:
        overlay.write_png(target, overlay.render(image, heatmap=heat, caption=caption))
    except OSError as exc:
        result["overlay_error"] = f"{target}: {exc}"
        return None
    return str(target)
