"""AP/PA (coronal) anatomy: vertebrae with pedicles and spinous processes turned by axial rotation,
ribs, clavicles, lungs, heart, sacrum, iliac wings, femoral heads, arms and the body outline.
``+x`` is the image's right.

In scoliosis the vertebrae rotate axially towards the convexity, which moves the pedicles and the
spinous process towards the concave side (the Nash-Moe grading reads exactly this). Rotation here
follows each vertebra's lateral deviation, for healthy and scoliotic spines alike.
"""

from __future__ import annotations

import numpy as np

from spinescan.synth.anatomy import Habitus, Local, corner_frames, rounded_quads, stack
from spinescan.synth.canvas import Canvas, ellipse_points, smooth_polyline
from spinescan.synth.geometry import L1, N_VERT, Spine, along, normal

# Half-span (mm) of each rib's posterior arc from the spine, T1..T12 (average adult).
_RIB_SPAN = np.array([50, 80, 100, 115, 125, 130, 132, 130, 125, 112, 85, 55], dtype=np.float64)


def axial_rotation(spine: Spine) -> np.ndarray:
    """Per-vertebra axial rotation (degrees, sign of the convex side) from lateral deviation."""
    centres = spine.centres
    top, bottom = centres[0], spine.sacrum.mean(axis=0)
    chord = bottom - top
    rel = centres - top
    dev = (chord[0] * rel[:, 1] - chord[1] * rel[:, 0]) / np.hypot(*chord)
    return np.clip(0.6 * dev, -35.0, 35.0)


def _body_outline(spine: Spine, hab: Habitus, arms: bool) -> list[np.ndarray]:
    top = spine.centres[0]
    s1 = spine.sacrum.mean(axis=0)
    hip_y = s1[1] - 105.0 * hab.size
    (s1_x, s1_y), (t1_x, t1_y) = s1.tolist(), top.tolist()

    def cx(y: float) -> float:  # the trunk stays over the line from the sacrum to T1
        t = min(max((float(y) - s1_y) / (t1_y - s1_y), -0.5), 1.5)  # np.clip, in Python floats
        return s1_x + t * (t1_x - s1_x)

    y_t1, y_l3 = top[1], spine.centres[14][1]
    y_t8 = spine.centres[7][1]
    rows = [  # (y, half width)
        (hip_y - 320.0, hab.hips * 0.8),
        (hip_y - 40.0, hab.hips),
        (y_l3, hab.waist),
        (y_t8, hab.shoulders - 35.0 + 0.3 * hab.fat),
        (y_t1 + 10.0, hab.shoulders),
        (y_t1 + 45.0, hab.shoulders * 0.6),
        (y_t1 + 70.0, 55.0),
        (y_t1 + 130.0, 60.0),
        (y_t1 + 200.0, 80.0),
        (y_t1 + 330.0, 70.0),
    ]
    left = np.array([[cx(y) - hw, y] for y, hw in rows])
    right = np.array([[cx(y) + hw, y] for y, hw in rows])[::-1]
    polys = [np.concatenate([smooth_polyline(left, 60), smooth_polyline(right, 60)])]
    if arms:
        for sgn in (-1.0, 1.0):
            x0 = cx(y_t1) + sgn * (hab.shoulders + 10.0)
            arm = np.array(
                [
                    [x0 - 40, y_t1 + 20],
                    [x0 + 40 * sgn, y_t1 + 10],
                    [x0 + 55 * sgn, hip_y - 120],
                    [x0 - 5 * sgn, hip_y - 120],
                ]
            )
            polys.append(arm)
    return polys


_NECK_WIDTHS = np.linspace(27.0, 21.0, 6)  # C7 .. C2 body widths, mm, before the patient's scale
_NECK_WIDTHS.flags.writeable = False


class _Scaled:
    """``at(pts)``: ``origin + (a * s) * e + (b * s) * n`` for each point (a, b), in Python floats:
    the same operations in the same order as the numpy expression it replaced, without numpy's
    per-call cost on a handful of points."""

    def __init__(self, origin: np.ndarray, e: np.ndarray, n: np.ndarray, s: float) -> None:
        self._f = (*origin.tolist(), *e.tolist(), *n.tolist(), float(s))

    def __call__(self, pts: list) -> np.ndarray:
        ox, oy, ex, ey, nx, ny, s = self._f
        p = np.asarray(pts, dtype=np.float64).reshape(-1, 2).tolist()
        return np.array([(ox + (a * s) * ex + (b * s) * nx, oy + (a * s) * ey + (b * s) * ny) for a, b in p])


