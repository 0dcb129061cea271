"""Draw what a model looked at over the original film: class heatmaps now, landmarks later.

Part of the light "predictor island" (numpy and OpenCV only, never TensorFlow). A model sees the
film through :func:`spinescan.radiograph.preprocess.preprocess`: grey, optionally cut to a window around
the spine (``spine_crop``), then letterboxed into the input size. A map on the model's input grid
therefore sits on the film only after that geometry is undone: the film's
:class:`~spinescan.radiograph.preprocess.Placement` (:func:`~spinescan.radiograph.preprocess.film_placement`,
the crop window in film pixels and the letterbox box in input pixels, computed by the very
functions ``preprocess`` uses) records it, and :func:`input_to_film` maps an input-space map back
onto the film.

:func:`render` takes a film and any of a heatmap (film-sized, values in [0, 1], NaN where the model
saw nothing) and landmarks / line segments (film pixels), so a landmark model can reuse it.

Heatmaps here are a *quality check* (did the model look at the spine or at a marker?), not a
claim that the model localises disease (Saporta et al., Nature Machine Intelligence 2022).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from spinescan.radiograph.preprocess import Placement, Preprocessing, scale_intensity, to_grey

#: Shown with every heatmap, on the image and in the page.
DISCLAIMER = "heatmap: a quality check, not a localisation claim"


def normalise_cam(cam: np.ndarray) -> np.ndarray:
    """Grad-CAM display convention: ReLU, then divided by the maximum (all zeros if none > 0)."""
    heat = np.maximum(np.asarray(cam, dtype=np.float32), 0.0)
    peak = float(heat.max()) if heat.size else 0.0
    return heat / peak if peak > 0 else np.zeros_like(heat)


def grid_to_input(grid: np.ndarray, input_hw: Sequence[int]) -> np.ndarray:
    """Bilinear upsampling of a feature-grid map to the model input (cell centres line up)."""
    h, w = int(input_hw[0]), int(input_hw[1])
    return cv2.resize(np.ascontiguousarray(grid, dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)


def input_to_film(map_input: np.ndarray, placement: Placement, film_hw: Sequence[int]) -> np.ndarray:
    """An input-sized map placed on the film of ``film_hw`` = (height, width): the letterbox box is
    resized back onto the crop window; film pixels outside the window (cut away by ``spine_crop``)
    are NaN."""
    top, left, bh, bw = placement.box
    ctop, cleft, ch, cw = placement.crop
    inside = np.ascontiguousarray(map_input[top : top + bh, left : left + bw], dtype=np.float32)
    film = np.full((int(film_hw[0]), int(film_hw[1])), np.nan, dtype=np.float32)
    film[ctop : ctop + ch, cleft : cleft + cw] = cv2.resize(inside, (cw, ch), interpolation=cv2.INTER_LINEAR)
    return film


def film_heatmap(
    cam: np.ndarray, placement: Placement, film_hw: Sequence[int], input_hw: Sequence[int]
) -> np.ndarray:
    """One class's CAM grid (h, w) -> normalised heatmap on the original film (NaN outside)."""
    heat = np.clip(grid_to_input(normalise_cam(cam), input_hw), 0.0, 1.0)
    return input_to_film(heat, placement, film_hw)


def film_to_bgr(image: np.ndarray) -> np.ndarray:
    """A displayable 8-bit BGR copy of any decoded film (16-bit and float films min-max scaled)."""
    grey = scale_intensity(to_grey(np.asarray(image)), Preprocessing())
    return cv2.cvtColor((grey * 255.0 + 0.5).astype(np.uint8), cv2.COLOR_GRAY2BGR)


def render(
    image: np.ndarray,
    *,
    heatmap: np.ndarray | None = None,
    landmarks: np.ndarray | None = None,
    lines: Sequence[tuple[tuple[float, float], tuple[float, float]]] = (),
    caption: Sequence[str] = (),
    alpha: float = 0.45,
) -> np.ndarray:
    """The film as BGR uint8 with optional overlays.

    ``heatmap``: film-sized map in [0, 1] (NaN = not seen), drawn in the JET colour map with
    opacity ``alpha``; ``landmarks``: (N, 2) x, y film pixels, drawn as dots; ``lines``: segments
    ((x0, y0), (x1, y1)) in film pixels (endplate or angle lines); ``caption``: text lines drawn
    on a band below the film, so nothing on the film is hidden.
    """
    out = film_to_bgr(image)
    h, w = out.shape[:2]
    if heatmap is not None:
        if heatmap.shape[:2] != (h, w):
            raise ValueError(f"heatmap shape {heatmap.shape} does not match the film {(h, w)}")
        seen = np.isfinite(heatmap)
        heat8 = (np.nan_to_num(np.clip(heatmap, 0.0, 1.0)) * 255.0 + 0.5).astype(np.uint8)
        colour = cv2.applyColorMap(heat8, cv2.COLORMAP_JET)
        blended = cv2.addWeighted(out, 1.0 - alpha, colour, alpha, 0.0)
        out[seen] = blended[seen]
    thickness = max(1, round(max(h, w) / 400))
    for (x0, y0), (x1, y1) in lines:
        cv2.line(out, (round(x0), round(y0)), (round(x1), round(y1)), (0, 255, 255), thickness, cv2.LINE_AA)
    if landmarks is not None:
        for x, y in np.asarray(landmarks, dtype=np.float64).reshape(-1, 2):
            cv2.circle(out, (round(x), round(y)), 2 * thickness, (0, 255, 0), -1, cv2.LINE_AA)
    if caption:
        out = np.vstack([out, _caption_band(caption, w)])
    return out


def _caption_band(caption: Sequence[str], width: int) -> np.ndarray:
    """Text lines on a dark band as wide as the film; lines too long for it are wrapped."""
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, float(np.clip(width / 900, 0.4, 0.8))
    lines: list[str] = []
    for text in caption:
        words, current = text.split(), ""
        for word in words:
            trial = f"{current} {word}".strip()
            if current and cv2.getTextSize(trial, font, scale, 1)[0][0] > width - 8:
                lines.append(current)
                trial = word
            current = trial
        lines.append(current)
    line_h = cv2.getTextSize("Ag", font, scale, 1)[0][1] * 2 + 2
    band = np.full((line_h * len(lines) + 6, width, 3), 24, dtype=np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(band, text, (4, line_h * (i + 1)), font, scale, (240, 240, 240), 1, cv2.LINE_AA)
    return band


def write_png(path: str | os.PathLike[str], bgr: np.ndarray) -> Path:
    """Write ``bgr`` as PNG (OpenCV), creating the folder; raises ``OSError`` when it cannot."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", bgr)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data.tobytes())
    os.replace(tmp, path)
    return path
