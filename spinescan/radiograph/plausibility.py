"""Is a landmark reading anatomically possible? (light island: numpy only).

A landmark model always places its 70 points, and its visibility output cannot be trusted to say
"this is not a spine": on a blank film, noise, stripes or an upside-down film the points all came
out "visible" and the angles looked confident (issue 22: a blank film read as scoliosis, 89.9 deg).
The points themselves show it, though: corners that collapse onto each other, vertebrae out of
order top to bottom, spacing or tilt jumps no spine has, points off the film. This module checks a
reading against those facts of anatomy and says, per film, how bad it is:

* ``ok``: nothing implausible;
* ``warning``: something implausible on a few vertebrae (the angles stay, with the flag beside them);
* ``severe``: the reading is not a spine; :func:`spinescan.radiograph.measure.read_landmarks` then
  reports every angle as ``None`` and no label, with the reasons.

The rules use only counts and fixed fractions, and the reasons only integers, so that the browser
page's port (``web/src/landmarks.js``, ``assessLandmarks``) reaches the same verdict and the same
words; ``tests/test_web.py`` checks that. Thresholds were set on expert AASCE landmarks and exact
phantom landmarks (never flagged) and on nonsense films (see docs/view-guard.md for the figures).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Two corners of one vertebra closer than this fraction of its width: a collapsed vertebra.
COLLAPSE_FRACTION = 0.1
#: Collapsed vertebrae that make a reading severe: more than half of them. Isolated collapsed
#: endplates are a warning: the angles are read from mid-lines, which survive them (today's real-film
#: cobb collapses 4-7 of 17 on every film, real or not, and still reads the largest Cobb angle at 5.5
#: deg MAE on held-out films, benchmarks/aasce_cv.py); the view guard is what keeps non-spine images
#: out. The page's port (web/src/landmarks.js, assessLandmarks) uses the same number.
COLLAPSED_SEVERE = 9
#: Centre-to-centre distance of neighbouring vertebrae against the film's median: outside these
#: factors the spacing is far from anatomy (a disc cannot be 2.5 vertebrae high).
SPACING_RANGE = (0.5, 2.0)
#: Median spacing against median vertebra width: anatomy keeps it roughly between these.
SPACING_TO_WIDTH = (0.3, 2.5)
#: Neighbouring vertebrae whose mid-lines differ by more than this (degrees): a tilt jump.
MAX_TILT_STEP_DEG = 30.0
#: A point this far outside the film (fraction of the film's side) counts as off the film.
OUTSIDE_MARGIN = 0.02
SEVERITIES = ("ok", "warning", "severe")


@dataclass(frozen=True)
class Plausibility:
    """The verdict on one reading: ``severity`` (``ok``, ``warning``, ``severe``) and its reasons."""

    severity: str = "ok"
    reasons: tuple[str, ...] = ()

    @property
    def severe(self) -> bool:
        return self.severity == "severe"

    def reason(self) -> str:
        """One line: ``implausible landmarks: <reasons joined by '; '>`` (empty when ``ok``)."""
        return "implausible landmarks: " + "; ".join(self.reasons) if self.reasons else ""

    def to_json(self) -> dict[str, object]:
        return {"severity": self.severity, "reasons": list(self.reasons)}


def _tilt(a: np.ndarray, b: np.ndarray) -> float:
    """Orientation (degrees, direction-free, in [-90, 90)) of the line a -> b."""
    deg = float(np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0])))
    return (deg + 90.0) % 180.0 - 90.0


def assess_landmarks(
    landmarks: np.ndarray, sacrum: np.ndarray | None, image_hw: tuple[int, int]
) -> Plausibility:
    """Check one reading: ``landmarks`` (68, 2) T1..L5 corners (TL, TR, BL, BR) in film pixels,
    NaN where not visible; ``sacrum`` (2, 2) or ``None``; ``image_hw`` the film's (height, width).

    Only vertebrae with four visible corners are judged (a vertebra the model calls not visible is
    missing, which the angles already handle, not implausible).
    """
    c = np.asarray(landmarks, dtype=np.float64).reshape(17, 4, 2)
    h, w = float(image_hw[0]), float(image_hw[1])
    seen = [k for k in range(17) if np.isfinite(c[k]).all()]
    severe: list[str] = []
    mild: list[str] = []

    # 1. collapsed vertebrae: two of its corners closer than a fraction of its width
    widths = {}
    collapsed = 0
    for k in seen:
        q = c[k]
        width = max(float(np.hypot(*(q[1] - q[0]))), float(np.hypot(*(q[3] - q[2]))))
        widths[k] = width
        closest = min(float(np.hypot(*(q[i] - q[j]))) for i in range(4) for j in range(i + 1, 4))
        if width <= 0.0 or closest < COLLAPSE_FRACTION * width:
            collapsed += 1
    if collapsed:
        text = (
            f"{collapsed} of {len(seen)} vertebrae collapsed (two corners closer than a tenth of the width)"
        )
        (severe if collapsed >= COLLAPSED_SEVERE else mild).append(text)

    # 2. order top to bottom, spacing and tilt steps, between neighbouring visible vertebrae
    centres = {k: c[k].mean(axis=0) for k in seen}
    pairs = [(k, k + 1) for k in seen if k + 1 in centres]
    disorder = sum(1 for a, b in pairs if centres[b][1] <= centres[a][1])
    if disorder:
        text = f"{disorder} neighbouring vertebrae out of order top to bottom"
        (severe if disorder >= 2 else mild).append(text)
    gaps = [float(np.hypot(*(centres[b] - centres[a]))) for a, b in pairs]
    if len(gaps) >= 3:
        median = float(np.median(gaps))
        lo, hi = SPACING_RANGE
        odd = sum(1 for g in gaps if g < lo * median or g > hi * median)
        if odd:
            text = f"{odd} of {len(gaps)} vertebra spacings far from the others (under half or over twice)"
            (severe if odd >= 3 else mild).append(text)
        mid_width = float(np.median([widths[k] for k in seen]))
        wlo, whi = SPACING_TO_WIDTH
        if median < wlo * mid_width or median > whi * mid_width:
            severe.append("vertebra spacing far from anatomy for their width")
    tilts = {k: _tilt((c[k][0] + c[k][2]) / 2.0, (c[k][1] + c[k][3]) / 2.0) for k in seen}
    jumps = 0
    for a, b in pairs:
        step = abs(tilts[b] - tilts[a])
        if min(step, 180.0 - step) > MAX_TILT_STEP_DEG:
            jumps += 1
    if jumps:
        text = f"{jumps} neighbouring vertebrae tilted more than 30 deg apart"
        (severe if jumps >= 3 else mild).append(text)

    # 3. points off the film (beyond a small margin)
    pts = c.reshape(-1, 2)
    if sacrum is not None:
        pts = np.concatenate([pts, np.asarray(sacrum, dtype=np.float64).reshape(-1, 2)])
    pts = pts[np.isfinite(pts).all(axis=1)]
    mx, my = OUTSIDE_MARGIN * w, OUTSIDE_MARGIN * h
    off = int(np.sum((pts[:, 0] < -mx) | (pts[:, 0] > w + mx) | (pts[:, 1] < -my) | (pts[:, 1] > h + my)))
    if off:
        text = f"{off} of {len(pts)} points off the film"
        (severe if 4 * off >= len(pts) else mild).append(text)

    if severe:
        return Plausibility("severe", tuple(severe + mild))
    if mild:
        return Plausibility("warning", tuple(mild))
    return Plausibility()
