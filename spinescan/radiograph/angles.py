"""Spinal angles from vertebral landmarks (light island: numpy only).

Landmarks follow the AASCE 2019 convention: 68 points, the four corners of T1..L5 in the order
top-left, top-right, bottom-left, bottom-right (image coordinates, ``y`` down), so a vertebra's
superior endplate is the line through its points 0-1 and its inferior endplate through 2-3. A
lateral film adds the S1 superior endplate's two ends (``sacrum``).

The measurement functions are the ones the phantom generator uses to state its angles
(:mod:`spinescan.synth.geometry` imports them from here), so an angle measured from a model's
landmarks and an angle in a phantom's manifest are one definition:

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

Reading a *model's* landmarks, the coronal angles use each vertebra's mid-line instead of its
endplates (``readout="midlines"``, :data:`PREDICTION_READOUT`): the line from the middle of its left
side (corners 0 and 2) to the middle of its right side (1 and 3), smoothed along the spine by a
quadratic over five vertebrae (:func:`smoothed_tilts`). One endplate rests on two
predicted corners, so a few pixels of error at one corner tilt it by degrees, and the largest-angle
search picks exactly those errors; the mid-line averages four corners (a vertebra whose corners
cross over, top and bottom swapped as seen on real films, keeps its mid-line), and the smoothing
damps the independent errors of neighbouring vertebrae. The price is a difference of definition,
measured on exact phantom corners and stated in the README with the benchmark's figures. The
phantom manifest keeps the endplate definition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinescan.radiograph.aasce import AASCE_ANGLES, aasce_rule, centre_line, midline_vectors, tilt_vectors
from spinescan.radiograph.thresholds import ap_label, lateral_finding

LEVELS = tuple([f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)])
N_VERT = len(LEVELS)
N_LANDMARKS = 4 * N_VERT
T4, T12, L1 = LEVELS.index("T4"), LEVELS.index("T12"), LEVELS.index("L1")

#: How coronal angles are read from a model's landmarks (see the module docstring); the manifest's
#: definitions are ``"endplates"``.
PREDICTION_READOUT = "midlines"
READOUTS = ("endplates", "midlines")

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


def edge_angle(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Orientation (degrees, in (-90, 90]) of the line through ``p`` and ``q``, direction-free."""
    d = np.asarray(q, dtype=np.float64) - np.asarray(p, dtype=np.float64)
    a = np.degrees(np.arctan2(d[..., 1], d[..., 0]))
    return (a + 90.0) % 180.0 - 90.0


def line_angle_between(a1: np.ndarray | float, a2: np.ndarray | float) -> np.ndarray:
    """Unsigned angle between two lines given by their orientations, in [0, 90]."""
    d = np.abs((np.asarray(a1) - np.asarray(a2) + 90.0) % 180.0 - 90.0)
    return d


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


def max_cobb_from_landmarks(landmarks: np.ndarray, readout: str = "endplates") -> tuple[float, int, int]:
    """Largest coronal Cobb angle over all pairs of end vertebrae (upper superior, lower inferior;
    or smoothed mid-lines with ``readout="midlines"``, see :func:`cobb_matrix`).

    Returns ``(angle, upper, lower)`` vertebra indices, as in the AASCE challenge's evaluation.
    """
    diff = np.triu(cobb_matrix(landmarks, readout))  # upper vertebra i at or above lower vertebra j
    i, j = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return float(diff[i, j]), int(i), int(j)


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


@dataclass(frozen=True)
class Curve:
    """A coronal curve: end vertebrae (indices, ``upper < lower``), apex vertebra and Cobb angle."""

    upper: int
    lower: int
    apex: float
    angle: float


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
        ok &= _inside(c, image_size).all(axis=1)
    if visible is not None:
        v = np.asarray(visible, dtype=bool).reshape(N_VERT, -1).all(axis=1)
        ok &= v
    return ok


