"""The int8 gate of a landmark model.

A landmark model's int8 copy (quantized by :func:`spinescan.export.quantize.quantize_int8`, its
soft-argmax tail kept in float) is judged on what a user reads from it, per test film and through
the predictor's own read-out (OnnxModel.prepare / .read, i.e. spinescan.radiograph.measure): the
landmarks in film pixels, each angle in degrees, and the label the angles imply. The figures are a
:class:`LandmarkInt8Result`; the gate is :func:`landmark_gate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from spinescan.export.quantize import file_figures, size_ratio

#: The derived label (healthy / scoliosis, or none with a reason) must agree with fp32 on 99% of
#: the test films: the classifiers' argmax bar (quantize.MIN_AGREEMENT), since the label is the decision.
MIN_LABEL_AGREEMENT = 0.99
#: Mean |int8 - fp32| per measurement, degrees. The fp32 models' own angle MAE on the phantom test
#: split is about 3 degrees (cobb_deg 2.8) and readers differ by 3-5 degrees on Cobb angles; an
#: independent 0.5 degree on top adds under 0.05 degree to a 3-degree MAE in quadrature.
MAX_MEAN_ANGLE_DIFF_DEG = 0.5
#: An angle must be measurable (or not) for int8 exactly where it is for fp32 on 99% of the films:
#: a ``null`` that appears or vanishes changes what the reader is told.
MIN_MEASURED_AGREEMENT = 0.99
#: Mean landmark shift, as a fraction of the film's height: what the overlay shows. 0.002 is about
#: a sixth of the fp32 model's own landmark error on the phantom test split (0.013 of the height),
#: adding under 2% to it in quadrature.
MAX_MEAN_SHIFT = 0.002
#: Recorded, not gated: films where an angle moves by more than this many degrees, about the
#: spread between two readers of one Cobb angle, so a change a reader would notice. It tells a
#: few films whose end vertebrae or curve regions swap apart from a drift on every film.
LARGE_ANGLE_DIFF_DEG = 5.0


@dataclass(frozen=True)
class AngleShift:
    """One measurement, int8 against fp32, over the test films where both measured it."""

    n: int
    mean_abs_deg: float | None
    max_abs_deg: float | None
    measured_agreement: float | None  # share of films measured by both or by neither
    n_large: int = 0  # films where it moved by more than LARGE_ANGLE_DIFF_DEG

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LandmarkInt8Result:
    """How a landmark model's int8 copy reads the test films against fp32, and whether it ships.

    Recorded in ``manifest.json`` under the model's ``int8`` key (``kind: "landmarks"``,
    ``schema``: :attr:`SCHEMA`); :meth:`from_dict` reads it back and refuses another schema.
    """

    SCHEMA: ClassVar[int] = 1

    n_test: int
    label_agreement: float | None
    landmark_shift_mean: float | None  # fraction of film height, points visible in both
    landmark_shift_max: float | None  # the worst film's mean shift, fraction of its height
    visibility_agreement: float | None  # share of points judged visible (or not) by both
    angles: dict[str, AngleShift]
    size_fp32: int
    size_int8: int
    latency_ms_fp32: float | None
    latency_ms_int8: float | None
    shipped: bool
    reason: str
    calibration_images: int = 0
    float_tail: str = "none"
    float_nodes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            kind="landmarks",
            schema=self.SCHEMA,
            angles={k: v.to_dict() for k, v in self.angles.items()},
            float_nodes=list(self.float_nodes),
            size_ratio=size_ratio(self.size_fp32, self.size_int8),
        )
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LandmarkInt8Result:
        """The inverse of :meth:`to_dict`; ``ValueError`` for another kind or schema."""
        if data.get("kind") != "landmarks" or data.get("schema") != cls.SCHEMA:
            raise ValueError(
                f"not a landmark int8 record of schema {cls.SCHEMA}: kind {data.get('kind')!r}, "
                f"schema {data.get('schema')!r}"
            )
        names = {f.name for f in fields(cls)}
        kept = {k: v for k, v in data.items() if k in names}
        kept["angles"] = {k: AngleShift(**v) for k, v in data["angles"].items()}
        kept["float_nodes"] = tuple(data.get("float_nodes", ()))
        return cls(**kept)


def landmark_gate(
    n_test: int,
    label_agreement: float | None,
    landmark_shift_mean: float | None,
    angles: dict[str, AngleShift],
    *,
    min_label_agreement: float | None = None,
    max_angle_diff: float | None = None,
    min_measured_agreement: float | None = None,
    max_shift: float | None = None,
) -> tuple[bool, str]:
    """Whether a landmark model's int8 copy may ship, and a one-line reason either way (the
    first failed criterion, or the figures when all pass). A limit left ``None`` is the module's
    constant, read at call time."""
    if min_label_agreement is None:
        min_label_agreement = MIN_LABEL_AGREEMENT
    if max_angle_diff is None:
        max_angle_diff = MAX_MEAN_ANGLE_DIFF_DEG
    if min_measured_agreement is None:
        min_measured_agreement = MIN_MEASURED_AGREEMENT
    if max_shift is None:
        max_shift = MAX_MEAN_SHIFT
    if n_test == 0 or label_agreement is None:
        return False, "no readable test films to check it on"
    on = f"on {n_test} test films"
    if label_agreement < min_label_agreement:
        return (
            False,
            f"derived-label agreement with fp32 {label_agreement:.1%} < {min_label_agreement:.0%} {on}",
        )
    for name, a in angles.items():
        if a.measured_agreement is not None and a.measured_agreement < min_measured_agreement:
            return (
                False,
                f"{name} measurable for one model and not the other on {1 - a.measured_agreement:.1%} "
                f"of the films (limit {1 - min_measured_agreement:.0%}) {on}",
            )
        if a.mean_abs_deg is not None and a.mean_abs_deg > max_angle_diff + 1e-12:
            return (
                False,
                f"{name} mean |int8 - fp32| {a.mean_abs_deg:.2f} deg > {max_angle_diff:g} "
                f"(max {a.max_abs_deg:.1f}) {on}",
            )
    if landmark_shift_mean is not None and landmark_shift_mean > max_shift + 1e-12:
        return (
            False,
            f"mean landmark shift {landmark_shift_mean:.4f} of film height > {max_shift:g} {on}",
        )
    worst = max(angles.items(), key=lambda kv: kv[1].mean_abs_deg or 0.0) if angles else None
    angle = (
        f"largest mean |angle difference| {worst[1].mean_abs_deg:.2f} deg ({worst[0]})"
        if worst and worst[1].mean_abs_deg is not None
        else "no angle measured by both"
    )
    shift = "n/a" if landmark_shift_mean is None else f"{landmark_shift_mean:.4f}"
    return True, f"derived-label agreement {label_agreement:.1%}, {angle}, mean landmark shift {shift} {on}"


def _angle_shift(pairs: list[tuple[float | None, float | None]]) -> AngleShift:
    both = [abs(a - b) for a, b in pairs if a is not None and b is not None]
    same = [(a is None) == (b is None) for a, b in pairs]
    return AngleShift(
        n=len(both),
        mean_abs_deg=float(np.mean(both)) if both else None,
        max_abs_deg=float(np.max(both)) if both else None,
        measured_agreement=float(np.mean(same)) if same else None,
        n_large=sum(d > LARGE_ANGLE_DIFF_DEG for d in both),
    )


def evaluate_landmark_int8(
    fp32_path: Path,
    int8_path: Path,
    test_films: Sequence[Path],
    *,
    calibration_images: int = 0,
    tail: str = "none",
    float_nodes: Sequence[str] = (),
) -> LandmarkInt8Result:
    """Read every test film with both files through the predictor's path (:class:`OnnxModel`:
    its preprocessing from the file's metadata, its landmark read-out) and apply
    :func:`landmark_gate` to the differences. Unreadable films are skipped."""
    from spinescan.edge.onnxmodel import OnnxModel
    from spinescan.errors import ImageReadError
    from spinescan.radiograph.imageio import read_image

    fp32, int8 = OnnxModel(fp32_path, verify=False), OnnxModel(int8_path, verify=False)
    names = list(fp32.info.measurements)
    labels: list[bool] = []
    shifts: list[float] = []
    film_shifts: list[float] = []
    visible: list[float] = []
    pairs: dict[str, list[tuple[float | None, float | None]]] = {n: [] for n in names}
    first: np.ndarray | None = None
    for path in test_films:
        try:
            image = read_image(path)
        except ImageReadError:
            continue
        x, context = fp32.prepare(image)
        first = x if first is None else first
        r32 = fp32.read(fp32.predict(x[None])[0], context)
        r8 = int8.read(int8.predict(x[None])[0], context)
        labels.append(r32["label"] == r8["label"])
        p32, p8 = _points(r32), _points(r8)
        seen32, seen8 = np.isfinite(p32).all(axis=1), np.isfinite(p8).all(axis=1)
        visible.append(float(np.mean(seen32 == seen8)))
        both = seen32 & seen8
        if both.any():
            d = np.linalg.norm(p32[both] - p8[both], axis=1) / float(image.shape[0])
            shifts.extend(d.tolist())
            film_shifts.append(float(d.mean()))
        for n in names:
            pairs[n].append((r32["angles"][n].value, r8["angles"][n].value))
    n = len(labels)
    angles = {name: _angle_shift(pairs[name]) for name in names}
    label_agreement = float(np.mean(labels)) if n else None
    shift = float(np.mean(shifts)) if shifts else None
    shipped, reason = landmark_gate(n, label_agreement, shift, angles)
    sample = None if first is None else first[None]  # timed on the first film's input
    return LandmarkInt8Result(
        n_test=n,
        label_agreement=label_agreement,
        landmark_shift_mean=shift,
        landmark_shift_max=max(film_shifts) if film_shifts else None,
        visibility_agreement=float(np.mean(visible)) if visible else None,
        angles=angles,
        **file_figures(fp32_path, int8_path, fp32.session, int8.session, sample),
        shipped=shipped,
        reason=reason,
        calibration_images=calibration_images,
        float_tail=tail,
        float_nodes=tuple(float_nodes),
    )


def _points(reading: dict[str, Any]) -> np.ndarray:
    """The 68 corners and, when read, the S1 endplate, (P, 2) film pixels (NaN: not visible)."""
    pts = np.asarray(reading["landmarks"], dtype=np.float64).reshape(-1, 2)
    if reading.get("sacrum") is not None:
        pts = np.concatenate([pts, np.asarray(reading["sacrum"], dtype=np.float64).reshape(-1, 2)])
    return pts
