"""Clinical angle thresholds and the labels that follow from measured angles (light island).

The one place the thresholds live. They sit in the edge layer, below everything else, because the
ONNX predictor (numpy + OpenCV only) derives a label from the angles a landmark model measures,
and must not import the phantom generator; :mod:`spinescan.synth.labels` imports them from here.

Thresholds (degrees, Cobb method: angle between the end vertebrae's endplates, Cobb 1948):

* Thoracic kyphosis, T4 superior to T12 inferior endplate: hyperkyphosis ``> 45`` deg, the middle
  of the 40-50 deg band the literature gives as the upper limit of normal (Fon, Pitt & Thies, AJR
  1980;134:979-983; Bernhardt & Bridwell, Spine 1989;14:717-721).
* Lumbar lordosis, L1 superior to S1 superior endplate: hyperlordosis ``> 65`` deg (normal about
  60 +/- 10 deg, Vialle et al., J Bone Joint Surg Am 2005;87:260-267; teaching range 40-60 deg).
* Scoliosis: coronal Cobb angle ``>= 10`` deg, the Scoliosis Research Society definition (Kane,
  Clin Orthop 1977;126:43-46).

The sagittal findings that are no class of this project (issue 24): every lateral reading with
both angles gets either a label or one of these named findings (:func:`lateral_finding`), so a
film is never left with "no label" and no reason.

* Hypokyphosis: T4-T12 kyphosis ``< 20`` deg, below the lower limit of the normal adult range
  (20-40/45 deg: Fon, Pitt & Thies 1980; 20-50 deg: Bernhardt & Bridwell 1989).
* Hypolordosis: L1-S1 lordosis ``< 40`` deg, two standard deviations below the adult mean
  (60 +/- 10 deg, Vialle et al. 2005) and the lower end of the teaching range 40-60 deg.
* Flat back: the loss of the normal sagittal curves (hypokyphosis and/or hypolordosis), the
  "flat-back" posture of Kendall et al. (Muscles: Testing and Function, with Posture and Pain, 5th
  ed., 2005) and the lumbar "flatback" of Lagrone et al. (J Bone Joint Surg Am 1988;70:569-580).
* Kyphosis-lordosis posture: hyperkyphosis together with hyperlordosis, Kendall et al.'s
  "kyphotic-lordotic" posture (same source).
* A hyper- and a hypo- curve together (e.g. hyperkyphosis with hypolordosis) is named by its parts.
"""

from __future__ import annotations

from dataclasses import dataclass

KYPHOSIS_THRESHOLD = 45.0  # T4-T12 Cobb above this: hyperkyphosis
LORDOSIS_THRESHOLD = 65.0  # L1-S1 Cobb above this: hyperlordosis
SCOLIOSIS_THRESHOLD = 10.0  # coronal Cobb at or above this: scoliosis (SRS)

#: Lower bounds of the normal ranges; below them a spine is hypokyphotic / hypolordotic (flat
#: back), which is no class of this project but a named finding (:func:`lateral_finding`).
KYPHOSIS_NORMAL_MIN = 20.0
LORDOSIS_NORMAL_MIN = 40.0

#: The named sagittal findings that have no class (:func:`lateral_finding`).
FLAT_BACK = "flat back"
KYPHOSIS_LORDOSIS = "kyphosis-lordosis posture"

#: Where each threshold comes from (the module docstring's references, one line each): the model
#: document (:mod:`spinescan.edge.modeldoc`) carries them beside the numbers to every reader.
SOURCES = {
    "KYPHOSIS_THRESHOLD": (
        "Fon, Pitt & Thies, AJR 1980;134:979-983; Bernhardt & Bridwell, Spine 1989;14:717-721"
    ),
    "LORDOSIS_THRESHOLD": "Vialle et al., J Bone Joint Surg Am 2005;87:260-267",
    "SCOLIOSIS_THRESHOLD": "Scoliosis Research Society definition (Kane, Clin Orthop 1977;126:43-46)",
    "KYPHOSIS_NORMAL_MIN": "Fon, Pitt & Thies 1980; Bernhardt & Bridwell 1989",
    "LORDOSIS_NORMAL_MIN": "Vialle et al. 2005 (mean 60 +/- 10 deg, two standard deviations below)",
}

