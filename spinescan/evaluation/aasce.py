"""Score predicted AP landmarks against a landmarked manifest by the figures the field reports
(issue 21): the AASCE challenge's SMAPE over its three angles, largest-Cobb MAE, landmark error as
a fraction of the film height, the share of corners more than 2% of the film height off, and
sensitivity / specificity at 10 deg, each with a patient-grouped bootstrap 95% CI.

No command line and no TensorFlow: the caller (e.g. a cross-validation benchmark) brings the
predicted corners in each film's own pixels, in the manifest's order, and gets a frozen
:class:`AasceScore` back. The predicted angles are the ones the model reports
(:func:`spinescan.radiograph.angles.ap_angles` on its corners, the smoothed mid-line read-out by default),
so the score describes what a user of ``spinescan-predict`` sees.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from spinescan import metrics as m
from spinescan.errors import DataError
from spinescan.radiograph.aasce import AASCE_ANGLES, aasce_angles
from spinescan.radiograph.angles import ap_angles, finite_number
from spinescan.radiograph.coronal import PREDICTION_READOUT


@dataclass(frozen=True)
class AasceScore:
    """The figures of one set of predictions; each ``*_ci`` is a 95% percentile-bootstrap interval
    over patients (``patient_id``; one patient's films are resampled together).

    ``smape`` is in percent, ``largest_cobb_mae`` in degrees, ``landmark_error`` and
    ``corners_far`` are fractions (of the film height; of the expert's corners). A film whose
    predicted angles are missing (a vertebra not found) counts them as 0 (``n_unmeasured`` says
    how many such films there were), as the challenge scores a method that gives no angle."""

    n_films: int
    n_patients: int
    readout: str
    smape: float
    smape_ci: tuple[float, float]
    largest_cobb_mae: float
    largest_cobb_mae_ci: tuple[float, float]
    landmark_error: float
    landmark_error_ci: tuple[float, float]
    corners_far: float
    corners_far_ci: tuple[float, float]
    sensitivity: float
    sensitivity_ci: tuple[float, float]
    specificity: float
    specificity_ci: tuple[float, float]
    n_unmeasured: int
    n_boot: int
    films: m.FilmFigures = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures (``nan`` as ``None``; the per-film arrays left out)."""
        out = asdict(self)
        out.pop("films")
        return {k: _clean(v) for k, v in out.items()}


def _clean(v: Any) -> Any:
    if isinstance(v, float):
        return None if math.isnan(v) else v
    if isinstance(v, tuple | list):
        return [_clean(x) for x in v]
    return v


def parse_corners(value: Any, what: str) -> np.ndarray:
    """68 ``[x, y]`` (a JSON string or a list; ``null`` or ``[null, null]`` for an unknown point, as
    predictions are saved) as a (68, 2) float array, NaN where unknown; a DataError naming ``what``."""
    try:
        pts = json.loads(value) if isinstance(value, str) else value
        arr = np.array([[np.nan, np.nan] if p is None else p for p in pts], dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{what}: landmarks are not a list of [x, y] points ({e})") from None
    if arr.shape != (68, 2):
        raise DataError(f"{what}: need 68 landmarks [x, y] (T1-L5 corners), got shape {arr.shape}")
    return arr


def true_angles(row: Mapping[str, Any], landmarks: np.ndarray, height: float) -> tuple[list[float], float]:
    """The manifest's three AASCE angles and largest Cobb angle where it has the columns, else the
    challenge's rule on its landmarks (phantoms list none); NaN where neither is available."""
    given = [finite_number(row.get(k)) for k in AASCE_ANGLES]
    if any(v is None for v in given):
        if np.isfinite(landmarks).all():
            given = list(aasce_angles(landmarks, height).values())
        given = [np.nan if v is None else float(v) for v in given]
    largest = finite_number(row.get("cobb_deg"))
    return [float(v) for v in given], (float(given[0]) if largest is None else largest)  # type: ignore[arg-type]


def score_aasce(
    pred_landmarks: Sequence[np.ndarray],
    manifest_rows: Sequence[Mapping[str, Any]],
    *,
    smoothed: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
) -> AasceScore:
    """Score predicted corners (one (68, 2) array per film, film pixels, NaN = not found) against
    manifest rows (``landmarks``, ``height``, ``width``, optional ``aasce_a1_deg``..``a3``,
    ``cobb_deg``, ``patient_id``), in the same order.

    ``smoothed`` (default): the predicted angles are the model's own reading (smoothed mid-lines,
    :data:`~spinescan.radiograph.angles.PREDICTION_READOUT`); ``False``: the challenge's rule on the raw
    predicted corners. The largest predicted Cobb angle is angle 1, or where that is not measured
    the model's ``cobb_deg`` (a lower bound over the visible vertebrae), else 0.
    """
    if len(pred_landmarks) != len(manifest_rows):
        raise DataError(f"{len(pred_landmarks)} predictions for {len(manifest_rows)} manifest rows")
    if not manifest_rows:
        raise DataError("no films to score")
    readout = PREDICTION_READOUT if smoothed else "endplates"
    pred_a, true_a, pred_big, true_big, truths, heights, patients = [], [], [], [], [], [], []
    unmeasured = 0
    for k, (pred, row) in enumerate(zip(pred_landmarks, manifest_rows, strict=True)):
        what = f"film {row.get('file') or k}"
        h, w = finite_number(row.get("height")), finite_number(row.get("width"))
        if h is None or w is None or h <= 0 or w <= 0:
            raise DataError(f"{what}: the manifest needs its height and width (pixels)")
        truth = parse_corners(row.get("landmarks"), what)
        guess = parse_corners(np.asarray(pred, dtype=np.float64).tolist(), f"{what} (prediction)")
        got = ap_angles(guess, image_size=(int(h), int(w)), readout=readout)
        values = [got[n].value for n in AASCE_ANGLES]
        unmeasured += any(v is None for v in values)
        pred_a.append([np.nan if v is None else v for v in values])
        pred_big.append(values[0] if values[0] is not None else got["cobb_deg"].value)
        t, big = true_angles(row, truth, h)
        true_a.append(t)
        true_big.append(None if math.isnan(big) else big)
        truths.append(truth)
        heights.append(h)
        patients.append(str(row.get("patient_id") or row.get("file") or k))
    films = m.film_figures(
        np.array(pred_a, dtype=np.float64),
        np.array(true_a, dtype=np.float64),
        pred_big,
        true_big,
        [np.asarray(p, dtype=np.float64) for p in pred_landmarks],
        truths,
        heights,
    )
    point = m.aasce_figures(films)
    cis = m.cluster_bootstrap(lambda idx: m.aasce_figures(films, idx), patients, n_boot=n_boot, seed=seed)
    figures: dict[str, Any] = {}
    for name, value, ci in zip(m.AASCE_FIGURES, point, cis, strict=True):
        figures[name], figures[f"{name}_ci"] = value, ci
    return AasceScore(
        n_films=len(manifest_rows),
        n_patients=len(set(patients)),
        readout=readout,
        n_unmeasured=int(unmeasured),
        n_boot=n_boot,
        films=films,
        **figures,
    )
