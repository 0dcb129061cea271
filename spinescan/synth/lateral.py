"""Lateral (sagittal) anatomy: spine with posterior elements, cervical spine and skull, ribs, lungs,
heart, sacrum, pelvis and femoral heads inside a soft-tissue silhouette. ``+x`` is anterior.

Everything is positioned relative to the built spine, so the soft tissue follows the curves as a
body would, but every size and offset comes from the habitus (class-independent).
"""

from __future__ import annotations

import math

import numpy as np

from spinescan.synth.anatomy import Habitus, Local, rounded_quads, stack
from spinescan.synth.canvas import Canvas, ellipse_points, smooth_polyline
from spinescan.synth.geometry import L1, N_VERT, Spine, along, normal


def _v(x: float, y: float) -> np.ndarray:
    return np.array((x, y))


def _rot(v: np.ndarray, deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([v[0] * np.cos(a) - v[1] * np.sin(a), v[0] * np.sin(a) + v[1] * np.cos(a)])


def hip_centre(spine: Spine, hab: Habitus) -> np.ndarray:
    """Femoral head centre from the pelvic incidence (sacral slope + pelvic tilt).

    Pelvic incidence is the angle between the S1 endplate's normal and the line from the endplate's
    midpoint to the hip axis (Duval-Beaupere/Legaye 1998), anterior and below the sacrum.
    """
    incidence = float(spine.phi[0]) + hab.pelvic_tilt
    down = -normal(float(spine.phi[0]))
    return _rot(down, incidence) * 105.0 * hab.size


def cervical(spine: Spine, rng: np.random.Generator, hab: Habitus) -> np.ndarray:
    """C7..C2 bodies continuing above T1 with a cervical lordosis (not landmarks, context only)."""
    n = 6
    lord = float(rng.uniform(15.0, 40.0))
    start_phi = float(spine.top_phi[0])
    phis = start_phi - np.cumsum(np.full(n, lord / n))
    top = spine.corners[0, :2].mean(axis=0)
    s = hab.size
    return stack(top, start_phi, phis, np.full(n, 13.5 * s), np.full(n, 16.0 * s), np.full(n, 5.0 * s))


def _along(phi_deg: float) -> tuple[float, float]:
    """``along(phi)`` as two Python floats (the same libm values; see geometry.along)."""
    a = math.radians(phi_deg)
    return math.cos(a), -math.sin(a)


def _normal(phi_deg: float) -> tuple[float, float]:
    """``normal(phi)`` as two Python floats (see geometry.normal)."""
    a = math.radians(phi_deg)
    return math.sin(a), math.cos(a)


# _skin and _lungs place a few dozen single points. They work in Python floats, each coordinate
# computed by the same IEEE operations, in the same order, as the 2-vector numpy expressions they
# replaced (so the films are bit-identical), at a fraction of numpy's per-call cost.


def _skin(spine: Spine, neck: np.ndarray, hip: np.ndarray, hab: Habitus) -> np.ndarray:
    """The body's outline: anterior skin bottom-up, then posterior skin top-down."""
    c = spine.corners.tolist()
    top_phi = spine.top_phi.tolist()
    fat = hab.fat
    hx, hy = hip.tolist()

    def ant(v: int, depth: float) -> tuple[float, float]:  # mid anterior wall + depth along
        (x1, y1), (x3, y3) = c[v][1], c[v][3]
        ax, ay = _along(top_phi[v])
        return x1 + 0.5 * (x3 - x1) + depth * ax, y1 + 0.5 * (y3 - y1) + depth * ay

    def post(v: int, depth: float) -> tuple[float, float]:  # mid posterior wall - depth along
        (x0, y0), (x2, y2) = c[v][0], c[v][2]
        ax, ay = _along(top_phi[v])
        return x0 + 0.5 * (x2 - x0) - depth * ax, y0 + 0.5 * (y2 - y0) - depth * ay

    ex, ey = neck[-1].mean(axis=0).tolist()  # the head sits on C2
    (ax3, ay3), (px2, py2) = neck[3, 1].tolist(), neck[2, 0].tolist()
    anterior = [
        (hx + (70.0 + fat), hy + -260.0),
        (hx + (75.0 + fat), hy + -60.0),
        ant(16, hab.belly * 0.85),
        ant(14, hab.belly),
        ant(11, hab.chest * 0.95),
        ant(7, hab.chest),
        ant(3, hab.chest * 0.9),
        ant(0, 60.0 + fat),
        (ax3 + (35.0 + 0.5 * fat), ay3 + 0.0),
        (ex + 80.0, ey + 60.0),
        (ex + 60.0, ey + 200.0),
    ]
    posterior = [
        (ex + -110.0, ey + 200.0),
        (ex + -95.0, ey + 60.0),
        (px2 + (-55.0 - 0.5 * fat), py2 + 0.0),
        post(1, 60.0 + fat),
        post(6, 55.0 + fat),
        post(12, 55.0 + fat),
        post(16, 50.0 + fat),
        (hx + (-85.0 - fat), hy + 40.0),
        (hx + (-95.0 - fat), hy + -80.0),
        (hx + (-60.0 - fat), hy + -260.0),
    ]
    return np.concatenate([smooth_polyline(np.array(anterior), 80), smooth_polyline(np.array(posterior), 80)])


def _lungs(spine: Spine, hab: Habitus) -> np.ndarray:
    c = spine.corners.tolist()
    top_phi = spine.top_phi.tolist()
    dia = min(max(round(hab.diaphragm), 8), 11)
    back = []
    for v in (1, 4, 8, dia + 1):
        (x, y), (ax, ay) = c[v][0], _along(top_phi[v])
        back.append((x - 22.0 * ax, y - 22.0 * ay))
    depth = hab.chest - 15.0 - hab.fat
    front = []
    for v in (dia - 1, 6, 3, 1):
        (x, y), (ax, ay) = c[v][1], _along(top_phi[v])
        front.append((x + depth * ax, y + depth * ay))
    mx, my = spine.corners[0, :2].mean(axis=0).tolist()
    (nx, ny), (ax, ay) = _normal(top_phi[0]), _along(top_phi[0])
    apex = (mx + 25.0 * nx + 20.0 * ax, my + 25.0 * ny + 20.0 * ay)
    (x, y), (nx, ny) = c[dia][1], _normal(top_phi[dia])
    dome = ((x + front[0][0]) / 2.0 + 15.0 * nx, (y + front[0][1]) / 2.0 + 15.0 * ny)
    low = ((back[-1][0] + dome[0]) / 2.0 - 0.0, (back[-1][1] + dome[1]) / 2.0 - 10.0)
    pts = [apex, *back, low, dome, *front, apex]
    return smooth_polyline(np.array(pts), 60)


def draw_lateral(cv: Canvas, spine: Spine, hab: Habitus, rng: np.random.Generator) -> None:
    c = spine.corners
    neck = cervical(spine, rng, hab)
    hip = hip_centre(spine, hab)
    skin = _skin(spine, neck, hip, hab)
    cv.polygons("soft", [skin], 1.0)
    head = neck[-1].mean(axis=0)
    cv.ellipse("soft", head + _v(15.0, 95.0), (95.0, 105.0), 10.0, 1.0)

    # Air in the lungs, with the heart's soft tissue in front and below.
    cv.polygons("air", [_lungs(spine, hab)], 1.0)
    heart = c[8, 1] + (hab.chest * 0.55) * along(float(spine.top_phi[8])) + [0.0, -10.0]
    cv.ellipse("air", heart, (hab.chest * 0.38, 60.0), -30.0, 0.35)
    corners, top_phi = c.tolist(), spine.top_phi.tolist()
    for _ in range(hab.gas):  # bowel gas: dark pockets in the abdomen, anywhere in front of L1-S1
        v = int(rng.integers(L1, N_VERT))
        (x, y), (ax, ay) = corners[v][1], _along(top_phi[v])
        depth = rng.uniform(15.0, hab.belly * 0.8)
        x, y = x + depth * ax, y + depth * ay  # in Python floats, as _skin
        dx, dy = rng.normal(0, 12, 2).tolist()
        cv.ellipse("air", (x + dx, y + dy), tuple(rng.uniform(6.0, 22.0, 2)), rng.uniform(0, 180), 0.6)

    # Ribs: both sides nearly superimposed, sweeping forward and down from the spine.
    f = spine.frames
    v = _RIB_LEVELS  # both sides of ribs 2-11, nearly superimposed
    off = np.zeros((10, 2))
    off[:, 1] = rng.uniform(4.0, 10.0, 10)
    off = off.reshape(-1, 1)
    half = 0.5 * f.width[v]
    a = np.concatenate(
        [
            -half - 20.0 - off,
            -half - 45.0 - off,
            np.full_like(off, hab.chest * 0.35),
            np.full_like(off, hab.chest * 0.75 - hab.fat),
        ],
        axis=1,
    )
    b = np.concatenate(
        [np.zeros_like(off), np.full_like(off, -20.0), -70.0 - off, -110.0 - 1.5 * off], axis=1
    )
    rib_lines = smooth_polyline(f.at(v, a, b), 24)
    cv.lines("ribs", rib_lines, 0.6, 7.0, False)
    cv.lines("ribs", rib_lines, 0.25, 3.5, False)
    if rng.random() < 0.65:
        _arms(cv, spine, hab, rng)

    # Vertebral bodies (cancellous fill) and their cortical rims and endplates.
    bodies = rounded_quads(np.concatenate([c, neck]))
    cv.polygons("bone", bodies, 0.6)
    cv.lines("cortex", bodies, 1.0, 1.6, True)
    _posterior_elements(cv, spine)
    _sacrum_pelvis(cv, spine, hip, hab)
    # Skull: a shell with a thick bright vault.
    cv.ellipse("bone", head + _v(20.0, 100.0), (82.0, 92.0), 10.0, 0.45)
    cv.ellipse("cortex", head + _v(20.0, 100.0), (82.0, 92.0), 10.0, 1.0, width_mm=7.0)
    cv.lines(
        "cortex",
        [np.array([head + _v(5.0, 20.0), head + _v(70.0, 10.0), head + _v(75.0, -35.0)])],
        0.8,
        8.0,
        False,
    )


def _arms(cv: Canvas, spine: Spine, hab: Habitus, rng: np.random.Generator) -> None:
    """Arms raised forward over the chest, as patients hold them for a lateral full-spine film."""
    lv = Local(spine, 2)
    shoulder = lv.at([[lv.width * 0.5 + 25.0, 25.0]])[0]
    angle = np.radians(rng.uniform(20.0, 80.0))  # from hanging straight down towards horizontal
    elbow = shoulder + 290.0 * hab.size * np.array([np.sin(angle), -np.cos(angle)])
    bend = angle + np.radians(rng.uniform(20.0, 70.0))
    hand = elbow + 260.0 * hab.size * np.array([np.sin(bend), -np.cos(bend)])
    cv.lines("soft", [np.array([shoulder, elbow, hand])], 1.0, 85.0 + hab.fat, False)
    humerus = np.array([shoulder, elbow])
    cv.lines("pelvis", [humerus], 0.3, 20.0, False)
    cv.lines("cortex", [humerus + _v(6.0, 0.0), humerus - _v(6.0, 0.0)], 0.3, 3.0, False)
    forearm = np.array([elbow, hand])
    side = np.array([np.cos(bend), np.sin(bend)]) * 7.0  # radius and ulna side by side
    cv.lines("pelvis", [forearm + side, forearm - side], 0.3, 10.0, False)
    cv.ellipse("pelvis", shoulder, (24.0, 24.0), 0.0, 0.4)


_RIB_LEVELS = np.repeat(np.arange(1, 11), 2)[:, None]
_RIB_LEVELS.flags.writeable = False

# Per-level constants of the posterior elements (the same for every film, computed once).
_LEVEL_COLUMN = np.arange(N_VERT)[:, None]
_THORACIC = np.arange(N_VERT) < L1
_SPINOUS_ANGLE = np.radians(
    np.where(np.arange(N_VERT) < L1 + 1, 55.0 - 50.0 * np.maximum(0.0, (np.arange(N_VERT) - 8) / 6.0), 8.0)
)[:, None]  # spinous processes slope down steeply in the thoracic spine, nearly level in the lumbar
_SPINOUS_COS, _SPINOUS_SIN = np.cos(_SPINOUS_ANGLE), np.sin(_SPINOUS_ANGLE)
for _a in (_LEVEL_COLUMN, _THORACIC, _SPINOUS_ANGLE, _SPINOUS_COS, _SPINOUS_SIN):
    _a.flags.writeable = False


def _posterior_elements(cv: Canvas, spine: Spine) -> None:
    """Pedicles, laminae/facet pillars and spinous processes behind each body (at ``-x``)."""
    f = spine.frames
    v = _LEVEL_COLUMN
    w, h = f.width[:, None], f.height[:, None]
    back = -w / 2.0
    ped = f.at(
        v,
        np.concatenate([back + 1, back - 0.45 * w, back - 0.45 * w, back + 1], axis=1),
        np.concatenate([0.45 * h, 0.4 * h, 0 * h, -0.05 * h], axis=1),
    )
    pillar = f.at(
        v,
        np.concatenate([back - 0.4 * w, back - 0.8 * w, back - 0.9 * w, back - 0.5 * w], axis=1),
        np.concatenate([0.75 * h, 0.8 * h, -0.65 * h, -0.8 * h], axis=1),
    )
    length = 0.7 * w + 8.0
    base = back - 0.75 * w
    half = np.where(_THORACIC, 4.5, 0.28 * f.height)[:, None]
    tip_x, tip_y = base - length * _SPINOUS_COS, -length * _SPINOUS_SIN
    spinous = f.at(
        v,
        np.concatenate([base, tip_x, tip_x, base], axis=1),
        np.concatenate([half, tip_y + half * 0.6, tip_y - half * 0.6, -half], axis=1),
    )
    polys = np.concatenate([ped, pillar, spinous])
    cv.polygons("post", polys, 0.8)
    cv.lines("cortex", spinous, 0.35, 1.2, True)


def _sacrum_pelvis(cv: Canvas, spine: Spine, hip: np.ndarray, hab: Habitus) -> None:
    phi0 = float(spine.phi[0])
    n0, e0 = normal(phi0), along(phi0)
    s1w = spine.dims.s1_width
    t = np.linspace(0.0, 1.0, 16)
    length = 115.0 * hab.size
    centre = -length * t[:, None] * n0 + (0.35 * length * t**2)[:, None] * e0 - 0.1 * s1w * e0 * t[:, None]
    half = (s1w / 2.0) * (1.0 - 0.7 * t)
    sacrum = np.concatenate([centre + half[:, None] * e0, (centre - 1.3 * half[:, None] * e0)[::-1]])
    # Iliac wing and ischium project over the sacrum: large, faint, with a bright crest.
    wing = ellipse_points(hip + _v(-35.0, 75.0), (60.0 * hab.size, 85.0 * hab.size), -15.0)
    cv.polygons("pelvis", [wing], 0.45)
    cv.lines("cortex", [wing[4:20]], 0.5, 3.0, False)
    cv.polygons("pelvis", [sacrum], 1.0)
    cv.lines("cortex", [spine.sacrum], 1.0, 2.0, False)
    cv.ellipse("pelvis", hip + _v(-15.0, -50.0), (20.0, 32.0), 10.0, 0.8)
    cv.ellipse("pelvis", hip + _v(45.0, -35.0), (26.0, 12.0), -20.0, 0.8)
    for off in (np.zeros(2), np.array([6.0, -4.0])):
        fh = hip + off
        shaft = np.array(
            [fh + _v(-12.0, -20.0), fh + _v(12.0, -20.0), fh + _v(20.0, -260.0), fh + _v(-18.0, -260.0)]
        )
        cv.polygons("pelvis", [shaft], 0.8)
        cv.ellipse("pelvis", fh, (24.0 * hab.size, 24.0 * hab.size), 0.0, 0.9)
        cv.ellipse("cortex", fh, (24.0 * hab.size, 24.0 * hab.size), 0.0, 0.7, width_mm=2.0)
    cv.ellipse("cortex", hip + _v(0.0, 2.0), (30.0, 30.0), 0.0, 0.5, width_mm=2.0)  # acetabular roof
