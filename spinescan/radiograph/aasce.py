"""The AASCE 2019 challenge's three Cobb angles, computed from the 68 corners as its script does
(light island: numpy only, no spinescan imports, so :mod:`spinescan.radiograph.angles` can use it).

Why a second definition beside the anatomical PT/MT/TL angles of :mod:`spinescan.radiograph.angles`:
the published figures on AP landmark films (SMAPE 6-11% on the challenge's public test split) are
computed on *these* three angles, against the columns ``aasce_a1_deg``..``aasce_a3_deg`` of
``aasce-train``; a project figure comparable with the literature has to use the same rule. The rule
(the challenge's ``angleCal.m`` and its Python port ``cobb_evaluate.py`` in
Vertebra-Landmark-Detection, Yi et al. 2020; ``../shared/data/real/README.md``, aasce-train):

* each vertebra's mid-line joins the middle of its left side ((TL + BL) / 2) to the middle of its
  right side ((TR + BR) / 2);
* angle 1 is the largest angle between any two of the 17 mid-lines, between an upper vertebra
  ``U`` and a lower one ``L`` (first row, then first column, of the angle matrix in case of ties);
* the centre line (the 34 endplate midpoints, T1 top first) is tested against the chord from its
  first to its last point (:func:`is_s_shape`); a C shape (one side) gives angle 2 = angle(T1, U)
  and angle 3 = angle(L5, L);
* an S shape whose main curve lies in the upper half of the film (the *inferior* endplate midpoints
  of U and L average above half the film height: ``angleCal.m``'s 1-based ``pos2*2``; the Python
  port's 0-based ``pos2*2`` takes the superior ones) gives angle 2 = the largest angle between U
  and any vertebra T1..U, angle 3 = the largest between L and any vertebra L..L5; otherwise angle 2
  as before, reached at vertebra ``K``, and angle 3 = the largest between K and any of T1..K.

The angle between two mid-lines is the script's angle between their directed vectors (left to
right), so it can exceed 90 deg (a few columns do). A model's *smoothed* mid-lines
(:func:`spinescan.radiograph.angles.smoothed_tilts`) are orientations, not vectors: ``tilts`` go through
the same rule as unit vectors pointing right. Recomputed from the expert corners of aasce-train
this reproduces the columns within 0.015 deg on average (largest difference 0.08 deg: the corners
were rounded to 0.01 px after the films were downscaled; ``tests/test_aasce.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_VERT = 17
AASCE_ANGLES = ("aasce_a1_deg", "aasce_a2_deg", "aasce_a3_deg")
#: C: one-sided centre line; "S upper"/"S lower": S shape with the main curve in the upper/lower
#: half of the film; "S": S shape, film height unknown (angles 2 and 3 not measured).
RULES = ("C", "S upper", "S lower", "S")
#: A centre-line point closer to the chord than this fraction of the chord's length counts as on it:
#: floating-point noise must not turn a straight spine into an S (the script's Python port has a
#: tolerance too; on the 481 expert spines the nearest crossing point is 4 orders of magnitude off it).
ON_CHORD = 1e-9


@dataclass(frozen=True)
class AasceAngles:
    """The challenge's three angles (degrees) and the vertebrae (0 = T1 .. 16 = L5) each was
    measured between, so that an overlay can draw them and a reader can check the rule taken."""

    a1: float
    a2: float | None  # None: an S shape and no film height (the upper-half test needs it)
    a3: float | None
    pairs: tuple[tuple[int, int] | None, ...]
    rule: str

    def values(self) -> tuple[float | None, float | None, float | None]:
        return (self.a1, self.a2, self.a3)


def midline_vectors(corners: np.ndarray) -> np.ndarray:
    """(17, 2) mid-line of each vertebra as a vector from the middle of its left side to the middle
    of its right side (the script's ``mid_p(2:2:end) - mid_p(1:2:end)``)."""
    c = np.asarray(corners, dtype=np.float64).reshape(N_VERT, 4, 2)
    return (c[:, 1] + c[:, 3]) / 2.0 - (c[:, 0] + c[:, 2]) / 2.0


def tilt_vectors(tilts: np.ndarray) -> np.ndarray:
    """Unit vectors (pointing right) of mid-lines given by their orientations in degrees."""
    r = np.radians(np.asarray(tilts, dtype=np.float64).reshape(N_VERT))
    return np.stack([np.cos(r), np.sin(r)], axis=1)


def angle_matrix(vectors: np.ndarray) -> np.ndarray:
    """(17, 17) angles (degrees, in [0, 180]) between the mid-line vectors: the script's
    ``acos(v_i . v_j / (|v_i| |v_j|))``, written as ``atan2(|v_i x v_j|, v_i . v_j)`` (the same
    angle without ``acos``'s loss of precision near 0: two parallel mid-lines read 0, not 1e-6).
    Exactly symmetric (products commute in floating point), which the first-row tie rule relies on."""
    v = np.asarray(vectors, dtype=np.float64)
    x, y = v[:, 0], v[:, 1]
    dot = x[:, None] * x[None, :] + y[:, None] * y[None, :]
    cross = np.abs(x[:, None] * y[None, :] - y[:, None] * x[None, :])
    return np.degrees(np.arctan2(cross, dot))


def centre_line(corners: np.ndarray) -> np.ndarray:
    """The 34 endplate midpoints, T1 superior first: ``(TL + TR) / 2`` then ``(BL + BR) / 2``."""
    c = np.asarray(corners, dtype=np.float64).reshape(N_VERT, 4, 2)
    return np.stack([(c[:, 0] + c[:, 1]) / 2.0, (c[:, 2] + c[:, 3]) / 2.0], axis=1).reshape(-1, 2)


def is_s_shape(centre: np.ndarray) -> bool:
    """Whether the centre line crosses the chord from its first to its last point (``isS``).

    The script tests, for every point but the last two, ``(y - y_n) / (y_1 - y_n) - (x - x_n) /
    (x_1 - x_n)`` and calls the line S-shaped when these are not all of one sign (``sum(ll*ll')
    ~= sum(abs(ll*ll'))``). Multiplied by the constant ``(y_1 - y_n)(x_1 - x_n)`` that is the cross
    product with the chord, whose signs are the same and which stays defined for a vertical chord.
    """
    p = np.asarray(centre, dtype=np.float64)
    first, last = p[0], p[-1]
    pts = p[:-2]
    cross = (pts[:, 1] - last[1]) * (first[0] - last[0]) - (pts[:, 0] - last[0]) * (first[1] - last[1])
    dx, dy = float(first[0] - last[0]), float(first[1] - last[1])
    eps = ON_CHORD * (dx * dx + dy * dy)
    return bool((cross > eps).any() and (cross < -eps).any())


def aasce_rule(vectors: np.ndarray, centre: np.ndarray, film_height: float | None) -> AasceAngles:
    """The three angles from 17 mid-line orientations and the 34-point centre line.

    ``film_height`` (pixels) is needed only by an S shape (the upper-half test); without it an S
    shape gets angle 1 only (angles 2 and 3 ``None``: the caller says why), never a guess.
    """
    a = angle_matrix(vectors)
    maxt = a.max(axis=1)
    upper = int(np.argmax(maxt))
    lower = int(np.argmax(a[upper]))
    a1 = float(a[upper, lower])
    last = N_VERT - 1
    if not is_s_shape(centre):
        pairs = ((upper, lower), (0, upper), (lower, last))
        return AasceAngles(a1, float(a[0, upper]), float(a[lower, last]), pairs, "C")
    if film_height is None:
        return AasceAngles(a1, None, None, ((upper, lower), None, None), "S")
    k = int(np.argmax(a[upper, : upper + 1]))
    a2 = float(a[upper, k])
    c = np.asarray(centre, dtype=np.float64)
    if c[2 * upper + 1, 1] + c[2 * lower + 1, 1] < float(film_height):
        m = lower + int(np.argmax(a[lower, lower:]))
        return AasceAngles(a1, a2, float(a[lower, m]), ((upper, lower), (k, upper), (lower, m)), "S upper")
    m = int(np.argmax(a[k, : k + 1]))
    return AasceAngles(a1, a2, float(a[k, m]), ((upper, lower), (k, upper), (m, k)), "S lower")


def aasce_angles(
    landmarks: np.ndarray, film_height: float | None, tilts: np.ndarray | None = None
) -> AasceAngles:
    """The challenge's three angles from 68 corners (AASCE order, film pixels).

    ``tilts`` replaces the raw mid-line orientations (e.g. a model's smoothed ones); the centre
    line and the upper-half test always use the corners. Every corner must be finite: the rule is
    defined on all 17 vertebrae (``ValueError`` otherwise: callers that accept partial spines check
    visibility first and report the reason).
    """
    c = np.asarray(landmarks, dtype=np.float64)
    if c.size != N_VERT * 8:
        raise ValueError(f"need 68 landmarks (T1..L5 corners), got shape {c.shape}")
    c = c.reshape(N_VERT, 4, 2)
    if not np.isfinite(c).all():
        raise ValueError("the AASCE angles need all 68 corners")
    v = midline_vectors(c) if tilts is None else tilt_vectors(tilts)
    return aasce_rule(v, centre_line(c), film_height)
