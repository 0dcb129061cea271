"""A landmark model's output -> landmarks in the film's pixels, angles and label (light island).

The one read-out shared by training's evaluation, the benchmark and the ONNX predictor, so that
the angles a run reports are the angles ``spinescan-predict`` prints for the same film.
The output is ``(K, >= 3)`` per film: normalised ``x``, ``y`` and a visibility logit per point
(:mod:`spinescan.landmark_net.model`), points in :data:`spinescan.radiograph.landmark_codec.POINT_NAMES`
order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from spinescan.radiograph.angle_defs import AngleDefinition, endplate_angle
from spinescan.radiograph.angles import Angle, ap_angles, label_from_angles, lateral_angles
from spinescan.radiograph.coronal import PREDICTION_READOUT
from spinescan.radiograph.landmark_codec import N_POINTS, Decoded, decode
from spinescan.radiograph.plausibility import assess_landmarks
from spinescan.radiograph.preprocess import Placement


def decode_output(output: np.ndarray, placement: Placement, input_hw: tuple[int, int]) -> Decoded:
    """One film's model output ``(K, >= 3)`` -> its points in film pixels (:func:`decode`).

    A model with fewer than the 70 points (no S1 endplate) reads the missing ones as not visible.
    """
    o = np.asarray(output, dtype=np.float64)
    k = o.shape[0]
    coords = np.full((N_POINTS, 2), 0.5)
    logits = np.full(N_POINTS, -np.inf)
    coords[:k], logits[:k] = o[:, :2], o[:, 2]
    with np.errstate(over="ignore"):
        return decode(coords, logits, placement, (int(input_hw[0]), int(input_hw[1])))


def read_landmarks(
    output: np.ndarray,
    placement: Placement,
    view: str,
    input_hw: tuple[int, int],
    image_hw: tuple[int, int],
    extra: Sequence[AngleDefinition] = (),
) -> dict[str, Any]:
    """``{"landmarks", "sacrum", "angles", "label", "label_reason", "plausibility"}`` for one film
    (points from :func:`decode_output`).

    ``extra``: definitions of angles beyond the view's built-in ones (a model document's
    ``endplates`` angles, :mod:`spinescan.radiograph.angle_defs`), measured from the same points.

    ``plausibility`` (:class:`~spinescan.radiograph.plausibility.Plausibility`) says whether the points
    can be a spine at all; when it is ``severe`` every angle is ``None`` with that reason and there
    is no label: a confident angle on a blank film or a film upside down is worse than none.
    """
    d = decode_output(output, placement, input_hw)
    size = (int(image_hw[0]), int(image_hw[1]))
    if view == "ap":
        angles = ap_angles(d.landmarks, image_size=size, readout=PREDICTION_READOUT)
    else:
        angles = lateral_angles(d.landmarks, d.sacrum, image_size=size)
    for definition in extra:
        if definition.name not in angles and definition.method == "endplates":
            angles[definition.name] = endplate_angle(definition, d.landmarks, d.sacrum, size)
    plausibility = assess_landmarks(d.landmarks, d.sacrum, size)
    if plausibility.severe:
        why = plausibility.reason()
        angles = {name: Angle(name, None, reason=why) for name in angles}
        label, reason = None, why
    else:
        label, reason = label_from_angles(view, angles)
    return {
        "landmarks": d.landmarks,
        "sacrum": d.sacrum,
        "angles": angles,
        "label": label,
        "label_reason": reason,
        "plausibility": plausibility,
    }


def points_json(landmarks: np.ndarray, sacrum: np.ndarray | None = None) -> list[list[float] | None]:
    """``[[x, y], ...]`` in film pixels (68 corners, then the S1 endplate when given); ``None`` for a
    point judged not visible."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if sacrum is not None:
        pts = np.concatenate([pts, np.asarray(sacrum, dtype=np.float64).reshape(-1, 2)])
    return [[round(float(x), 2), round(float(y), 2)] if np.isfinite([x, y]).all() else None for x, y in pts]


def measurements_json(angles: dict[str, Any], names: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``{name: degrees or None}`` and, for each ``None``, the reason (``{name: reason}``)."""
    values = {n: (None if angles[n].value is None else round(float(angles[n].value), 2)) for n in names}
    reasons = {n: angles[n].reason for n in names if angles[n].value is None}
    notes = {n: angles[n].note for n in names if angles[n].note}
    return {"measurements": values, "missing": reasons, "notes": notes}
