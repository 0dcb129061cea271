"""Landmark targets and read-out in model-input space (light island: numpy only).

A landmark model sees the preprocessed tensor (:func:`spinescan.radiograph.preprocess.preprocess_placed`)
and outputs, per point, ``(x, y)`` normalised to the input tensor (``0`` and ``1`` are the outer
edges of the first and last input pixels) and a visibility logit. Training encodes the manifest's
landmarks through the film's :class:`~spinescan.radiograph.preprocess.Placement`; the predictor decodes
the model's output through the same placement back to the film's pixels. Both directions live here,
beside the preprocessing, so the ONNX predictor needs no TensorFlow to read a landmark model.

Points: the 68 AASCE corners (T1..L5, each top-left, top-right, bottom-left, bottom-right) and the
two ends of the S1 superior endplate (left, right), 70 in all. AP models may train the sacrum too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinescan.radiograph.preprocess import Placement
from spinescan.radiograph.vertebrae import LEVELS, N_LANDMARKS

CORNERS = ("TL", "TR", "BL", "BR")
POINT_NAMES = (*(f"{v}-{c}" for v in LEVELS for c in CORNERS), "S1-L", "S1-R")
N_POINTS = len(POINT_NAMES)
#: A point counts as visible when it lies this many input pixels inside the resized film (not on
#: the letterbox padding, not cut off by the crop).
VISIBLE_MARGIN = 0.0
#: A point whose visibility probability is under this is read as not visible.
VISIBILITY_THRESHOLD = 0.5


_MIRROR = {"TL": "TR", "TR": "TL", "BL": "BR", "BR": "BL", "L": "R", "R": "L"}


def mirror_order(names: tuple[str, ...] = POINT_NAMES) -> list[int]:
    """For each point of a left-right mirrored AP film, the index of the point it was: a mirror
    turns every top-left corner into a top-right one (and the S1 endplate's left end into its right),
    so training targets are re-ordered by this list when a film is flipped."""
    index = {n: i for i, n in enumerate(names)}
    order = []
    for n in names:
        level, _, side = n.rpartition("-")
        order.append(index[f"{level}-{_MIRROR[side]}"])
    return order


def point_groups(names: tuple[str, ...] = POINT_NAMES) -> tuple[int, ...]:
    """Each point's vertebra (or S1) as a group index, in order of first appearance: the centre-offset
    read-out (:mod:`spinescan.landmark_net.model`) finds each group once and its points as offsets."""
    levels: dict[str, int] = {}
    return tuple(levels.setdefault(n.rpartition("-")[0], len(levels)) for n in names)


@dataclass(frozen=True)
class Targets:
    """One film's training targets: normalised input coordinates (70, 2) and visibility (70,)."""

    coords: np.ndarray
    visible: np.ndarray


def to_normalised(points_input: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """Input-pixel coordinates (pixel-centre convention) -> [0, 1] across the input tensor."""
    h, w = input_hw
    p = np.asarray(points_input, dtype=np.float64)
    return np.stack([(p[..., 0] + 0.5) / w, (p[..., 1] + 0.5) / h], axis=-1)


def from_normalised(coords: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`to_normalised`."""
    h, w = input_hw
    c = np.asarray(coords, dtype=np.float64)
    return np.stack([c[..., 0] * w - 0.5, c[..., 1] * h - 0.5], axis=-1)


def points_of(landmarks: np.ndarray, sacrum: np.ndarray | None) -> np.ndarray:
    """The 70 points (film pixels) from 68 corners and the S1 endplate (NaN when ``sacrum`` is None)."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(N_LANDMARKS, 2)
    s = np.full((2, 2), np.nan) if sacrum is None else np.asarray(sacrum, dtype=np.float64).reshape(2, 2)
    return np.concatenate([lm, s])


def encode(
    landmarks: np.ndarray, sacrum: np.ndarray | None, placement: Placement, input_hw: tuple[int, int]
) -> Targets:
    """Manifest landmarks (film pixels) -> targets of the input tensor the film became.

    A point is visible when it is known (finite) and falls on the resized film inside the input;
    an invisible point keeps a clipped coordinate (the loss masks it).
    """
    pts = placement.to_input(points_of(landmarks, sacrum))
    known = np.isfinite(pts).all(axis=1)
    x0, y0 = placement.pad_left - 0.5 + VISIBLE_MARGIN, placement.pad_top - 0.5 + VISIBLE_MARGIN
    x1 = placement.pad_left + placement.new_width - 0.5 - VISIBLE_MARGIN
    y1 = placement.pad_top + placement.new_height - 0.5 - VISIBLE_MARGIN
    with np.errstate(invalid="ignore"):
        inside = (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)
    visible = known & inside
    coords = np.clip(np.nan_to_num(to_normalised(pts, input_hw), nan=0.5), 0.0, 1.0)
    return Targets(coords.astype(np.float32), visible)


@dataclass(frozen=True)
class Decoded:
    """A landmark model's reading of one film, in the film's own pixels.

    ``landmarks`` (68, 2) and ``sacrum`` (2, 2) hold NaN for points judged not visible;
    ``visibility`` is the model's probability per point (70,).
    """

    landmarks: np.ndarray
    sacrum: np.ndarray
    visibility: np.ndarray


def decode(
    coords: np.ndarray,
    visibility_logits: np.ndarray | None,
    placement: Placement,
    input_hw: tuple[int, int],
    threshold: float = VISIBILITY_THRESHOLD,
) -> Decoded:
    """Model output for one film -> landmarks in the film's pixels (NaN where not visible)."""
    c = np.asarray(coords, dtype=np.float64).reshape(N_POINTS, 2)
    pts = placement.to_source(from_normalised(c, input_hw))
    if visibility_logits is None:
        prob = np.ones(N_POINTS)
    else:
        prob = 1.0 / (1.0 + np.exp(-np.asarray(visibility_logits, dtype=np.float64).reshape(N_POINTS)))
    pts[prob < threshold] = np.nan
    return Decoded(pts[:N_LANDMARKS], pts[N_LANDMARKS:], prob)
