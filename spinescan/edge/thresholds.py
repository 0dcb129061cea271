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
"""

from __future__ import annotations

KYPHOSIS_THRESHOLD = 45.0  # T4-T12 Cobb above this: hyperkyphosis
LORDOSIS_THRESHOLD = 65.0  # L1-S1 Cobb above this: hyperlordosis
SCOLIOSIS_THRESHOLD = 10.0  # coronal Cobb at or above this: scoliosis (SRS)

#: Lower bounds of the normal ranges; below them a spine is hypokyphotic / hypolordotic, which is
#: no class of this project.
KYPHOSIS_NORMAL_MIN = 20.0
LORDOSIS_NORMAL_MIN = 40.0

CLASSES = {"lateral": ("healthy", "kyphosis", "lordosis"), "ap": ("healthy", "scoliosis")}
VIEWS = tuple(CLASSES)


def lateral_label(kyphosis_deg: float, lordosis_deg: float) -> str | None:
    """The lateral class of a spine, or ``None`` when it fits none of the three classes.

    A spine with both curves abnormal, or with hypokyphosis/hypolordosis, has no class in this
    project (and the phantom generator never draws one).
    """
    kyph_normal = KYPHOSIS_NORMAL_MIN <= kyphosis_deg <= KYPHOSIS_THRESHOLD
    lord_normal = LORDOSIS_NORMAL_MIN <= lordosis_deg <= LORDOSIS_THRESHOLD
    if kyph_normal and lord_normal:
        return "healthy"
    if kyphosis_deg > KYPHOSIS_THRESHOLD and lord_normal:
        return "kyphosis"
    if lordosis_deg > LORDOSIS_THRESHOLD and kyph_normal:
        return "lordosis"
    return None


def ap_label(cobb_deg: float) -> str:
    """``scoliosis`` at or above the SRS 10 deg Cobb threshold, else ``healthy``."""
    return "scoliosis" if cobb_deg >= SCOLIOSIS_THRESHOLD else "healthy"
