"""Class labels from angles, by published clinical thresholds, and the angle ranges sampled per class.

The thresholds and the label rules are defined once, in :mod:`spinescan.radiograph.thresholds` (the
predictor labels measured angles with them), and imported here. They are (degrees, Cobb method:
angle between the end vertebrae's endplates, Cobb 1948):

* Thoracic kyphosis, T4 superior to T12 inferior endplate. Normal adults lie roughly 20-40 deg
  (Fon, Pitt & Thies, "Thoracic kyphosis: range in normal subjects", AJR 1980;134:979-983;
  Bernhardt & Bridwell, Spine 1989;14:717-721). The literature puts the upper limit of normal
  between 40 and 50 deg, so hyperkyphosis here is ``> 45`` deg, the middle of that band.
* Lumbar lordosis, L1 superior to S1 superior endplate. Asymptomatic adults average about
  60 +/- 10 deg with a wide range (Vialle et al., J Bone Joint Surg Am 2005;87:260-267); the
  usual teaching range of normal is 40-60 deg and hyperlordosis is placed above 60-70 deg, so
  hyperlordosis here is ``> 65`` deg.
* Scoliosis: coronal Cobb angle ``>= 10`` deg, the Scoliosis Research Society definition
  (Kane, "Scoliosis prevalence: a call for a statement of terms", Clin Orthop 1977;126:43-46).

Because the cut points are contested by a few degrees, every class is sampled at least
:data:`MARGIN` degrees away from its threshold, so that a label never hinges on a choice the
literature has not settled. ``borderline`` cases (an opt-in fraction) are drawn from inside that
margin instead, still on the correct side of the threshold, for studies of behaviour near the
decision boundary.

Within a class, lateral angles follow a published population rather than a flat box:

* Asymptomatic adults (Vialle et al. 2005, 300 volunteers): thoracic kyphosis about
  40.6 +/- 10 deg, lumbar lordosis (L1-S1) about 60.2 +/- 10.3 deg. The two are positively
  correlated (a more kyphotic thorax sits over a more lordotic lumbar spine: Vialle 2005;
  Roussouly et al., Spine 2005;30:346-353, sagittal types; Mac-Thiong et al., Eur Spine J
  2007;16:227-234 report correlations of roughly 0.3-0.5); we use ``r = 0.45``, a value inside
  that reported band, not a fitted one.
* A healthy phantom draws (kyphosis, lordosis) from that bivariate normal restricted to the healthy
  box (rejection sampling); an abnormal phantom draws its abnormal angle uniformly over the class's
  range (a clinical series, not the population's thin tail) and its other angle from the
  population's conditional distribution given the first, restricted to the normal range, so the
  correlation survives inside every class. The label still depends only on the thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The thresholds and the label rules live in the light island (the predictor labels measured
# angles with them); re-exported here for the generator and its callers.
from spinescan.radiograph.thresholds import (
    CLASSES,
    KYPHOSIS_NORMAL_MIN,
    KYPHOSIS_THRESHOLD,
    LORDOSIS_NORMAL_MIN,
    LORDOSIS_THRESHOLD,
    SCOLIOSIS_THRESHOLD,
    VIEWS,
    ap_label,
    lateral_label,
)

MARGIN = 5.0
# Borderline cases keep this far from the threshold, so a label survives landmark rounding.
BORDER_GAP = 0.5

#: Upper bounds of the sampled ranges (the lower ones, ``*_NORMAL_MIN``, are clinical and live
#: with the thresholds).
KYPHOSIS_MAX = 75.0
LORDOSIS_MAX = 90.0
COBB_MAX = 70.0

__all__ = [
    "BORDER_GAP",
    "CLASSES",
    "COBB_MAX",
    "KYPHOSIS_MAX",
    "KYPHOSIS_NORMAL_MIN",
    "KYPHOSIS_THRESHOLD",
    "LORDOSIS_MAX",
    "LORDOSIS_NORMAL_MIN",
    "LORDOSIS_THRESHOLD",
    "MARGIN",
    "SCOLIOSIS_THRESHOLD",
    "VIEWS",
    "LateralAngles",
    "ap_label",
    "lateral_label",
    "sample_cobb",
    "sample_lateral_angles",
]


@dataclass(frozen=True)
class LateralAngles:
    kyphosis_deg: float
    lordosis_deg: float
    borderline: bool


#: Population of asymptomatic adults (see the module docstring): means, SDs, correlation.
KYPHOSIS_MEAN, KYPHOSIS_SD = 40.6, 10.0
LORDOSIS_MEAN, LORDOSIS_SD = 60.2, 10.3
KYPHOSIS_LORDOSIS_R = 0.45


def _truncated_normal(rng: np.random.Generator, mean: float, sd: float, low: float, high: float) -> float:
    """A normal draw restricted to [low, high] (inverse-CDF free: rejection, then a uniform fallback)."""
    for _ in range(64):
        x = float(rng.normal(mean, sd))
        if low <= x <= high:
            return x
    return float(rng.uniform(low, high))


def _conditional(
    rng: np.random.Generator, given: float, given_mean: float, given_sd: float, mean: float, sd: float,
    low: float, high: float,
) -> float:  # fmt: skip
    """The other angle given one, from the correlated population, restricted to [low, high]."""
    r = KYPHOSIS_LORDOSIS_R
    m = mean + r * sd * (given - given_mean) / given_sd
    return _truncated_normal(rng, m, sd * float(np.sqrt(1.0 - r * r)), low, high)


def _normal(rng: np.random.Generator, low: float, threshold: float, border: bool) -> float:
    if border:
        return float(rng.uniform(threshold - MARGIN, threshold - BORDER_GAP))
    return float(rng.uniform(low, threshold - MARGIN))


def _abnormal(rng: np.random.Generator, threshold: float, high: float, border: bool) -> float:
    if border:
        return float(rng.uniform(threshold + BORDER_GAP, threshold + MARGIN))
    return float(rng.uniform(threshold + MARGIN, high))


def sample_lateral_angles(label: str, rng: np.random.Generator, borderline: bool = False) -> LateralAngles:
    """Kyphosis and lordosis for one phantom of ``label``, from the correlated population above.

    With ``borderline`` one angle (the abnormal one, or for healthy a random one) is drawn from
    the margin band next to its threshold.
    """
    k_hi, l_hi = KYPHOSIS_THRESHOLD - MARGIN, LORDOSIS_THRESHOLD - MARGIN
    if label == "healthy":
        which = int(rng.integers(2)) if borderline else -1
        if which == 0:
            k = _normal(rng, KYPHOSIS_NORMAL_MIN, KYPHOSIS_THRESHOLD, True)
            lo = _conditional(
                rng, k, KYPHOSIS_MEAN, KYPHOSIS_SD, LORDOSIS_MEAN, LORDOSIS_SD, LORDOSIS_NORMAL_MIN, l_hi
            )
        elif which == 1:
            lo = _normal(rng, LORDOSIS_NORMAL_MIN, LORDOSIS_THRESHOLD, True)
            k = _conditional(
                rng, lo, LORDOSIS_MEAN, LORDOSIS_SD, KYPHOSIS_MEAN, KYPHOSIS_SD, KYPHOSIS_NORMAL_MIN, k_hi
            )
        else:
            k = _truncated_normal(rng, KYPHOSIS_MEAN, KYPHOSIS_SD, KYPHOSIS_NORMAL_MIN, k_hi)
            lo = _conditional(
                rng, k, KYPHOSIS_MEAN, KYPHOSIS_SD, LORDOSIS_MEAN, LORDOSIS_SD, LORDOSIS_NORMAL_MIN, l_hi
            )
    elif label == "kyphosis":
        k = _abnormal(rng, KYPHOSIS_THRESHOLD, KYPHOSIS_MAX, borderline)
        lo = _conditional(
            rng, k, KYPHOSIS_MEAN, KYPHOSIS_SD, LORDOSIS_MEAN, LORDOSIS_SD, LORDOSIS_NORMAL_MIN, l_hi
        )
    elif label == "lordosis":
        lo = _abnormal(rng, LORDOSIS_THRESHOLD, LORDOSIS_MAX, borderline)
        k = _conditional(
            rng, lo, LORDOSIS_MEAN, LORDOSIS_SD, KYPHOSIS_MEAN, KYPHOSIS_SD, KYPHOSIS_NORMAL_MIN, k_hi
        )
    else:
        raise ValueError(f"unknown lateral class {label!r}")
    return LateralAngles(k, lo, borderline)


def sample_cobb(label: str, rng: np.random.Generator, borderline: bool = False) -> float:
    """Coronal Cobb angle for one AP phantom of ``label``.

    Healthy spines are not perfectly straight: they get a small asymmetry of 1 deg up to the
    margin below the threshold.
    """
    if label == "healthy":
        if borderline:
            return float(rng.uniform(SCOLIOSIS_THRESHOLD - MARGIN, SCOLIOSIS_THRESHOLD - BORDER_GAP))
        return float(rng.uniform(1.0, SCOLIOSIS_THRESHOLD - MARGIN))
    if label == "scoliosis":
        if borderline:
            return float(rng.uniform(SCOLIOSIS_THRESHOLD + BORDER_GAP, SCOLIOSIS_THRESHOLD + MARGIN))
        return float(rng.uniform(SCOLIOSIS_THRESHOLD + MARGIN, COBB_MAX))
    raise ValueError(f"unknown AP class {label!r}")
