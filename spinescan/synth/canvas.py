"""Vectorised drawing in patient millimetres onto supersampled float layers (OpenCV, no pixel loops).

Anatomy is described in the patient frame (mm, ``y`` up); one 2x3 affine maps it to pixels, so
scale, position, rotation and mirroring are applied in one place and the landmarks go through the
very same transform as the drawing. Each tissue has its own layer; within a layer later shapes
overwrite earlier ones (so a cortical ring can be drawn over a filled body), and layers are
summed with tissue weights when the film is formed.
"""

from __future__ import annotations

import cv2
import numpy as np

_SHIFT = 4  # OpenCV fixed-point sub-pixel bits
_ONE = 1 << _SHIFT


class Canvas:
    """Float32 layers of ``height x width`` pixels, drawn ``ss`` times larger and reduced at the end."""

    def __init__(self, height: int, width: int, matrix: np.ndarray, ss: int = 2) -> None:
        self.height, self.width, self.ss = int(height), int(width), int(ss)
        self.matrix = np.asarray(matrix, dtype=np.float64)  # world mm -> output pixels
        self._m = self.matrix * self.ss
        self.layers: dict[str, np.ndarray] = {}
        self.mm = float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))  # output pixels per mm

    # --- coordinates --------------------------------------------------------------------------

    def to_pixels(self, pts: np.ndarray) -> np.ndarray:
        """World points (..., 2) to output-pixel coordinates (the landmark convention)."""
        pts = np.asarray(pts, dtype=np.float64)
        return pts @ self.matrix[:, :2].T + self.matrix[:, 2]

    def _fixed(self, pts: np.ndarray) -> np.ndarray:
        p = np.asarray(pts, dtype=np.float64) @ self._m[:, :2].T + self._m[:, 2]
        # Output pixel centres sit at integer coordinates; output pixel i spans supersampled
        # pixels ss*i .. ss*i+ss-1, whose centre is ss*i + (ss-1)/2.
        p = p + (self.ss - 1) / 2.0
        return np.round(p * _ONE).astype(np.int32)

    def _len(self, mm: float) -> int:
        return max(1, round(mm * self.mm * self.ss))

    # --- layers -------------------------------------------------------------------------------

    def layer(self, name: str) -> np.ndarray:
        if name not in self.layers:
            self.layers[name] = np.zeros((self.height * self.ss, self.width * self.ss), np.float32)
        return self.layers[name]

    def reduced(self, name: str) -> np.ndarray:
        """A layer averaged down to the output size (the supersampling's anti-aliasing)."""
        lay = self.layers.get(name)
        if lay is None:
            return np.zeros((self.height, self.width), np.float32)
        if self.ss == 1:
            return lay
        return cv2.resize(lay, (self.width, self.height), interpolation=cv2.INTER_AREA)

    # --- primitives ---------------------------------------------------------------------------

    def polygons(self, name: str, polys: list[np.ndarray], value: float) -> None:
        """Fill polygons (each (n, 2) in mm)."""
        if polys:
            cv2.fillPoly(self.layer(name), [self._fixed(p) for p in polys], (float(value),), cv2.LINE_8, _SHIFT)

    def lines(self, name: str, polys: list[np.ndarray], value: float, width_mm: float, closed: bool) -> None:
        """Stroke polylines ``width_mm`` wide."""
        if polys:
            cv2.polylines(
                self.layer(name), [self._fixed(p) for p in polys], closed, (float(value),),
                self._len(width_mm), cv2.LINE_8, _SHIFT,
            )  # fmt: skip

    def ellipse(
        self, name: str, centre: np.ndarray, axes_mm: tuple[float, float], angle: float, value: float,
        width_mm: float | None = None,
    ) -> None:  # fmt: skip
        """An ellipse (filled when ``width_mm`` is None) given in mm; ``angle`` in world degrees."""
        pts = ellipse_points(centre, axes_mm, angle)
        if width_mm is None:
            self.polygons(name, [pts], value)
        else:
            self.lines(name, [pts], value, width_mm, True)


def ellipse_points(centre: np.ndarray, axes: tuple[float, float], angle: float, n: int = 36) -> np.ndarray:
    """Outline of an ellipse as a polygon (world mm), so it goes through the same affine."""
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    a = np.radians(angle)
    x, y = axes[0] * np.cos(t), axes[1] * np.sin(t)
    pts = np.stack([x * np.cos(a) - y * np.sin(a), x * np.sin(a) + y * np.cos(a)], axis=1)
    return pts + np.asarray(centre, dtype=np.float64)


def smooth_polyline(pts: np.ndarray, n: int = 24) -> np.ndarray:
    """Catmull-Rom-like resampling through control points, for organic outlines."""
    pts = np.asarray(pts, dtype=np.float64)
    if len(pts) < 3:
        return pts
    d = np.r_[0.0, np.cumsum(np.hypot(*np.diff(pts, axis=0).T))]
    t = np.linspace(0.0, d[-1], max(n, len(pts)))
    x = np.interp(t, d, pts[:, 0])
    y = np.interp(t, d, pts[:, 1])
    k = np.ones(5) / 5.0
    xs = np.convolve(np.pad(x, 2, mode="edge"), k, mode="valid")
    ys = np.convolve(np.pad(y, 2, mode="edge"), k, mode="valid")
    xs[0], ys[0], xs[-1], ys[-1] = x[0], y[0], x[-1], y[-1]
    return np.stack([xs, ys], axis=1)
