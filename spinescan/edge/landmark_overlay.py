"""Draw a landmark model's reading on the film: corners, end-vertebra lines, angles (light island).

What a reader checks: are the corners on the vertebrae, are the right end vertebrae chosen, and do
the drawn lines give the printed angle. Each angle's two endplates are drawn extended across the
film in the angle's colour, with the angle's name and value.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from spinescan.radiograph.angle_defs import ANGLES
from spinescan.radiograph.angles import Angle
from spinescan.radiograph.vertebrae import LEVELS, as_corners


def _style(name: str) -> tuple[tuple[int, int, int], str, bool]:
    """An angle's BGR colour, short name and whether it is only written, not drawn (the AASCE
    three share their mid-lines with the curves above), from its definition
    (:mod:`spinescan.radiograph.angle_defs`, which the page's document carries too)."""
    d = ANGLES.get(name)
    if d is None:
        return (255, 255, 255), name, False
    rgb = d.colour.lstrip("#")
    r, g, b = (int(rgb[k : k + 2], 16) for k in (0, 2, 4))
    return (b, g, r), d.title, d.text_only


def _endplate(
    corners: np.ndarray, sacrum: np.ndarray | None, vertebra: int | str, side: str
) -> np.ndarray | None:
    if vertebra == "S1":
        return None if sacrum is None else np.asarray(sacrum, dtype=np.float64).reshape(2, 2)
    v = int(vertebra)
    if side == "mid":  # the mid-line: middle of the left side to middle of the right side
        pair = np.stack([(corners[v, 0] + corners[v, 2]) / 2.0, (corners[v, 1] + corners[v, 3]) / 2.0])
    else:
        pair = corners[v, :2] if side == "superior" else corners[v, 2:]
    return pair if np.isfinite(pair).all() else None


def _through(centre: np.ndarray, orientation_deg: float) -> np.ndarray:
    """Two points on the line through ``centre`` at ``orientation_deg`` (image axes, y down)."""
    d = np.array([np.cos(np.radians(orientation_deg)), np.sin(np.radians(orientation_deg))])
    return np.stack([centre - d, centre + d])


def _extended(p: np.ndarray, scale: float) -> tuple[tuple[int, int], tuple[int, int]]:
    mid, d = p.mean(axis=0), p[1] - p[0]
    n = float(np.hypot(*d)) or 1.0
    a, b = mid - d / n * scale, mid + d / n * scale
    return (round(a[0]), round(a[1])), (round(b[0]), round(b[1]))


def draw_overlay(
    image: np.ndarray,
    landmarks: np.ndarray,
    angles: Mapping[str, Angle],
    sacrum: np.ndarray | None = None,
    label: str | None = None,
    max_height: int = 1024,
) -> np.ndarray:
    """A BGR uint8 copy of ``image`` (any layout) with the reading drawn on it, at most
    ``max_height`` pixels tall (drawn at film scale, then resized)."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        lo, hi = float(np.min(img)), float(np.max(img))
        img = np.clip((img.astype(np.float32) - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    elif img.shape[2] == 1:
        img = cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    out = img.copy()
    h, w = out.shape[:2]
    unit = max(1, round(h / 600))
    corners = as_corners(landmarks)
    for v in range(len(LEVELS)):
        q = corners[v][[0, 1, 3, 2]]
        if np.isfinite(q).all():
            cv2.polylines(out, [np.round(q).astype(np.int32)], True, (255, 255, 0), unit, cv2.LINE_AA)
            if v % 4 == 0 or v == len(LEVELS) - 1:
                x, y = q[:, 0].max() + 3 * unit, q[:, 1].mean()
                cv2.putText(
                    out,
                    LEVELS[v],
                    (round(x), round(y)),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    0.3 * unit,
                    (255, 255, 0),
                    max(1, unit // 2),
                    cv2.LINE_AA,
                )
    if sacrum is not None and np.isfinite(np.asarray(sacrum, dtype=np.float64)).all():
        s = np.round(np.asarray(sacrum, dtype=np.float64).reshape(2, 2)).astype(np.int32)
        cv2.line(out, tuple(s[0]), tuple(s[1]), (255, 0, 255), unit, cv2.LINE_AA)
    text_y = 14 * unit
    for name, angle in angles.items():
        colour, short, text_only = _style(name)
        if angle.value is None:
            msg = f"{short}: - ({angle.reason})"
        else:
            msg = f"{short}: {angle.value:.1f} deg"
            for k, (vertebra, side) in enumerate(() if text_only else angle.lines):
                p = _endplate(corners, sacrum, vertebra, side)
                if p is not None and side == "mid" and len(angle.orientations) == len(angle.lines):
                    p = _through(p.mean(axis=0), angle.orientations[k])  # the smoothed mid-line
                if p is not None:
                    a, b = _extended(p, 0.18 * w + 20)
                    cv2.line(out, a, b, colour, unit, cv2.LINE_AA)
        cv2.putText(
            out,
            msg,
            (4 * unit, text_y),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * unit,
            colour,
            max(1, unit // 2),
            cv2.LINE_AA,
        )
        text_y += 14 * unit
    if label is not None:
        cv2.putText(
            out,
            f"label: {label}",
            (4 * unit, text_y),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * unit,
            (255, 255, 255),
            max(1, unit // 2),
            cv2.LINE_AA,
        )
    if h > max_height:
        s = max_height / h
        out = cv2.resize(out, (max(1, round(w * s)), max_height), interpolation=cv2.INTER_AREA)
    return out


def overlay_image(image: np.ndarray, reading: dict[str, Any]) -> np.ndarray:
    """The reading drawn on the film (BGR uint8). The one call into :mod:`spinescan.edge.overlay`,
    so that the drawing can change (or gain heatmaps) without touching the predictor."""
    return draw_overlay(image, reading["landmarks"], reading["angles"], reading["sacrum"], reading["label"])


def write_overlay(image: np.ndarray, reading: dict[str, Any], path: str | Path) -> Path:
    """:func:`overlay_image` written as a PNG (atomically, the folder created; ``OSError`` when it
    cannot be), by the same writer as the heatmap overlays."""
    from spinescan.edge.overlay import write_png

    return write_png(path, overlay_image(image, reading))