def cervical_ap(spine: Spine, hab: Habitus, rng: np.random.Generator) -> np.ndarray:
    """C7..C2 bodies above T1 in the coronal plane: nearly straight, with a small random tilt
    (context only: not landmarks, drawn the same way for every class)."""
    n = 6
    start_phi = float(spine.top_phi[0])
    phis = start_phi + np.cumsum(rng.normal(0.0, 1.2, n))
    top = spine.corners[0, :2].mean(axis=0)
    s = hab.size
    widths = _NECK_WIDTHS * s
    return stack(top, start_phi, phis, np.full(n, 13.0 * s), widths, np.full(n, 4.5 * s))


def _posterior_ap(
    cv: Canvas, corners: np.ndarray, rot: np.ndarray, reach_mm: np.ndarray, tp_h: np.ndarray
) -> None:
    """Pedicle rings, transverse and spinous processes of many vertebrae in a few vectorised calls.

    Axial rotation moves the pedicles and the spinous process towards the concave side.
    """
    centre, e, n, w, h = corner_frames(corners)
    r = np.radians(rot)
    off = -np.sin(r) * 0.45 * w
    sgn = np.array([-1.0, 1.0])[None, :, None]  # (vertebra, side, point)
    ct, st = _CIRCLE16[0][None, None, :], _CIRCLE16[1][None, None, :]
    c3, e3, n3 = centre[:, None, None, :], e[:, None, None, :], n[:, None, None, :]
    w3, h3, off3 = w[:, None, None], h[:, None, None], off[:, None, None]

    def at(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return c3 + a[..., None] * e3 + b[..., None] * n3

    ped = at(off3 + sgn * 0.3 * w3 * np.cos(r)[:, None, None] + 0.09 * w3 * ct, 0.2 * h3 + 0.17 * h3 * st)
    reach = (0.5 * w3 + reach_mm[:, None, None]) * sgn
    tp = tp_h[:, None, None]
    qa = np.concatenate([off3 + sgn * 0.3 * w3, reach + off3, reach + off3, off3 + sgn * 0.3 * w3], axis=2)
    qb = np.concatenate([0.2 * h3 + tp, 0.25 * h3 + tp, 0.25 * h3 - tp, 0.2 * h3 - tp], axis=2)
    quads = at(qa, np.broadcast_to(qb, qa.shape))
    spin = at(
        off3[:, :1] * 1.3 + 0.07 * w3[:, :1] * ct[:, :1], -0.3 * h3[:, :1] + 0.32 * h3[:, :1] * st[:, :1]
    )
    rings = np.concatenate([ped.reshape(-1, 16, 2), spin.reshape(-1, 16, 2)])
    cv.polygons("post", quads.reshape(-1, 4, 2), 0.7)
    cv.polygons("post", spin.reshape(-1, 16, 2), 0.7)
    cv.polygons("post", rings, 1.0)
    cv.lines("cortex", rings, 0.6, 1.2, True)


def _head_and_arms(cv: Canvas, neck: np.ndarray, spine: Spine, hab: Habitus, arms: bool) -> None:
    """Skull base and mandible above the cervical spine; humeri inside the arms."""
    c2 = neck[-1]
    top = c2[:2].mean(axis=0)
    e = (c2[1] - c2[0]) / np.hypot(*(c2[1] - c2[0]))
    n = np.array([-e[1], e[0]])
    s = hab.size

    at = _Scaled(top, e, n, s)

    cv.ellipse("bone", at([[0.0, 95.0]])[0], (72.0 * s, 88.0 * s), 0.0, 0.35)  # skull
    cv.ellipse("cortex", at([[0.0, 95.0]])[0], (72.0 * s, 88.0 * s), 0.0, 0.8, width_mm=6.0)
    cv.ellipse("pelvis", at([[0.0, 22.0]])[0], (30.0 * s, 12.0 * s), 0.0, 0.7)  # atlas and occipital condyles
    jaw = smooth_polyline(at([[-52, 38], [-50, 0], [-28, -28], [0, -36], [28, -28], [50, 0], [52, 38]]), 30)
    cv.lines("pelvis", [jaw], 0.9, 11.0, False)
    cv.lines("cortex", [smooth_polyline(at([[-32, -8], [0, -20], [32, -8]]), 12)], 0.9, 7.0, False)  # teeth
    lv0 = Local(spine, 0)
    for sgn in (-1.0, 1.0):
        head = lv0.at([[sgn * (hab.shoulders - 5.0), 10.0]])[0]
        cv.ellipse("pelvis", head, (26.0, 28.0), 0.0, 0.7)
        if arms:
            elbow = head + np.array([sgn * 25.0, -290.0 * s])
            humerus = np.array([head, elbow])
            cv.lines("pelvis", [humerus], 0.5, 22.0 * s, False)
            cv.lines("cortex", [humerus + np.array([sgn * 9.0 * s, 0.0])], 0.4, 3.0, False)


def draw_ap(cv: Canvas, spine: Spine, hab: Habitus, rng: np.random.Generator) -> None:
    c = spine.corners
    arms = bool(rng.random() < 0.5)
    cv.polygons("soft", _body_outline(spine, hab, arms), 1.0)
    rot = axial_rotation(spine)
    _ribs_and_lungs(cv, spine, hab, rng)
    centres = spine.centres.tolist()
    for _ in range(hab.gas):  # bowel gas over the abdomen, independent of the spine's shape
        v = int(rng.integers(L1, N_VERT))
        x, y = centres[v]  # Python floats: the same sums as the 2-vector numpy version
        at = (x + rng.uniform(-hab.waist * 0.8, hab.waist * 0.8), y + rng.uniform(-60.0, 20.0))
        cv.ellipse("air", at, tuple(rng.uniform(8.0, 25.0, 2)), rng.uniform(0, 180), 0.6)
    neck = cervical_ap(spine, hab, rng)
    _head_and_arms(cv, neck, spine, hab, arms)
    bodies = rounded_quads(np.concatenate([c, neck]), bulge=0.03)
    cv.polygons("bone", bodies, 0.6)
    cv.lines("cortex", bodies, 1.0, 1.6, True)
    allc = np.concatenate([c, neck])
    lumbar = _LUMBAR
    reach = np.concatenate([np.where(lumbar, 22.0, 18.0), np.full(len(neck), 6.0)])
    _, _, _, _, h = corner_frames(c)
    tp_h = np.concatenate([np.where(lumbar, 0.12 * h, 3.5), np.full(len(neck), 2.5)])
    _posterior_ap(cv, allc, np.concatenate([rot, np.zeros(len(neck))]), reach, tp_h)
    _pelvis(cv, spine, hab)


_CIRCLE16 = (
    np.cos(np.linspace(0.0, 2.0 * np.pi, 16, endpoint=False)),
    np.sin(np.linspace(0.0, 2.0 * np.pi, 16, endpoint=False)),
)
_LUMBAR = np.arange(N_VERT) >= L1
_T14 = np.linspace(0.0, 1.0, 14)
# Rib shape constants (the same for every film): level, side and position along the rib, the
# arch 14 sin(0.8 pi t) and the drop (25 + 2 v) t^2 of each posterior rib.
_RIB_V = np.arange(12)[:, None, None]
_RIB_SIDE = np.array([-1.0, 1.0])[None, :, None]
_RIB_T = _T14[None, None, :]
_RIB_ARCH = 14.0 * np.sin(np.pi * _RIB_T * 0.8)
_RIB_DROP = (25.0 + 2.0 * _RIB_V) * _RIB_T**2
for _a in (_LUMBAR, _T14, _RIB_V, _RIB_SIDE, _RIB_T, _RIB_ARCH, _RIB_DROP):
    _a.flags.writeable = False


def _ribs_and_lungs(cv: Canvas, spine: Spine, hab: Habitus, rng: np.random.Generator) -> None:
    f = spine.frames
    span = _RIB_SPAN * (hab.shoulders / 190.0)
    v = _RIB_V  # (rib level, side, point along the rib)
    sgn = _RIB_SIDE
    t = _RIB_T
    x = sgn * (0.5 * f.width[v] + 4.0 + span[v] * t)
    y = 0.15 * f.height[v] + _RIB_ARCH - _RIB_DROP
    back = f.at(v, x, y)  # (12, 2, 14, 2): posterior ribs from the costovertebral joints
    # Anterior ribs: fainter, running medially and down from the lateral wall (upper ten pairs).
    va, sa = v[:10, :, 0], sgn[:, :, 0]
    xe, ye = x[:10, :, -1], y[:10, :, -1]
    ctrl_a = np.stack([xe, xe - sa * span[va] * 0.35, xe - sa * span[va] * 0.6], axis=-1)
    ctrl_b = np.stack([ye, ye - 35.0, ye - 60.0 - 2.0 * va], axis=-1)
    front = smooth_polyline(f.at(va[..., None], ctrl_a, ctrl_b).reshape(-1, 3, 2), 12)
    lung_edge = f.at(v[:, :, 0], x[:, :, -1] - sgn[:, :, 0] * 12.0, y[:, :, -1] + 5.0)  # (12, 2, 2)
    back_list = list(back.reshape(-1, 14, 2))
    cv.lines("ribs", back_list, 1.0, 10.0, False)
    cv.lines("ribs", back_list, 0.45, 5.5, False)
    cv.lines("ribs", list(front), 0.5, 8.0, False)
    # Clavicles.
    lv0 = Local(spine, 0)
    for sgn in (-1.0, 1.0):
        cl = lv0.at([[sgn * 20.0, 30.0], [sgn * 70.0, 20.0], [sgn * hab.shoulders * 0.8, 45.0]])
        cv.lines("ribs", [smooth_polyline(cl, 12)], 1.2, 13.0, False)
    # Lungs: between the mediastinum and the ribcage, down to the diaphragm domes.
    dia = hab.diaphragm
    polys = []
    frames = {k: Local(spine, k) for k in (1, 4, 7)}  # each vertebra's frame built once
    for sgn in (-1.0, 1.0):
        level = dia + (0.4 if sgn > 0 else 0.0)  # the left (image right) dome sits lower
        v = min(max(int(level), 8), 11)
        lv = Local(spine, v)
        medial = [lk.at([[sgn * (0.5 * lk.width + 14.0), 0.0]])[0] for lk in frames.values()]
        lateral = lung_edge[:v, 0 if sgn < 0 else 1][::-1]
        dome_lat = lv.at([[sgn * (span[v] * 0.9), -30.0]])[0]
        dome_mid = lv.at([[sgn * span[v] * 0.45, 10.0 + 8.0 * float(rng.normal())]])[0]
        dome_med = lv.at([[sgn * (0.5 * lv.width + 16.0), -5.0]])[0]
        apex = lv0.at([[sgn * 45.0, 35.0]])[0]
        pts = np.array([apex, *medial, dome_med, dome_mid, dome_lat, *lateral[1:], apex])
        polys.append(smooth_polyline(pts, 60))
    cv.polygons("air", polys, 1.0)
    heart = Local(spine, 8).at([[45.0, -5.0]])[0]
    cv.ellipse("air", heart, (75.0 * hab.size, 58.0), 15.0, 0.3)


def _pelvis(cv: Canvas, spine: Spine, hab: Habitus) -> None:
    phi0 = float(spine.phi[0])
    e, n = along(phi0), normal(phi0)
    m = spine.sacrum.mean(axis=0)
    s = hab.size

    at = _Scaled(m, e, n, s)

    half = spine.dims.s1_width / 2.0 / s
    wings, rims = [], []
    for sgn in (-1.0, 1.0):
        wing = at(
            [
                [sgn * 45, 5],
                [sgn * 95, 55],
                [sgn * 140, 45],
                [sgn * 155, 5],
                [sgn * 150, -35],
                [sgn * 110, -75],
                [sgn * 95, -95],
                [sgn * 70, -70],
                [sgn * 45, -60],
            ]
        )
        wing = smooth_polyline(wing, 40)
        wings.append(wing)
        rims.append(wing[:20])
    cv.polygons("pelvis", wings, 0.4)
    cv.lines("cortex", rims, 0.6, 3.0, False)
    sacrum = smooth_polyline(
        at(
            [
                [-half, 0],
                [-55, -5],
                [-45, -70],
                [-12, -115],
                [0, -125],
                [12, -115],
                [45, -70],
                [55, -5],
                [half, 0],
            ]
        ),
        40,
    )
    cv.polygons("pelvis", [sacrum], 0.85)
    cv.lines("cortex", [spine.sacrum], 1.0, 2.0, False)
    foramina = [
        ellipse_points(at([[sgn * 20, -22 - 22 * i]])[0], (4.5 * s, 4.0 * s), 0.0, 12)
        for sgn in (-1.0, 1.0)
        for i in range(4)
    ]
    cv.polygons("pelvis", foramina, 0.35)
    cv.ellipse("cortex", at([[0, -70]])[0], (62.0 * s, 48.0 * s), phi0, 0.6, width_mm=3.0)  # pelvic inlet
    ring = []
    for sgn in (-1.0, 1.0):
        ring.append(
            smooth_polyline(
                at(
                    [[sgn * 95, -105], [sgn * 75, -175], [sgn * 10, -165], [sgn * 40, -130], [sgn * 85, -120]]
                ),
                24,
            )
        )
    cv.lines("pelvis", ring, 0.6, 14.0, True)
    for sgn in (-1.0, 1.0):
        head = at([[sgn * 90, -105]])[0]
        neck = at([[sgn * 85, -95], [sgn * 140, -130], [sgn * 130, -155], [sgn * 90, -125]])
        shaft = at([[sgn * 118, -130], [sgn * 150, -135], [sgn * 140, -420], [sgn * 110, -420]])
        cv.polygons("pelvis", [neck, shaft], 0.8)
        cv.ellipse("pelvis", head, (24.0 * s, 24.0 * s), 0.0, 0.95)
        cv.ellipse("cortex", head, (24.0 * s, 24.0 * s), 0.0, 0.7, width_mm=2.0)
        cv.lines("cortex", [shaft[[0, 3]], shaft[[1, 2]]], 0.7, 3.0, False)
