"""The landmark layout every angle is read on (light island: numpy only): the 17 vertebrae T1..L5,
their four corners each in AASCE 2019 order (top-left, top-right, bottom-left, bottom-right, image
coordinates, ``y`` down: the superior endplate is the line through corners 0-1, the inferior through
2-3), which of them can be measured on a film, and the orientation of the lines drawn through them.
"""

from __future__ import annotations

import numpy as np

LEVELS = tuple([f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)])
N_VERT = len(LEVELS)
N_LANDMARKS = 4 * N_VERT
T4, T12, L1 = LEVELS.index("T4"), LEVELS.index("T12"), LEVELS.index("L1")


def edge_angle(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Orientation (degrees, in (-90, 90]) of the line through ``p`` and ``q``, direction-free."""
    d = np.asarray(q, dtype=np.float64) - np.asarray(p, dtype=np.float64)
    a = np.degrees(np.arctan2(d[..., 1], d[..., 0]))
    return (a + 90.0) % 180.0 - 90.0


def line_angle_between(a1: np.ndarray | float, a2: np.ndarray | float) -> np.ndarray:
    """Unsigned angle between two lines given by their orientations, in [0, 90]."""
    d = np.abs((np.asarray(a1) - np.asarray(a2) + 90.0) % 180.0 - 90.0)
    return d


def as_corners(landmarks: np.ndarray) -> np.ndarray:
    """(68, 2) or (17, 4, 2) landmarks as a float64 (17, 4, 2) array."""
    c = np.asarray(landmarks, dtype=np.float64)
    if c.size != N_LANDMARKS * 2:
        raise ValueError(f"need {N_LANDMARKS} landmarks (T1..L5 corners), got shape {c.shape}")
    return c.reshape(N_VERT, 4, 2)


def visible_vertebrae(
    landmarks: np.ndarray, image_size: tuple[int, int] | None = None, visible: np.ndarray | None = None
) -> np.ndarray:
    """Which vertebrae can be measured: all four corners known (finite) and, given
    ``image_size`` = (height, width), inside the film; ``visible`` (17 or 68 booleans, e.g. a
    model's visibility output) must agree too.
    """
    c = as_corners(landmarks)
    ok = np.isfinite(c).all(axis=(1, 2))
    if image_size is not None:
        ok &= inside_film(c, image_size).all(axis=1)
    if visible is not None:
        v = np.asarray(visible, dtype=bool).reshape(N_VERT, -1).all(axis=1)
        ok &= v
    return ok


def inside_film(points: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Which points (..., 2) lie on the film of ``image_size`` = (height, width); NaN is outside."""
    h, w = image_size
    x, y = points[..., 0], points[..., 1]
    with np.errstate(invalid="ignore"):
        return (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)


def midline_tilts(landmarks: np.ndarray) -> np.ndarray:
    """Each vertebra's mid-line orientation (degrees): the line from the middle of its left side
    (corners 0, 2) to the middle of its right side (corners 1, 3)."""
    c = as_corners(landmarks)
    return edge_angle((c[:, 0] + c[:, 2]) / 2.0, (c[:, 1] + c[:, 3]) / 2.0)
