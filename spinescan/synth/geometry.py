"""Spine geometry: vertebrae stacked along a centreline built from endplate orientations.

The spine is described bottom-up as the orientation (degrees) of every endplate: S1 superior,
then for L5 up to T1 the inferior and the superior endplate. Each vertebral body is a quad
between its two endplates, each disc the gap between neighbouring endplates, so every angle is
exact by construction: a Cobb angle between two endplates is the difference of their
orientations, whatever the vertebral sizes. Coordinates are millimetres in a patient frame with
``y`` up; ``+x`` is anterior in the lateral view and the image's right in the AP view.

An orientation ``phi`` tilts an endplate's normal by ``phi`` towards ``+x``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

# re-exported: the manifest's angle definitions (tests/test_angles.py holds the generator to them)
from spinescan.radiograph.angles import kyphosis_from_landmarks, lordosis_from_landmarks  # noqa: F401
from spinescan.radiograph.coronal import max_cobb_from_landmarks  # noqa: F401
from spinescan.radiograph.vertebrae import edge_angle, line_angle_between  # noqa: F401

LEVELS = (
    "T1",
    "T2",
    "T3",
    "T4",
    "T5",
    "T6",
    "T7",
    "T8",
    "T9",
    "T10",
    "T11",
    "T12",
    "L1",
    "L2",
    "L3",
    "L4",
    "L5",
)
N_VERT = len(LEVELS)
T4, T12, L1 = LEVELS.index("T4"), LEVELS.index("T12"), LEVELS.index("L1")
N_ENDPLATES = 2 * N_VERT + 1  # S1 superior + (inferior, superior) per vertebra, bottom-up


def bottom_index(v: int) -> int:
    """Index, in the bottom-up endplate sequence, of vertebra ``v``'s inferior endplate."""
    return 1 + 2 * (N_VERT - 1 - v)


def top_index(v: int) -> int:
    """Index, in the bottom-up endplate sequence, of vertebra ``v``'s superior endplate."""
    return 2 + 2 * (N_VERT - 1 - v)


_TOPS = np.array([top_index(v) for v in range(N_VERT)])  # superior endplates of T1..L5
_BOTTOMS = np.array([bottom_index(v) for v in range(N_VERT)])  # inferior endplates of T1..L5


def _is_scalar(x: object) -> bool:
    """``np.ndim(x) == 0``, answered without numpy's dispatch for the common scalar types."""
    if isinstance(x, (float, int, np.generic)):
        return True
    return np.ndim(x) == 0


def normal(phi_deg: np.ndarray | float) -> np.ndarray:
    """Unit endplate normal (pointing up) for orientation ``phi``."""
    if _is_scalar(phi_deg):
        a = math.radians(float(phi_deg))
        return np.array([math.sin(a), math.cos(a)])
    a = np.radians(phi_deg)
    out = np.empty((*np.shape(a), 2))  # = np.stack([sin, cos], axis=-1), without its overhead
    out[..., 0] = np.sin(a)
    out[..., 1] = np.cos(a)
    return out


def along(phi_deg: np.ndarray | float) -> np.ndarray:
    """Unit vector along an endplate, towards ``+x``."""
    if _is_scalar(phi_deg):
        a = math.radians(float(phi_deg))
        return np.array([math.cos(a), -math.sin(a)])
    a = np.radians(phi_deg)
    out = np.empty((*np.shape(a), 2))  # = np.stack([cos, -sin], axis=-1), without its overhead
    out[..., 0] = np.cos(a)
    out[..., 1] = -np.sin(a)
    return out


_SIZE_RAMP = np.linspace(0.0, 1.0, N_VERT) ** 1.3  # T1 .. L5 growth profile (sample_dimensions)
_SIZE_RAMP.flags.writeable = False


@dataclass(frozen=True)
class Dimensions:
    """Vertebral sizes in mm, T1..L5 (``width`` is the extent seen in the chosen view)."""

    heights: np.ndarray
    widths: np.ndarray
    discs: np.ndarray  # disc below each vertebra (L5's is the L5/S1 disc)
    s1_width: float


def sample_dimensions(view: str, rng: np.random.Generator, size: float = 1.0) -> Dimensions:
    """Adult vertebral dimensions, growing from T1 to L5, scaled by a per-patient size factor.

    Typical values: body height 15-17 mm at T1 to 25-28 mm in the lumbar spine; sagittal depth
    16 mm (T1) to 35 mm (L5); coronal width 27 mm (T1) to 50 mm (L5); discs 4-5 mm in the upper
    thoracic to 10-12 mm in the lower lumbar spine. ``size`` is the patient's overall scale.
    """
    t = _SIZE_RAMP
    heights = (16.0 + 11.0 * t) * size * np.exp(rng.normal(0, 0.04, N_VERT))
    if view == "lateral":
        widths = (17.0 + 18.0 * t) * size
        s1_width = 40.0 * size
    else:
        widths = (28.0 + 22.0 * t) * size
        s1_width = 44.0 * size
    widths = widths * np.exp(rng.normal(0, 0.03, N_VERT))
    discs = (4.0 + 7.0 * t**1.5) * size * float(rng.uniform(0.8, 1.15)) * np.exp(rng.normal(0, 0.08, N_VERT))
    return Dimensions(heights, widths, discs, s1_width)


