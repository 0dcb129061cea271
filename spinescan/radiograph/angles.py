"""Spinal angles from vertebral landmarks (light island: numpy only).

Landmarks follow the AASCE 2019 convention: 68 points, the four corners of T1..L5 in the order
top-left, top-right, bottom-left, bottom-right (image coordinates, ``y`` down), so a vertebra's
superior endplate is the line through its points 0-1 and its inferior endplate through 2-3. A
lateral film adds the S1 superior endplate's two ends (``sacrum``).

The measurement functions define the angles a phantom's manifest states (``tests/test_synth.py``
measures every phantom's landmarks with them), so an angle measured from a model's landmarks and an
angle in a phantom's manifest are one definition:

* ``thoracic_kyphosis_deg``: T4 superior against T12 inferior endplate.
* ``lumbar_lordosis_deg``: L1 superior endplate against the S1 superior endplate.
* ``cobb_deg``: the largest coronal Cobb angle over every pair of vertebrae (upper one's superior
  endplate, lower one's inferior endplate), as the AASCE challenge's evaluation finds its first,
  largest angle.

The three regional coronal angles follow the structure of the AASCE evaluation (the MICCAI 2019
challenge's ``angleCal.m`` and its Python port in Vertebra-Landmark-Detection, Yi et al. 2020):
the largest curve first, then the largest curve above it ending at its upper end vertebra and the
largest below it starting at its lower end vertebra. Two deliberate differences, both so that the
three angles agree with ``cobb_deg`` and with clinical naming:

* every curve is measured between endplates (upper end vertebra's superior endplate, lower end
  vertebra's inferior endplate) rather than between vertebral mid-lines, so the largest regional
  angle equals ``cobb_deg``;
* curves are found by recursing into the segments above and below each curve, and named by the
  level of their apex (the vertebra farthest from the line joining the end vertebrae' centres)
  with the SRS/Lenke regions: proximal thoracic apex T1-T5, main thoracic T6-T11, thoracolumbar/
  lumbar T12-L5. The AASCE script names by the curve's height in the image instead, which moves
  with the framing. A region's angle is its largest curve.

An angle whose vertebrae are not available (out of frame, not visible) is ``None`` with a reason,
never a guess.

A model's landmarks are read over smoothed vertebral mid-lines instead of endplates
(:data:`~spinescan.radiograph.coronal.PREDICTION_READOUT`, :mod:`spinescan.radiograph.coronal`); the
layout of the landmarks is :mod:`spinescan.radiograph.vertebrae`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from spinescan.radiograph.aasce import AASCE_ANGLES, aasce_rule, centre_line, midline_vectors, tilt_vectors
from spinescan.radiograph.coronal import coronal_curves, max_cobb_from_landmarks, smoothed_tilts
from spinescan.radiograph.thresholds import ap_label, lateral_finding
from spinescan.radiograph.vertebrae import (
    L1,
    LEVELS,
    N_VERT,
    T4,
    T12,
    as_corners,
    edge_angle,
    inside_film,
    line_angle_between,
    midline_tilts,
    visible_vertebrae,
)

#: Apex regions (vertebra index ranges, inclusive) of the three named coronal curves.
REGIONS = {
    "cobb_pt_deg": (0, LEVELS.index("T5")),
    "cobb_mt_deg": (LEVELS.index("T6"), LEVELS.index("T11")),
    "cobb_tl_deg": (T12, N_VERT - 1),
}
#: The anatomical angles, then the AASCE challenge's three (:mod:`spinescan.radiograph.aasce`).
AP_ANGLES = ("cobb_deg", "cobb_pt_deg", "cobb_mt_deg", "cobb_tl_deg", *AASCE_ANGLES)
LATERAL_ANGLES = ("thoracic_kyphosis_deg", "lumbar_lordosis_deg")
#: Fewest consecutive visible vertebrae over which a largest Cobb angle is still reported.
MIN_RUN = 4


# --- the definitions (shared with the phantom generator) -----------------------------------------


def kyphosis_from_landmarks(landmarks: np.ndarray) -> float:
    """T4-T12 Cobb: T4 superior endplate against T12 inferior endplate.

    ``landmarks`` is (68, 2) or (17, 4, 2) in AASCE order (TL, TR, BL, BR per vertebra).
    """
    c = np.asarray(landmarks, dtype=np.float64).reshape(N_VERT, 4, 2)
    return float(line_angle_between(edge_angle(c[T4, 0], c[T4, 1]), edge_angle(c[T12, 2], c[T12, 3])))


def lordosis_from_landmarks(landmarks: np.ndarray, sacrum: np.ndarray) -> float:
    """L1-S1 Cobb: L1 superior endplate against the S1 superior endplate (``sacrum``, 2 points)."""
    c = np.asarray(landmarks, dtype=np.float64).reshape(N_VERT, 4, 2)
    s = np.asarray(sacrum, dtype=np.float64).reshape(2, 2)
    return float(line_angle_between(edge_angle(c[L1, 0], c[L1, 1]), edge_angle(s[0], s[1])))


# --- measurements with availability ---------------------------------------------------------------


@dataclass(frozen=True)
class Angle:
    """One measured angle, or why it could not be measured.

    ``lines`` names the two lines it was measured between, as ``(vertebra, "superior" |
    "inferior" | "mid")`` pairs (``vertebra`` is an index into :data:`LEVELS`, or ``"S1"``; "mid" is
    the vertebra's mid-line, see :func:`midline_tilts`), so an overlay can draw them; smoothed
    mid-lines (:func:`smoothed_tilts`) carry their ``orientations`` (degrees), drawn through the
    vertebra's centre. ``note`` qualifies a value (e.g. measured over part of the spine only).
    """

    name: str
    value: float | None
    reason: str | None = None
    lines: tuple[tuple[int | str, str], ...] = ()
    note: str | None = None
    orientations: tuple[float, ...] = ()  # of smoothed "mid" lines (degrees), which no corner pair gives

    def to_json(self) -> dict[str, object]:
        return {
            "value": None if self.value is None else round(float(self.value), 2),
            "reason": self.reason,
            "lines": [[LEVELS[v] if isinstance(v, int) else v, side] for v, side in self.lines],
            "note": self.note,
            **({"orientations": [round(o, 2) for o in self.orientations]} if self.orientations else {}),
        }


def _names(indices: np.ndarray | list[int]) -> str:
    idx = [int(i) for i in indices]
    if not idx:
        return ""
    runs, start = [], idx[0]
    for a, b in zip(idx, [*idx[1:], None], strict=True):
        if b is None or b != a + 1:
            runs.append(LEVELS[start] if start == a else f"{LEVELS[start]}-{LEVELS[a]}")
            start = b if b is not None else a
    return ", ".join(runs)


def _longest_run(ok: np.ndarray) -> tuple[int, int] | None:
    """Inclusive (first, last) of the longest run of consecutive ``True``; the upper one on ties."""
    best, start = None, None
    for i, v in enumerate([*ok.tolist(), False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            if best is None or i - start > best[1] - best[0] + 1:
                best = (start, i - 1)
            start = None
    return best


def _region_of(apex: float) -> str:
    for name, (lo, hi) in REGIONS.items():
        if lo - 0.5 < apex <= hi + 0.5:
            return name
    return "cobb_tl_deg"


def ap_angles(
    landmarks: np.ndarray,
    image_size: tuple[int, int] | None = None,
    visible: np.ndarray | None = None,
    readout: str = "endplates",
) -> dict[str, Angle]:
    """``cobb_deg`` and the proximal-thoracic, main-thoracic and thoracolumbar/lumbar Cobb angles.

    With every vertebra available, ``cobb_deg`` is :func:`max_cobb_from_landmarks` (the phantom
    manifest's definition; with ``readout="midlines"`` the same search over mid-lines) and equals
    the largest regional angle. With some out of frame, it is the largest angle over the longest
    run of consecutive available vertebrae, noted as a lower bound; a region is ``None`` unless all
    its vertebrae are available. ``aasce_a1_deg``..``aasce_a3_deg`` are the AASCE challenge's three
    angles (:mod:`spinescan.radiograph.aasce`) over the same mid-lines (raw with ``"endplates"``, the
    smoothed ones with ``"midlines"``), ``None`` unless all 17 vertebrae are available; an S-shaped
    spine needs ``image_size`` (its upper-half test).
    """
    sides = ("mid", "mid") if readout == "midlines" else ("superior", "inferior")
    tilts: np.ndarray | None = None  # the smoothed mid-lines' orientations, for drawing them

    def _angle(name: str, value: float, upper: int, lower: int, note: str | None = None) -> Angle:
        lines = ((upper, sides[0]), (lower, sides[1]))
        orient = () if tilts is None else (float(tilts[upper]), float(tilts[lower]))
        return Angle(name, value, lines=lines, note=note, orientations=orient)

    c = as_corners(landmarks)
    ok = visible_vertebrae(c, image_size, visible)
    out: dict[str, Angle] = {}
    run = _longest_run(ok)
    if run is None or run[1] - run[0] + 1 < MIN_RUN:
        why = f"fewer than {MIN_RUN} consecutive vertebrae visible"
        return {name: Angle(name, None, why) for name in AP_ANGLES}
    first, last = run
    safe = np.where(np.isfinite(c), c, 0.0)
    if readout == "midlines":
        tilts = smoothed_tilts(midline_tilts(safe), first, last)
    curves = coronal_curves(safe, first, last, readout)
    if ok.all():
        value, i, j = max_cobb_from_landmarks(c, readout)  # every vertebra: first, last = 0, 16
        out["cobb_deg"] = _angle("cobb_deg", value, i, j)
    else:
        missing = _names(np.flatnonzero(~ok))
        note = f"largest over {LEVELS[first]}-{LEVELS[last]} only ({missing} not visible): a lower bound"
        if curves:
            best = max(curves, key=lambda k: k.angle)
            out["cobb_deg"] = _angle("cobb_deg", best.angle, best.upper, best.lower, note)
        else:
            out["cobb_deg"] = Angle("cobb_deg", 0.0, note=note)
    for name, (lo, hi) in REGIONS.items():
        if not ok[lo : hi + 1].all() or lo < first or hi > last:
            gone = _names([v for v in range(lo, hi + 1) if not ok[v] or v < first or v > last])
            out[name] = Angle(name, None, f"{gone} not visible")
            continue
        mine = [k for k in curves if _region_of(k.apex) == name]
        if not mine:
            out[name] = Angle(name, 0.0, note=f"no curve with its apex in {LEVELS[lo]}-{LEVELS[hi]}")
            continue
        best = max(mine, key=lambda k: k.angle)
        out[name] = _angle(name, best.angle, best.upper, best.lower)
    out.update(_aasce(c, ok, image_size, tilts))
    return {name: out[name] for name in AP_ANGLES}


def _aasce(
    c: np.ndarray, ok: np.ndarray, image_size: tuple[int, int] | None, tilts: np.ndarray | None
) -> dict[str, Angle]:
    """The challenge's three angles (:func:`spinescan.radiograph.aasce.aasce_rule`) over the raw
    mid-lines, or over ``tilts`` (the smoothed ones a model's reading uses); ``None`` with a
    reason unless all 17 vertebrae are available (the rule is defined on T1-L5 only)."""
    if not ok.all():
        why = f"{_names(np.flatnonzero(~ok))} not visible (the AASCE angles need T1-L5)"
        return {n: Angle(n, None, why) for n in AASCE_ANGLES}
    vectors = midline_vectors(c) if tilts is None else tilt_vectors(tilts)
    got = aasce_rule(vectors, centre_line(c), None if image_size is None else float(image_size[0]))
    out = {}
    for name, value, pair in zip(AASCE_ANGLES, got.values(), got.pairs, strict=True):
        if value is None or pair is None:
            out[name] = Angle(name, None, "S-shaped spine and no film height (the AASCE upper-half test)")
            continue
        i, j = pair
        orient = () if tilts is None else (float(tilts[i]), float(tilts[j]))
        out[name] = Angle(name, value, lines=((i, "mid"), (j, "mid")), orientations=orient)
    return out


def lateral_angles(
    landmarks: np.ndarray,
    sacrum: np.ndarray | None,
    image_size: tuple[int, int] | None = None,
    visible: np.ndarray | None = None,
    sacrum_visible: bool = True,
) -> dict[str, Angle]:
    """T4-T12 thoracic kyphosis and L1-S1 lumbar lordosis, each ``None`` when its endplates are not
    available (a lumbar-only film has no T4; no sacrum, no lordosis)."""
    c = as_corners(landmarks)
    ok = visible_vertebrae(c, image_size, visible)
    out: dict[str, Angle] = {}
    need = [v for v in (T4, T12) if not ok[v]]
    if need:
        out["thoracic_kyphosis_deg"] = Angle("thoracic_kyphosis_deg", None, f"{_names(need)} not visible")
    else:
        out["thoracic_kyphosis_deg"] = Angle(
            "thoracic_kyphosis_deg", kyphosis_from_landmarks(c), lines=((T4, "superior"), (T12, "inferior"))
        )
    s = None if sacrum is None else np.asarray(sacrum, dtype=np.float64).reshape(2, 2)
    s_ok = bool(sacrum_visible) and s is not None and bool(np.isfinite(s).all())
    if s_ok and image_size is not None and s is not None:
        s_ok = bool(inside_film(s, image_size).all())
    if not ok[L1] or not s_ok:
        gone = ", ".join(n for n, good in (("L1", ok[L1]), ("S1", s_ok)) if not good)
        out["lumbar_lordosis_deg"] = Angle("lumbar_lordosis_deg", None, f"{gone} not visible")
    else:
        out["lumbar_lordosis_deg"] = Angle(
            "lumbar_lordosis_deg", lordosis_from_landmarks(c, s), lines=((L1, "superior"), ("S1", "superior"))
        )
    return out


def label_from_angles(view: str, angles: dict[str, Angle]) -> tuple[str | None, str | None]:
    """The class that the measured angles imply, by the thresholds of :mod:`.thresholds`.

    Returns ``(label, reason)``: ``label`` is ``None`` with a reason when an angle the rule needs is
    missing, or (lateral) when the angles fit none of the classes: the reason then starts with the
    named finding (flat back, kyphosis-lordosis posture, ...: :func:`.thresholds.lateral_finding`).
    An AP "healthy" measured over part of the spine comes with the reason that it is partial.
    """
    if view == "ap":
        cobb = angles.get("cobb_deg")
        if cobb is None or cobb.value is None:
            why = cobb.reason if cobb is not None and cobb.reason else "not measured"
            return None, f"no Cobb angle: {why}"
        label = ap_label(cobb.value)
        if cobb.note and label == "healthy":  # a lower bound under the threshold rules nothing out
            return label, f"healthy over the visible vertebrae only: {cobb.note}"
        return label, None
    if view == "lateral":
        k, lo = angles.get("thoracic_kyphosis_deg"), angles.get("lumbar_lordosis_deg")
        missing = [a.name for a in (k, lo) if a is not None and a.value is None]
        if k is None or lo is None or k.value is None or lo.value is None:
            return None, "not measured: " + (", ".join(missing) or "angles absent")
        found = lateral_finding(k.value, lo.value)
        if found.label is None:  # a named finding that is no class (flat back, kyphosis-lordosis)
            return None, found.describe(k.value, lo.value)
        return found.label, None
    raise ValueError(f"unknown view {view!r}")


def finite_number(text: str | float | None) -> float | None:
    """A manifest cell (text, or a number from JSON) as a finite number: ``None`` when empty, not a
    number, or not finite."""
    try:
        v = float(text) if text is not None and text != "" else None
    except (TypeError, ValueError):
        return None
    return v if v is not None and np.isfinite(v) else None


def manifest_angles(
    view: str,
    measurements: Sequence[str],
    given: Mapping[str, str],
    landmarks: np.ndarray,
    sacrum: np.ndarray | None,
    image_size: tuple[int, int],
) -> dict[str, float | None]:
    """A labelled film's reference value of each of ``measurements``: the manifest's own column
    (``given``: the row's extra columns) where it has one, else the same definition measured on the
    manifest's corners (the phantoms list no PT/MT/TL angles); ``None`` when neither is there.

    Why here: training's figures and ``spinescan val`` must score against the same truth."""
    measured: dict[str, Angle] = {}
    if np.isfinite(np.asarray(landmarks, dtype=np.float64)).any():
        measured = (
            ap_angles(landmarks, image_size=image_size)
            if view == "ap"
            else lateral_angles(landmarks, sacrum, image_size=image_size)
        )
    out: dict[str, float | None] = {}
    for name in measurements:
        value = finite_number(given.get(name))
        out[name] = value if value is not None else (measured[name].value if name in measured else None)
    return out
