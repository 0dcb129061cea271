"""What each angle is, as data: name, unit, method, clinical thresholds and their sources (light island).

The measurement *code* lives in :mod:`spinescan.radiograph.angles`; this module says, for every
angle a landmark model may report, what a reader needs to know about it without running Python:
its view, a short title and a colour for drawing, how it is measured (``method``) and which
clinical thresholds apply to it, with the numbers and sources of
:mod:`spinescan.radiograph.thresholds` (never a copy). The model document
(:mod:`spinescan.edge.modeldoc`) carries the definitions of a model's angles to the Python
predictor, ``predict.py`` and the browser page, so the page draws and thresholds what the
document says instead of its own copies.

Methods:

* ``endplates``: the unsigned angle between two named endplates, ``lines`` =
  ``((level, side), (level, side))`` with ``level`` one of :data:`~spinescan.radiograph.angles.LEVELS`
  or ``"S1"`` and ``side`` ``superior`` / ``inferior``. Fully described by the definition, so a new
  angle of this kind (say a T1-T12 kyphosis) is one :func:`register_angle` call and a plugin that
  lists it: :func:`endplate_angle` measures it in Python, ``web/src/landmarks.js`` on the page.
* ``largest_cobb``, ``regional_cobb``, ``aasce``: the coronal searches of
  :func:`~spinescan.radiograph.angles.ap_angles` (code on both sides).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from spinescan.radiograph import thresholds as th
from spinescan.radiograph.aasce import AASCE_ANGLES, ON_CHORD
from spinescan.radiograph.angles import Angle
from spinescan.radiograph.vertebrae import LEVELS, as_corners, edge_angle, line_angle_between

METHODS = ("endplates", "largest_cobb", "regional_cobb", "aasce")
SIDES = ("superior", "inferior")
#: ``Threshold.op``: how a value compares with the threshold for the finding to hold.
OPS = (">", ">=", "<")


@dataclass(frozen=True)
class Threshold:
    """One clinical threshold of an angle: the ``finding`` holds when ``value op limit``."""

    finding: str  # "hyper" | "hypo" (a lateral curve), "scoliosis" (AP)
    op: str
    limit: float
    source: str

    def to_json(self) -> dict[str, Any]:
        return {"finding": self.finding, "op": self.op, "limit": self.limit, "source": self.source}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Threshold:
        t = cls(str(data["finding"]), str(data["op"]), float(data["limit"]), str(data["source"]))
        if t.op not in OPS:
            raise ValueError(f"threshold op {t.op!r} is not one of {', '.join(OPS)}")
        return t


@dataclass(frozen=True)
class AngleDefinition:
    """One angle as readers see it (see the module docstring)."""

    name: str
    view: str
    title: str  # short name drawn on the film ("T4-T12")
    method: str
    lines: tuple[tuple[str, str], ...] = ()  # method "endplates": the two endplates
    thresholds: tuple[Threshold, ...] = ()
    unit: str = "deg"
    colour: str = "#ffffff"  # RGB hex, drawn lines and text
    text_only: bool = False  # written on the film, not drawn (the AASCE three)
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "lines", tuple((str(v), str(s)) for v, s in self.lines))
        object.__setattr__(self, "thresholds", tuple(self.thresholds))
        problems = []
        if self.method not in METHODS:
            problems.append(f"method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.method == "endplates":
            if len(self.lines) != 2:
                problems.append("an endplates angle names two endplates")
            for level, side in self.lines:
                if (
                    level not in (*LEVELS, "S1")
                    or side not in SIDES
                    or (level == "S1" and side != "superior")
                ):
                    problems.append(f"unknown endplate {level} {side}")
        if problems:
            raise ValueError(f"angle {self.name!r}: " + "; ".join(problems))

    def threshold(self, finding: str) -> float | None:
        """The limit of ``finding`` (``None`` when the angle has no such threshold)."""
        return next((t.limit for t in self.thresholds if t.finding == finding), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "view": self.view,
            "title": self.title,
            "method": self.method,
            "lines": [list(p) for p in self.lines],
            "thresholds": [t.to_json() for t in self.thresholds],
            "unit": self.unit,
            "colour": self.colour,
            "text_only": self.text_only,
            "description": self.description,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AngleDefinition:
        return cls(
            name=str(data["name"]),
            view=str(data["view"]),
            title=str(data["title"]),
            method=str(data["method"]),
            lines=tuple((str(v), str(s)) for v, s in data.get("lines", [])),
            thresholds=tuple(Threshold.from_json(t) for t in data.get("thresholds", [])),
            unit=str(data.get("unit", "deg")),
            colour=str(data.get("colour", "#ffffff")),
            text_only=bool(data.get("text_only", False)),
            description=str(data.get("description", "")),
        )


def _t(finding: str, op: str, constant: str) -> Threshold:
    return Threshold(finding, op, float(getattr(th, constant)), th.SOURCES[constant])


_KYPHOSIS = (_t("hypo", "<", "KYPHOSIS_NORMAL_MIN"), _t("hyper", ">", "KYPHOSIS_THRESHOLD"))
_LORDOSIS = (_t("hypo", "<", "LORDOSIS_NORMAL_MIN"), _t("hyper", ">", "LORDOSIS_THRESHOLD"))
_BUILT_IN = (
    AngleDefinition(
        "cobb_deg", "ap", "Cobb", "largest_cobb", thresholds=(_t("scoliosis", ">=", "SCOLIOSIS_THRESHOLD"),),
        colour="#ff0000", description="largest coronal Cobb angle",
    ),
    AngleDefinition("cobb_pt_deg", "ap", "PT", "regional_cobb", colour="#00a0ff",
                    description="proximal thoracic curve (apex T1-T5)"),
    AngleDefinition("cobb_mt_deg", "ap", "MT", "regional_cobb", colour="#00c800",
                    description="main thoracic curve (apex T6-T11)"),
    AngleDefinition("cobb_tl_deg", "ap", "TL/L", "regional_cobb", colour="#ffc800",
                    description="thoracolumbar/lumbar curve (apex T12-L5)"),
    *(
        AngleDefinition(name, "ap", f"AASCE {i + 1}", "aasce", colour="#dddddd", text_only=True,
                        description=f"the AASCE 2019 challenge's angle {i + 1}")
        for i, name in enumerate(AASCE_ANGLES)
    ),
    AngleDefinition(
        "thoracic_kyphosis_deg", "lateral", "T4-T12", "endplates", (("T4", "superior"), ("T12", "inferior")),
        _KYPHOSIS, colour="#00c800", description="thoracic kyphosis, T4 superior to T12 inferior endplate",
    ),
    AngleDefinition(
        "lumbar_lordosis_deg", "lateral", "L1-S1", "endplates", (("L1", "superior"), ("S1", "superior")),
        _LORDOSIS, colour="#ffc800", description="lumbar lordosis, L1 superior to S1 superior endplate",
    ),
)  # fmt: skip
#: Every angle known to this process by name: the built-ins, then :func:`register_angle`'s.
ANGLES: dict[str, AngleDefinition] = {a.name: a for a in _BUILT_IN}
BUILT_IN = tuple(ANGLES)


def register_angle(definition: AngleDefinition) -> AngleDefinition:
    """Make a new angle known (a plugin's, before its :class:`~spinescan.zoo.spec.ModelSpec` lists
    it). Only ``endplates`` angles can be added: the other methods are code. Re-registering the
    same definition is a no-op; another definition under a known name is refused."""
    if definition.method != "endplates":
        raise ValueError(f"angle {definition.name!r}: only endplates angles can be registered")
    known = ANGLES.get(definition.name)
    if known is not None and known != definition:
        raise ValueError(f"angle {definition.name!r} is already defined differently")
    ANGLES[definition.name] = definition
    return definition


def angles_for(view: str) -> tuple[str, ...]:
    """The names of the angles a ``view`` landmark model may measure."""
    return tuple(n for n, a in ANGLES.items() if a.view == view)


def definitions(names: Iterable[str]) -> tuple[AngleDefinition, ...]:
    """The definitions of ``names``, in that order (``KeyError`` for an unknown one)."""
    return tuple(ANGLES[n] for n in names)


def _level_index(level: str) -> int:
    return LEVELS.index(level)


def endplate_angle(
    definition: AngleDefinition,
    landmarks: np.ndarray,
    sacrum: np.ndarray | None,
    image_size: tuple[int, int] | None = None,
) -> Angle:
    """An ``endplates`` angle measured as :func:`~spinescan.radiograph.angles.lateral_angles`
    measures the built-in two: both endplates' points known and on the film, else ``None`` with
    the missing levels named (``"T2, T8 not visible"``)."""
    from spinescan.radiograph.vertebrae import visible_vertebrae

    c = as_corners(landmarks)
    ok = visible_vertebrae(c, image_size)
    s = None if sacrum is None else np.asarray(sacrum, dtype=np.float64).reshape(2, 2)
    s_ok = s is not None and bool(np.isfinite(s).all())
    if s_ok and image_size is not None and s is not None:
        h, w = image_size
        s_ok = bool(
            ((s[:, 0] >= -0.5) & (s[:, 0] <= w - 0.5) & (s[:, 1] >= -0.5) & (s[:, 1] <= h - 0.5)).all()
        )
    ends, gone = [], []
    for level, side in definition.lines:
        if level == "S1":
            if not s_ok or s is None:
                gone.append(level)
                continue
            ends.append((s[0], s[1]))
            continue
        v = _level_index(level)
        if not ok[v]:
            gone.append(level)
            continue
        ends.append((c[v, 0], c[v, 1]) if side == "superior" else (c[v, 2], c[v, 3]))
    if gone:
        return Angle(definition.name, None, f"{', '.join(dict.fromkeys(gone))} not visible")
    (p1, q1), (p2, q2) = ends
    value = float(line_angle_between(edge_angle(p1, q1), edge_angle(p2, q2)))
    lines = tuple((lv if lv == "S1" else _level_index(lv), side) for lv, side in definition.lines)
    return Angle(definition.name, value, lines=lines)


def readout_constants() -> dict[str, Any]:
    """The read-out constants that are not per model, from their Python source: the levels and
    point names, how coronal angles are read, the smoothing kernel, the plausibility rules'
    numbers and the built-in angles' definitions. ``spinescan export`` writes them into the page
    (``web/readout.js``, :func:`spinescan.export.webpage.readout_module`) and into each model
    document; the page holds no copy of them."""
    from spinescan.radiograph import angles, coronal, plausibility
    from spinescan.radiograph.landmark_codec import POINT_NAMES, VISIBILITY_THRESHOLD

    return {
        "levels": list(LEVELS),
        "point_names": list(POINT_NAMES),
        "prediction_readout": coronal.PREDICTION_READOUT,
        "visibility_threshold": VISIBILITY_THRESHOLD,
        "min_run": angles.MIN_RUN,
        "on_chord": ON_CHORD,
        "regions": [[n, LEVELS[lo], LEVELS[hi]] for n, (lo, hi) in angles.REGIONS.items()],
        "smoothing": {
            "edge": [list(coronal._SG_EDGE0), list(coronal._SG_EDGE1)],
            "mid": list(coronal._SG_MID),
            "scale": 35.0,
        },
        "plausibility": {
            "collapse_fraction": plausibility.COLLAPSE_FRACTION,
            "collapsed_severe": plausibility.COLLAPSED_SEVERE,
            "spacing_range": list(plausibility.SPACING_RANGE),
            "spacing_to_width": list(plausibility.SPACING_TO_WIDTH),
            "max_tilt_step_deg": plausibility.MAX_TILT_STEP_DEG,
            "outside_margin": plausibility.OUTSIDE_MARGIN,
        },
        "angles": {n: a.to_json() for n, a in ANGLES.items() if n in BUILT_IN},
    }