@dataclass(frozen=True)
class Spine:
    """A built spine: endplate orientations and the resulting corner points (patient frame, mm).

    ``corners[v]`` holds vertebra ``v``'s superior ``-x`` end, superior ``+x`` end, inferior
    ``-x`` end and inferior ``+x`` end; ``sacrum`` the S1 superior endplate's two ends.
    """

    phi: np.ndarray  # (N_ENDPLATES,) bottom-up endplate orientations
    corners: np.ndarray  # (N_VERT, 4, 2)
    sacrum: np.ndarray  # (2, 2)
    dims: Dimensions

    # Derived arrays are computed once per spine (drawing reads them dozens of times) and
    # returned read-only, since every caller shares the one copy.
    @functools.cached_property
    def top_phi(self) -> np.ndarray:
        return _frozen(self.phi[_TOPS])

    @functools.cached_property
    def bottom_phi(self) -> np.ndarray:
        return _frozen(self.phi[_BOTTOMS])

    @functools.cached_property
    def centres(self) -> np.ndarray:
        return _frozen(self.corners.mean(axis=1))

    @functools.cached_property
    def frames(self) -> Frames:
        return Frames(self)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class Frames:
    """Every vertebra's own frame: centre, unit ``e`` (towards ``+x``) and ``n`` (up), sizes."""

    def __init__(self, spine: Spine) -> None:
        c = spine.corners
        self.centre = spine.centres
        phi = (spine.top_phi + spine.bottom_phi) / 2.0
        self.e, self.n = along(phi), normal(phi)
        self.height = (np.hypot(*(c[:, 0] - c[:, 2]).T) + np.hypot(*(c[:, 1] - c[:, 3]).T)) / 2.0
        self.width = np.asarray(spine.dims.widths, dtype=np.float64)

    def at(self, v: int | np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Points ``a`` mm along ``e`` and ``b`` mm along ``n`` from vertebra ``v``'s centre.

        ``v`` may be an index array broadcasting against ``a`` and ``b``; returns (..., 2).
        """
        v = np.asarray(v)
        a, b = np.asarray(a, dtype=np.float64)[..., None], np.asarray(b, dtype=np.float64)[..., None]
        return self.centre[v] + a * self.e[v] + b * self.n[v]


def build_spine(phi: np.ndarray, dims: Dimensions) -> Spine:
    """Stack discs and bodies upwards from the S1 endplate, whose midpoint is the origin.

    Each disc and body is walked along the mean normal of its two endplates, so a wedge-shaped
    disc (endplates at different angles) is thicker on one side, as in a real curve.
    """
    phi = np.asarray(phi, dtype=np.float64)
    if phi.shape != (N_ENDPLATES,):
        raise ValueError(f"need {N_ENDPLATES} endplate orientations, got {phi.shape}")
    # Bottom-up steps: disc below L5, body L5, disc below L4, ... body T1; each along the mean
    # normal of its two endplates, summed in one cumulative sum.
    mids = (phi[:-1] + phi[1:]) / 2.0
    lengths = np.empty(N_ENDPLATES - 1)
    lengths[0::2] = np.asarray(dims.discs, dtype=np.float64)[::-1]
    lengths[1::2] = np.asarray(dims.heights, dtype=np.float64)[::-1]
    pos = np.cumsum(lengths[:, None] * normal(mids), axis=0)  # pos[2k]: bottom, pos[2k+1]: top
    bottoms, tops = pos[0::2][::-1], pos[1::2][::-1]  # T1..L5
    half = (np.asarray(dims.widths, dtype=np.float64) / 2.0)[:, None]
    at, ab = along(phi[_TOPS]), along(phi[_BOTTOMS])
    corners = np.empty((N_VERT, 4, 2))  # = np.stack([...], axis=1)
    corners[:, 0] = tops - half * at
    corners[:, 1] = tops + half * at
    corners[:, 2] = bottoms - half * ab
    corners[:, 3] = bottoms + half * ab
    a0 = along(phi[0])
    sacrum = np.array([-dims.s1_width / 2.0 * a0, dims.s1_width / 2.0 * a0])
    return Spine(phi, corners, sacrum, dims)


# --- measurement from landmarks: one definition, shared with the predictor ----------------------
# (kyphosis_from_landmarks, lordosis_from_landmarks, max_cobb_from_landmarks, edge_angle and
# line_angle_between live in the light island, imported at the top of this module.)


_UPPER = np.triu(np.ones((N_VERT, N_VERT), dtype=bool))  # top endplate above (or of) the bottom one


def max_cobb_from_phi(phi: np.ndarray) -> float:
    """The same largest Cobb angle, straight from the endplate orientations."""
    top = phi[_TOPS]
    bottom = phi[_BOTTOMS]
    diff = np.abs(top[:, None] - bottom[None, :])
    # = np.triu(diff).max(): the entries below the diagonal would be zeroed, and never exceed the
    # non-negative ones kept
    return float(diff[_UPPER].max())
