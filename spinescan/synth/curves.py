"""Endplate orientations that realise target angles: sagittal (kyphosis, lordosis) and coronal curves.

Target angles are met exactly: the segmental angles are random in shape but normalised so that
the measured Cobb angles equal the sampled ones. The shape randomness (where the curve bends, how
much in discs versus bodies) is drawn the same way for every class, so only the magnitude carries
the label.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from spinescan.synth.geometry import (
    L1,
    LEVELS,
    N_ENDPLATES,
    N_VERT,
    T4,
    T12,
    Dimensions,
    Spine,
    bottom_index,
    build_spine,
    max_cobb_from_phi,
    top_index,
)

# Bottom-up steps between consecutive endplates: even steps are discs, odd steps bodies.
_LORD = slice(0, top_index(L1))  # S1 superior .. L1 superior
_JUNCTION = top_index(L1)  # the T12/L1 disc
_KYPH = slice(bottom_index(T12), top_index(T4))  # T12 inferior .. T4 superior
_UPPER = slice(top_index(T4), N_ENDPLATES - 1)  # T4 superior .. T1 superior

# Share of lumbar lordosis per step, bottom-up (disc L5/S1, body L5, disc L4/5, body L4, ...):
# about two thirds sits at L4-S1 and most of it in the discs (Bernhardt & Bridwell 1989).
_LORD_BASE = np.array([0.22, 0.12, 0.18, 0.08, 0.12, 0.06, 0.08, 0.05, 0.05, 0.04])


# Per-call constants, computed once (the same values every film).
_LORD_RAMP = np.linspace(0.0, 1.0, _LORD_BASE.size)
_KYPH_POS = np.linspace(0.0, 1.0, _KYPH.stop - _KYPH.start)
_KYPH_SHARE = np.where(np.arange(_KYPH.stop - _KYPH.start) % 2 == 0, 1.0, 0.8)
for _a in (_LORD_RAMP, _KYPH_POS, _KYPH_SHARE):
    _a.flags.writeable = False


def _jitter(rng: np.random.Generator, base: np.ndarray, sigma: float) -> np.ndarray:
    w = base * np.exp(rng.normal(0.0, sigma, base.shape))
    return w / w.sum()


def _balance(phi: np.ndarray, dims: Dimensions, offset: float) -> Spine:
    """Turn the whole spine about S1 so that T1's centre sits ``offset`` mm from S1's midpoint in x.

    Standing people keep the head over the pelvis (the C7 plumb line falls near the sacrum), so
    the global orientation, and with it the sacral slope, follows from the curves.
    """
    spine = build_spine(phi, dims)
    x, y = spine.centres[0]
    radius = float(np.hypot(x, y))
    alpha = float(np.arctan2(x, y))
    r = np.degrees(np.arcsin(np.clip(offset / radius, -0.9, 0.9)) - alpha)
    return build_spine(phi + r, dims)


def lateral_spine(kyphosis: float, lordosis: float, dims: Dimensions, rng: np.random.Generator) -> Spine:
    """A sagittal spine with exactly ``kyphosis`` (T4-T12) and ``lordosis`` (L1-S1) degrees.

    ``+x`` is anterior: kyphosis turns the endplates forward going up, lordosis backward.
    """
    delta = np.zeros(N_ENDPLATES - 1)
    tilt = float(rng.uniform(-0.4, 0.4))  # shifts lordosis towards the upper or lower lumbar spine
    base = _LORD_BASE * np.exp(tilt * _LORD_RAMP)
    delta[_LORD] = -lordosis * _jitter(rng, base, 0.25)
    delta[_JUNCTION] = float(rng.normal(0.0, 1.5))
    pos = _KYPH_POS
    apex, width = rng.uniform(0.35, 0.7), rng.uniform(0.25, 0.45)
    bell = np.exp(-0.5 * ((pos - apex) / width) ** 2) + 0.15
    bell *= _KYPH_SHARE  # bodies (wedging) and discs share the bend
    delta[_KYPH] = kyphosis * _jitter(rng, bell, 0.25)
    upper = float(rng.uniform(2.0, 10.0))
    delta[_UPPER] = upper * _jitter(rng, np.ones(_UPPER.stop - _UPPER.start), 0.3)
    phi = np.concatenate([[0.0], np.cumsum(delta)])
    return _balance(phi, dims, offset=float(rng.normal(-15.0, 15.0)))


@dataclass(frozen=True)
class CoronalCurve:
    """What was drawn: curve type, apex level and convex side (image side) of the main curve."""

    curve_type: str
    apex: str
    side: str


_CURVE_TYPES = {
    # name: list of (apex range in vertebra units, sign relative to the main curve)
    "C-thoracic": [((5.5, 8.5), 1.0)],
    "C-thoracolumbar": [((10.0, 12.5), 1.0)],
    "C-lumbar": [((12.5, 14.5), 1.0)],
    "S": [((5.5, 8.5), 1.0), ((12.5, 14.5), -1.0)],
}


@functools.lru_cache(maxsize=1)
def _endplate_positions() -> np.ndarray:
    """Position of every endplate along the spine, bottom-up, in vertebra units from T1's top."""
    s = np.empty(N_ENDPLATES)
    s[0] = N_VERT
    for v in range(N_VERT):
        s[bottom_index(v)] = v + 0.8
        s[top_index(v)] = v
    s.flags.writeable = False  # cached: shared by every call
    return s


