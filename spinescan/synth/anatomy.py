"""Shared anatomy helpers: per-patient body habitus and vertebra-local coordinates.

Habitus (soft-tissue thickness, bone density, organ sizes) is drawn once per phantom from the
phantom's own random stream, identically for every class: a kyphotic phantom is no fatter, denser
or larger than a healthy one, so none of these can stand in for the label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spinescan.synth.geometry import Spine


@dataclass(frozen=True)
class Habitus:
    """Body build of one phantom (mm unless stated)."""

    size: float  # overall scale relative to an average adult
    fat: float  # subcutaneous soft tissue, mm
    belly: float  # anterior abdominal depth in front of the lumbar bodies, mm
    chest: float  # anterior chest depth in front of the thoracic bodies, mm
    shoulders: float  # half-width of the shoulders (AP), mm
    waist: float  # half-width of the waist (AP), mm
    hips: float  # half-width at the hips (AP), mm
    pelvic_tilt: float  # degrees, pelvic incidence = sacral slope + pelvic tilt
    diaphragm: float  # diaphragm dome level, in vertebra units below T1's top (about 9-11)
    bone: float  # bone density factor
    gas: int  # number of bowel gas pockets


def sample_habitus(rng: np.random.Generator) -> Habitus:
    size = float(rng.normal(1.0, 0.06))
    fat = float(rng.uniform(8.0, 45.0))
    return Habitus(
        size=size,
        fat=fat,
        belly=float(rng.uniform(90.0, 150.0) * size + 1.5 * fat),
        chest=float(rng.uniform(120.0, 160.0) * size + fat),
        shoulders=float(rng.uniform(170.0, 210.0) * size),
        waist=float(rng.uniform(120.0, 150.0) * size + fat),
        hips=float(rng.uniform(150.0, 180.0) * size + fat),
        pelvic_tilt=float(rng.uniform(5.0, 20.0)),
        diaphragm=float(rng.uniform(8.8, 10.6)),
        bone=float(rng.uniform(0.8, 1.25)),
        gas=int(rng.integers(2, 9)),
    )


class Local:
    """Vertebra ``v``'s own frame: ``at(pts)`` maps (mm along ``+x``, mm up) from its centre."""

    def __init__(self, spine: Spine, v: int) -> None:
        f = spine.frames
        self.centre, self.e, self.n = f.centre[v], f.e[v], f.n[v]
        self.height, self.width = float(f.height[v]), float(f.width[v])
        self._frame = (*self.centre.tolist(), *self.e.tolist(), *self.n.tolist())

    def at(self, pts: np.ndarray | list) -> np.ndarray:
        # centre + a * e + b * n per point, in Python floats: the same IEEE operations in the same
        # order as the numpy expression, without numpy's per-call cost on a handful of points.
        cx, cy, ex, ey, nx, ny = self._frame
        p = np.asarray(pts, dtype=np.float64).reshape(-1, 2).tolist()
        return np.array([(cx + a * ex + b * nx, cy + a * ey + b * ny) for a, b in p])


def stack(
    start: np.ndarray,
    below_phi: float,
    phis: np.ndarray,
    heights: np.ndarray,
    widths: np.ndarray,
    discs: np.ndarray,
) -> np.ndarray:
    """Corners (n, 4, 2) of extra vertebrae stacked upwards from an endplate (cervical spine).

    Parallel endplates per body; ``phis`` are the bodies' orientations from the bottom up.
    """
    # Scalar arithmetic in Python floats, operation for operation what the 2-vector numpy version
    # computed (normal(phi) = (sin, cos), along(phi) = (cos, -sin) of radians(phi)).
    px, py = np.asarray(start, dtype=np.float64).tolist()
    below = below_phi
    rows = []
    for phi, d, h, w in zip(phis, discs.tolist(), heights.tolist(), widths.tolist(), strict=True):
        a = math.radians(float((below + phi) / 2.0))
        bx, by = px + d * math.sin(a), py + d * math.cos(a)
        a = math.radians(float(phi))
        sin_a, cos_a = math.sin(a), math.cos(a)
        tx, ty = bx + h * sin_a, by + h * cos_a
        hw = w / 2.0
        hx, hy = hw * cos_a, hw * -sin_a
        rows.append(((tx - hx, ty - hy), (tx + hx, ty + hy), (bx - hx, by - hy), (bx + hx, by + hy)))
        px, py, below = tx, ty, phi
    return np.array(rows, dtype=np.float64).reshape(len(phis), 4, 2)


def corner_frames(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centre, unit ``e`` (towards +x), unit ``n`` (up), width and height of quads (n, 4, 2) at once."""
    c = np.asarray(c, dtype=np.float64)
    centre = c.mean(axis=1)
    d = (c[:, 1] - c[:, 0]) + (c[:, 3] - c[:, 2])
    width = np.hypot(*(c[:, 1] - c[:, 0]).T) / 2.0 + np.hypot(*(c[:, 3] - c[:, 2]).T) / 2.0
    e = d / np.hypot(d[:, 0], d[:, 1])[:, None]
    n = np.stack([-e[:, 1], e[:, 0]], axis=1)
    height = (np.hypot(*(c[:, 0] - c[:, 2]).T) + np.hypot(*(c[:, 1] - c[:, 3]).T)) / 2.0
    return centre, e, n, width, height


_T5 = np.linspace(0.0, 1.0, 5, endpoint=False)
_T5_COLUMN = _T5[None, None, :, None]
_SIN_T5 = np.sin(np.pi * _T5_COLUMN)  # the sides' bulge profile, the same for every outline
for _a in (_T5, _T5_COLUMN, _SIN_T5):
    _a.flags.writeable = False


def rounded_quads(c: np.ndarray, bulge: float = 0.06) -> np.ndarray:
    """Body outlines with slightly concave sides and cupped endplates, like real vertebrae.

    ``c`` is (n, 4, 2) corners (TL, TR, BL, BR); all n outlines are computed at once and returned
    as one (n, 20, 2) array.
    """
    c = np.asarray(c, dtype=np.float64).reshape(-1, 4, 2)
    walk = c[:, [0, 1, 3, 2]]  # clockwise with y up: top edge, right side, bottom edge, left side
    d = c[:, [1, 3, 2, 0]] - walk  # (n, 4, 2) edge vectors (each corner's successor minus it)
    outward = np.empty_like(d)  # left of a clockwise walk, edge-length scaled
    outward[..., 0] = -d[..., 1]
    outward[..., 1] = d[..., 0]
    inward = np.array([0.02, bulge, 0.02, bulge])[None, :, None, None]
    t = _T5_COLUMN
    pts = walk[:, :, None] + t * d[:, :, None] - inward * _SIN_T5 * outward[:, :, None]
    return pts.reshape(len(c), -1, 2)
