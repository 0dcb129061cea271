"""Vectorised drawing in patient millimetres onto antialiased 8-bit layers (OpenCV, no pixel loops).

Anatomy is described in the patient frame (mm, ``y`` up); one 2x3 affine maps it to pixels, so
scale, position, rotation and mirroring are applied in one place and the landmarks go through the
very same transform as the drawing. Each tissue has its own layer; within a layer later shapes
overwrite earlier ones (so a cortical ring can be drawn over a filled body), and layers are
summed with tissue weights when the film is formed.

Layers are uint8 at the output resolution, drawn with OpenCV's antialiasing (``LINE_AA``) and
sub-pixel coordinates: the same edges as drawing twice as large and averaging down (the earlier
design), at a quarter of the pixels and a quarter of the bytes per pixel, which is most of what
drawing cost. Values are given in [0, 1] and stored as 0-255.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

_SHIFT = 4  # OpenCV fixed-point sub-pixel bits
_ONE = 1 << _SHIFT
_INV255 = np.float32(1.0 / 255.0)


class Canvas:
    """uint8 layers of ``height x width`` pixels (``ss`` > 1 draws larger and averages down)."""

    def __init__(self, height: int, width: int, matrix: np.ndarray, ss: int = 1) -> None:
        self.height, self.width, self.ss = int(height), int(width), int(ss)
        self.matrix = np.asarray(matrix, dtype=np.float64)  # world mm -> output pixels
        self._m = self.matrix * self.ss
        # Output pixel centres sit at integer coordinates; output pixel i spans supersampled
        # pixels ss*i .. ss*i+ss-1, whose centre is ss*i + (ss-1)/2. Folded into the affine once.
        self._fix = (self._m * _ONE).T.copy()
        self._fix[2] += (self.ss - 1) / 2.0 * _ONE
        self._fix_a, self._fix_b = self._fix[:2], self._fix[2]  # the same (views), sliced once
        self._last: tuple[object, list[np.ndarray] | np.ndarray] | None = None  # see _fixed
        self._last_ellipse: tuple[tuple[float, ...], list[np.ndarray]] | None = None  # see ellipse
        self.layers: dict[str, np.ndarray] = {}
        self.mm = float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))  # output pixels per mm

    # --- coordinates --------------------------------------------------------------------------

    def to_pixels(self, pts: np.ndarray) -> np.ndarray:
        """World points (..., 2) to output-pixel coordinates (the landmark convention)."""
        pts = np.asarray(pts, dtype=np.float64)
        return pts @ self.matrix[:, :2].T + self.matrix[:, 2]

    def _fixed(self, polys: list[np.ndarray] | np.ndarray) -> list[np.ndarray] | np.ndarray:
        """Polygons in mm -> OpenCV fixed-point (supersampled) pixels, in one matrix product.

        A (k, n, 2) array of equal-length polygons stays one array (OpenCV takes it as k polygons),
        so batches of vertebrae cost one call and no splitting. The same shapes are often filled and
        then outlined (bodies, rings, ribs drawn twice): the last conversion is kept and reused when
        the very same object comes again (callers never modify a shape between the two draws).
        """
        last = self._last
        if last is not None and last[0] is polys:
            return last[1]
        if isinstance(polys, np.ndarray) and polys.ndim == 3:
            out = self._round(polys @ self._fix_a)
        elif len(polys) == 1:
            p = np.asarray(polys[0], dtype=np.float64).reshape(-1, 2)
            out = [self._round(p @ self._fix_a)]
        else:
            p = self._round(np.concatenate(polys) @ self._fix_a)
            out, i = [], 0
            for a in polys:
                out.append(p[i : i + len(a)])
                i += len(a)
        self._last = (polys, out)
        return out

    def _round(self, p: np.ndarray) -> np.ndarray:
        """``rint(p + offset)`` as int32, in place on the fresh product ``p``."""
        p += self._fix_b
        return np.rint(p, out=p).astype(np.int32)

    def _len(self, mm: float) -> int:
        return max(1, round(mm * self.mm * self.ss))

    # --- layers -------------------------------------------------------------------------------

    def layer(self, name: str) -> np.ndarray:
        if name not in self.layers:
            self.layers[name] = np.zeros((self.height * self.ss, self.width * self.ss), np.uint8)
        return self.layers[name]

    def reduced(self, name: str) -> np.ndarray:
        """A layer as float32 in [0, 1] at the output size."""
        lay = self.layers.get(name)
        if lay is None:
            return np.zeros((self.height, self.width), np.float32)
        if self.ss != 1:
            lay = cv2.resize(lay, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return lay.astype(np.float32) * _INV255

    # --- primitives ---------------------------------------------------------------------------

    def polygons(self, name: str, polys: list[np.ndarray] | np.ndarray, value: float) -> None:
        """Fill polygons (each (n, 2) in mm; a list, or a (k, n, 2) array)."""
        if len(polys):
            v = (round(float(value) * 255.0),)
            cv2.fillPoly(self.layer(name), self._fixed(polys), v, cv2.LINE_AA, _SHIFT)

    def lines(
        self, name: str, polys: list[np.ndarray] | np.ndarray, value: float, width_mm: float, closed: bool
    ) -> None:
        """Stroke polylines ``width_mm`` wide.

        Strokes are not antialiased: OpenCV's antialiased thick polylines cost 5-20 times more, and
        the film's system blur (at least half a pixel, ``exposure.form_film``) smooths them anyway.
        """
        if len(polys):
            v = (round(float(value) * 255.0),)
            cv2.polylines(
                self.layer(name), self._fixed(polys), closed, v, self._len(width_mm), cv2.LINE_8, _SHIFT
            )

    def ellipse(
        self,
        name: str,
        centre: np.ndarray,
        axes_mm: tuple[float, float],
        angle: float,
        value: float,
        width_mm: float | None = None,
    ) -> None:
        """An ellipse (filled when ``width_mm`` is None) given in mm; ``angle`` in world degrees."""
        # What polygons([pts]) / lines([pts]) do, without their generic argument handling. A shape
        # filled and then outlined (skull, femoral heads) is converted once: the same arguments give
        # the same points.
        cx, cy = np.asarray(centre, dtype=np.float64).reshape(2).tolist()
        key = (cx, cy, float(axes_mm[0]), float(axes_mm[1]), float(angle))
        if self._last_ellipse is not None and self._last_ellipse[0] == key:
            fixed = self._last_ellipse[1]
        else:
            fixed = [self._round(ellipse_points((cx, cy), key[2:4], key[4]) @ self._fix_a)]
            self._last_ellipse = (key, fixed)
        v = (round(float(value) * 255.0),)
        if width_mm is None:
            cv2.fillPoly(self.layer(name), fixed, v, cv2.LINE_AA, _SHIFT)
        else:
            cv2.polylines(self.layer(name), fixed, True, v, self._len(width_mm), cv2.LINE_8, _SHIFT)


@functools.lru_cache(maxsize=64)
def _unit_circle(n: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.cos(t), np.sin(t)


@functools.lru_cache(maxsize=64)
def _unit_circle_xy(n: int) -> np.ndarray:
    """(n, 2): the columns cos t and sin t of :func:`_unit_circle`, read-only."""
    xy = np.stack(_unit_circle(n), axis=1)
    xy.flags.writeable = False
    return xy


def ellipse_points(centre: np.ndarray, axes: tuple[float, float], angle: float, n: int = 36) -> np.ndarray:
    """Outline of an ellipse as a polygon (world mm), so it goes through the same affine."""
    a = math.radians(angle)
    ca, sa = math.cos(a), math.sin(a)
    # Columns x = ax cos t, y = ay sin t, then (x ca - y sa, x sa + y ca) + centre, in three array
    # operations: x * (ca, sa) + y * (-sa, ca) is the same rounding for every element, since
    # y * -sa is exactly -(y * sa) and u + -v is exactly u - v.
    xy = _unit_circle_xy(n) * (float(axes[0]), float(axes[1]))
    pts = xy[:, :1] * (ca, sa)
    pts += xy[:, 1:] * (-sa, ca)
    pts += np.asarray(centre, dtype=np.float64).reshape(2)
    return pts


@functools.lru_cache(maxsize=64)
def _catmull_rom(m: int, n: int) -> np.ndarray:
    """(n, m) weights: n points on the uniform Catmull-Rom spline through m control points."""
    u = np.linspace(0.0, m - 1.0, n)
    i = np.minimum(np.floor(u).astype(int), m - 2)
    t = u - i
    w = 0.5 * np.stack(
        [-(t**3) + 2 * t**2 - t, 3 * t**3 - 5 * t**2 + 2, -3 * t**3 + 4 * t**2 + t, t**3 - t**2], axis=1
    )
    full = np.zeros((n, m + 2))  # columns: phantom start, controls, phantom end
    for k in range(4):
        np.add.at(full, (np.arange(n), i + k), w[:, k])
    # Phantom end points reflect their neighbours: P(-1) = 2 P0 - P1, P(m) = 2 P(m-1) - P(m-2).
    b = full[:, 1:-1].copy()
    b[:, 0] += 2 * full[:, 0]
    b[:, 1] -= full[:, 0]
    b[:, -1] += 2 * full[:, -1]
    b[:, -2] -= full[:, -1]
    return b


def smooth_polyline(pts: np.ndarray, n: int = 24) -> np.ndarray:
    """A smooth curve of ``n`` points through the control points (one matrix product).

    Accepts one polyline (m, 2) or a batch (b, m, 2) of polylines with the same m.
    """
    pts = np.asarray(pts, dtype=np.float64)
    batch = pts.ndim == 3
    pts = pts.reshape(pts.shape[0] if batch else 1, -1, 2)
    m = pts.shape[1]
    if m < 3:
        out = pts
    else:
        out = np.einsum("nm,bmd->bnd", _catmull_rom(m, max(n, m)), pts)
    return out if batch else out[0]