CLASSES = {"lateral": ("healthy", "kyphosis", "lordosis"), "ap": ("healthy", "scoliosis")}
VIEWS = tuple(CLASSES)


def lateral_label(kyphosis_deg: float, lordosis_deg: float) -> str | None:
    """The lateral class of a spine, or ``None`` when it fits none of the three classes.

    A spine with both curves abnormal, or with hypokyphosis/hypolordosis, has no class in this
    project (and the phantom generator never draws one); :func:`lateral_finding` names it.
    """
    return lateral_finding(kyphosis_deg, lordosis_deg).label


@dataclass(frozen=True)
class LateralFinding:
    """What a lateral film's two angles mean: its ``label`` (one of the three classes, or ``None``)
    and its named ``finding`` (always set). ``kyphosis`` / ``lordosis`` say where each curve is:
    ``"hyper"``, ``"hypo"`` or ``"normal"``."""

    label: str | None
    finding: str
    kyphosis: str
    lordosis: str

    def describe(self, kyphosis_deg: float, lordosis_deg: float) -> str:
        """The one-line reason shown when there is no label (web/src/landmarks.js builds the same)."""
        return (
            f"{self.finding} (thoracic kyphosis {kyphosis_deg:.1f} deg: "
            f"{_where(self.kyphosis, KYPHOSIS_NORMAL_MIN, KYPHOSIS_THRESHOLD)}; lumbar lordosis "
            f"{lordosis_deg:.1f} deg: {_where(self.lordosis, LORDOSIS_NORMAL_MIN, LORDOSIS_THRESHOLD)})"
        )


def _where(state: str, low: float, high: float) -> str:
    if state == "hyper":
        return f"above {high:g}"
    if state == "hypo":
        return f"below {low:g}"
    return f"normal {low:g}-{high:g}"


def _state(value: float, low: float, high: float) -> str:
    return "hyper" if value > high else "hypo" if value < low else "normal"


def lateral_finding(kyphosis_deg: float, lordosis_deg: float) -> LateralFinding:
    """The label and named finding of a lateral film (thresholds and sources: module docstring).

    Labelled films: ``healthy`` (normal sagittal alignment), ``kyphosis`` (hyperkyphosis),
    ``lordosis`` (hyperlordosis). Unlabelled ones: ``flat back: hypokyphosis`` / ``hypolordosis`` /
    ``hypokyphosis + hypolordosis``, ``kyphosis-lordosis posture: hyperkyphosis + hyperlordosis``,
    and the mixed ``hyperkyphosis + hypolordosis`` / ``hypokyphosis + hyperlordosis``.
    """
    k = _state(kyphosis_deg, KYPHOSIS_NORMAL_MIN, KYPHOSIS_THRESHOLD)
    lo = _state(lordosis_deg, LORDOSIS_NORMAL_MIN, LORDOSIS_THRESHOLD)
    parts = [f"{state}{curve}" for state, curve in ((k, "kyphosis"), (lo, "lordosis")) if state != "normal"]
    if not parts:
        return LateralFinding("healthy", "normal sagittal alignment", k, lo)
    if parts == ["hyperkyphosis"]:
        return LateralFinding("kyphosis", "hyperkyphosis", k, lo)
    if parts == ["hyperlordosis"]:
        return LateralFinding("lordosis", "hyperlordosis", k, lo)
    named = " + ".join(parts)
    if k != "hyper" and lo != "hyper":  # only hypo- curves (the rest normal): flat back
        return LateralFinding(None, f"{FLAT_BACK}: {named}", k, lo)
    if k == lo == "hyper":
        return LateralFinding(None, f"{KYPHOSIS_LORDOSIS}: {named}", k, lo)
    return LateralFinding(None, named, k, lo)


def ap_label(cobb_deg: float) -> str:
    """``scoliosis`` at or above the SRS 10 deg Cobb threshold, else ``healthy``."""
    return "scoliosis" if cobb_deg >= SCOLIOSIS_THRESHOLD else "healthy"