def _inside(points: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Which points (..., 2) lie on the film of ``image_size`` = (height, width); NaN is outside."""
    h, w = image_size
    x, y = points[..., 0], points[..., 1]
    with np.errstate(invalid="ignore"):
        return (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)


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


def _apex(centres: np.ndarray, upper: int, lower: int) -> float:
    """The vertebra farthest from the chord between the end vertebrae's centres (mid-level if none)."""
    if lower - upper < 2:
        return (upper + lower) / 2.0
    a, b = centres[upper], centres[lower]
    chord = b - a
    norm = float(np.hypot(*chord))
    if norm == 0.0:
        return (upper + lower) / 2.0
    rel = centres[upper + 1 : lower] - a
    dev = np.abs(chord[0] * rel[:, 1] - chord[1] * rel[:, 0]) / norm
    if float(dev.max()) <= 1e-9:
        return (upper + lower) / 2.0
    return float(upper + 1 + int(np.argmax(dev)))


def midline_tilts(landmarks: np.ndarray) -> np.ndarray:
    """Each vertebra's mid-line orientation (degrees): the line from the middle of its left side
    (corners 0, 2) to the middle of its right side (corners 1, 3)."""
    c = as_corners(landmarks)
    return edge_angle((c[:, 0] + c[:, 2]) / 2.0, (c[:, 1] + c[:, 3]) / 2.0)


#: Savitzky-Golay weights (quadratic over five vertebrae, x 35): the rows for the first, second and
#: middle vertebra of a window; the last two mirror the first two.
_SG_EDGE0 = (31.0, 9.0, -3.0, -5.0, 3.0)
_SG_EDGE1 = (9.0, 13.0, 12.0, 6.0, -5.0)
_SG_MID = (-3.0, 12.0, 17.0, 12.0, -3.0)


def smoothed_tilts(tilts: np.ndarray, first: int = 0, last: int = N_VERT - 1) -> np.ndarray:
    """Tilts of ``first..last`` smoothed along the spine: at each vertebra, the value of a quadratic
    fitted by least squares to the five nearest vertebrae of the run (Savitzky-Golay; the two at
    each end of the run use the end window's fit). Runs of fewer than five are left as they are.

    Why: a model's tilt errors are nearly independent from one vertebra to the next, and the
    largest-angle search picks the worst of them; a spine's true tilts change smoothly with level,
    and a quadratic over five vertebrae follows a curve's apex and end vertebrae far better than a
    median or mean would (on exact phantom corners this reading differs from the endplate one by
    0.64 deg on average, against 0.58 for the raw mid-lines).

    Measured against more robust read-outs (``benchmarks/readout_study.py``, three cobb seeds'
    phantom val/test films and the 91 real AP dev films; README, *Landmark models*): wider or
    penalised smoothing, a running median, outlier rejection, dropping implausible (disordered,
    collapsed, self-intersecting) outlines or high-heatmap-spread vertebrae and bridging their
    tilts, length- or spread-weighted fits, end vertebrae chosen on one endplate and measured on
    the other. None beat this one on phantom val by more than noise; those that lower the healthy
    real films' reading do so by flattening every curve (the real scoliosis films read lower too,
    the phantom MAE rises), because the real films' tilt noise (4-5 x the phantoms', along the
    whole spine) is a model problem, not a read-out one."""
    t = np.asarray(tilts, dtype=np.float64)
    out = t.copy()
    first, last = int(first), int(last)
    if last - first + 1 < 5:
        return out
    for i in range(first, last + 1):
        if i - first < 2:
            lo, w = first, (_SG_EDGE0, _SG_EDGE1)[i - first]
        elif last - i < 2:
            lo, w = last - 4, tuple(reversed((_SG_EDGE0, _SG_EDGE1)[last - i]))
        else:
            lo, w = i - 2, _SG_MID
        out[i] = float(np.dot(w, t[lo : lo + 5])) / 35.0
    return out


def cobb_matrix(
    landmarks: np.ndarray, readout: str = "endplates", first: int = 0, last: int = N_VERT - 1
) -> np.ndarray:
    """(17, 17) angles between vertebra ``i`` (upper) and ``j`` (lower): superior against inferior
    endplate, or (``readout="midlines"``) smoothed mid-line against smoothed mid-line over
    ``first..last`` (:func:`smoothed_tilts`; zero on the diagonal)."""
    c = as_corners(landmarks)
    if readout == "midlines":
        tilt = smoothed_tilts(midline_tilts(c), first, last)
        return line_angle_between(tilt[:, None], tilt[None, :])
    if readout != "endplates":
        raise ValueError(f"readout must be one of {READOUTS}, not {readout!r}")
    top = edge_angle(c[:, 0], c[:, 1])
    bottom = edge_angle(c[:, 2], c[:, 3])
    return line_angle_between(top[:, None], bottom[None, :])


def coronal_curves(
    landmarks: np.ndarray, first: int = 0, last: int = N_VERT - 1, readout: str = "endplates"
) -> list[Curve]:
    """Decompose vertebrae ``first..last`` into curves, top to bottom.

    The largest Cobb angle (upper vertebra strictly above the lower one) is a curve; the segments
    above it (down to its upper end vertebra) and below it (from its lower end vertebra) are
    decomposed the same way, as adjacent curves share their end vertebra.
    """
    c = as_corners(landmarks)
    diff = cobb_matrix(c, readout, first, last)
    centres = c.mean(axis=1)

    def split(a: int, b: int) -> list[Curve]:
        if b - a < 1:
            return []
        sub = np.triu(diff[a : b + 1, a : b + 1], k=1)
        if float(sub.max()) <= 0.0:  # a straight segment holds no curve
            return []
        i, j = np.unravel_index(int(np.argmax(sub)), sub.shape)
        i, j = int(i) + a, int(j) + a
        curve = Curve(i, j, _apex(centres, i, j), float(diff[i, j]))
        return [*split(a, i), curve, *split(j, b)]

    return split(int(first), int(last))


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
        s_ok = bool(_inside(s, image_size).all())
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