def _bump(s: np.ndarray, apex: float, half_span: float) -> np.ndarray:
    """Tilt profile of one curve: extreme tilts at the end vertebrae ``apex +/- half_span``."""
    t = (s - (apex - 2.0 * half_span)) / (4.0 * half_span)
    return np.where((t >= 0) & (t <= 1), np.sin(2.0 * np.pi * t), 0.0)


def coronal_spine(
    cobb: float, scoliotic: bool, dims: Dimensions, rng: np.random.Generator
) -> tuple[Spine, CoronalCurve]:
    """A coronal spine whose largest Cobb angle is exactly ``cobb`` degrees.

    Scoliotic spines get a C- or S-shaped curve with a random apex level and side; healthy spines
    a small, irregular asymmetry (``curve_type`` "none"). The shape is then scaled to ``cobb``.
    """
    s = _endplate_positions()
    noise = sum(
        rng.normal(0.0, 1.0) * np.sin(2.0 * np.pi * f * s / N_VERT + rng.uniform(0, 2 * np.pi))
        for f in (0.7, 1.3, 2.1)
    )
    if scoliotic:
        name = list(_CURVE_TYPES)[int(rng.integers(len(_CURVE_TYPES)))]
        sign = 1.0 if rng.random() < 0.5 else -1.0
        tau = 0.08 * noise
        apexes = []
        for (lo, hi), rel in _CURVE_TYPES[name]:
            apex = float(rng.uniform(lo, hi))
            amp = 1.0 if rel > 0 else float(rng.uniform(0.5, 1.1))
            tau = tau + sign * rel * amp * _bump(s, apex, float(rng.uniform(2.5, 4.5)))
            apexes.append((amp, apex))
        main_apex = max(apexes)[1]
    else:
        name, tau, main_apex = "none", noise, None
    raw = max_cobb_from_phi(tau)
    phi = tau * (cobb / raw) if raw > 1e-9 else tau
    spine = _balance(phi, dims, offset=float(rng.normal(0.0, 8.0)))
    if main_apex is None:
        return spine, CoronalCurve(name, "", "")
    apex_v = int(np.clip(round(main_apex), 0, N_VERT - 1))
    centres = spine.centres
    ends = centres[max(apex_v - 4, 0)], centres[min(apex_v + 4, N_VERT - 1)]
    chord = ends[1] - ends[0]
    rel = centres[apex_v] - ends[0]
    cross = chord[0] * rel[1] - chord[1] * rel[0]
    side = "right" if cross > 0 else "left"  # convex towards +x, the image right
    return spine, CoronalCurve(name, LEVELS[apex_v], side)
