"""One phantom: sample the spine for a class, sample the film's nuisances, draw, return image + record.

Three independent random streams are spawned from the image's seed: anatomy (angles, habitus,
organ details), framing/exposure, and film grain/annotations. Only the anatomy stream's angle
draws depend on the class; everything else has one distribution for all classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from spinescan.synth.anatomy import sample_habitus
from spinescan.synth.ap import draw_ap
from spinescan.synth.canvas import Canvas
from spinescan.synth.curves import coronal_spine, lateral_spine
from spinescan.synth.exposure import form_film, sample_exposure
from spinescan.synth.framing import field_rows, layout, sample_framing
from spinescan.synth.geometry import L1, T4, T12, Spine, bottom_index, sample_dimensions, top_index
from spinescan.synth.labels import CLASSES, sample_cobb, sample_lateral_angles
from spinescan.synth.lateral import draw_lateral
from spinescan.synth.presentation import annotate, present

SUPERSAMPLE = 1  # antialiased drawing at the output size (canvas.py)


@dataclass(frozen=True)
class Phantom:
    image: np.ndarray  # uint8, height x width
    record: dict[str, Any]  # manifest fields (angles, landmarks, framing, ...)


def _landmarks(cv: Canvas, spine: Spine) -> tuple[np.ndarray, np.ndarray]:
    """AASCE-order corners (TL, TR, BL, BR per vertebra, T1..L5) and the S1 endplate, in pixels."""
    px = cv.to_pixels(spine.corners)  # (17, 4, 2): top -x, top +x, bottom -x, bottom +x
    out = px.copy()
    for slot in (0, 2):  # each endplate's left end first (the image's left, after any mirroring)
        swap = px[:, slot, 0] > px[:, slot + 1, 0]
        out[swap, slot], out[swap, slot + 1] = px[swap, slot + 1], px[swap, slot]
    sac = cv.to_pixels(spine.sacrum)
    if sac[0, 0] > sac[1, 0]:
        sac = sac[::-1]
    return out.reshape(-1, 2), sac


def _centre_x(view: str, framing: str, spine: Spine, chest: float) -> float:
    """Horizontal centre of the field: the spine for crops, the body for wider frames."""
    x = float(np.concatenate([spine.corners[..., 0].ravel(), spine.sacrum[:, 0]]).mean())
    if view == "lateral" and framing != "spine_crop":
        x += (0.5 if framing == "torso" else 0.8) * chest * 0.5
    return x


def make_phantom(
    view: str, label: str, seq: np.random.SeedSequence, size: int = 256, borderline: float = 0.0
) -> Phantom:
    """Draw one radiograph of ``label`` in ``view``, deterministically from ``seq``."""
    if label not in CLASSES.get(view, ()):
        raise ValueError(f"no class {label!r} in view {view!r}")
    anatomy_seq, nuisance_seq, film_seq = seq.spawn(3)
    rng = np.random.default_rng(anatomy_seq)
    is_border = bool(rng.random() < borderline)
    hab = sample_habitus(rng)
    dims = sample_dimensions(view, rng, hab.size)
    rec: dict[str, Any] = {"borderline": int(is_border)}
    if view == "lateral":
        ang = sample_lateral_angles(label, rng, is_border)
        spine = lateral_spine(ang.kyphosis_deg, ang.lordosis_deg, dims, rng)
        phi = spine.phi
        rec.update(
            thoracic_kyphosis_deg=float(phi[top_index(T4)] - phi[bottom_index(T12)]),
            lumbar_lordosis_deg=float(phi[0] - phi[top_index(L1)]),
            cobb_deg=None,
            sacral_slope_deg=float(phi[0]),
            curve_type="",
            apex="",
            side="",
        )
    else:
        cobb = sample_cobb(label, rng, is_border)
        spine, curve = coronal_spine(cobb, label == "scoliosis", dims, rng)
        rec.update(
            thoracic_kyphosis_deg=None,
            lumbar_lordosis_deg=None,
            cobb_deg=cobb,
            sacral_slope_deg=None,
            curve_type=curve.curve_type,
            apex=curve.apex,
            side=curve.side,
        )

    nrng = np.random.default_rng(nuisance_seq)
    framing = sample_framing(view, nrng)
    exposure = sample_exposure(nrng)
    keypoints = np.concatenate([spine.corners.reshape(-1, 2), spine.sacrum])
    tops = spine.corners[:, :2, 1].mean(axis=1)
    rows = field_rows(framing, tops, float(spine.sacrum[:, 1].mean()))
    matrix, width = layout(framing, keypoints, _centre_x(view, framing.name, spine, hab.chest), size, rows)
    cv = Canvas(size, width, matrix, ss=SUPERSAMPLE)
    (draw_lateral if view == "lateral" else draw_ap)(cv, spine, hab, rng)

    frng = np.random.default_rng(film_seq)
    film = form_film(cv, exposure, hab.bone, frng)
    image, moved = present(annotate((film * 255.0 + 0.5).astype(np.uint8), frng), frng, view == "lateral")
    landmarks, sacrum = _landmarks(cv, spine)
    landmarks, sacrum = (p @ moved[:, :2].T + moved[:, 2] for p in (landmarks, sacrum))
    rec.update(
        framing=framing.name,
        extent=framing.extent,
        width=int(image.shape[1]),
        height=int(image.shape[0]),
        facing=_facing(view, framing.mirror),
        landmarks=landmarks,
        sacrum=sacrum,
        landmarks_visible=_visible(landmarks, image.shape),
        sacrum_visible=_visible(sacrum, image.shape),
    )
    return Phantom(image, rec)


def _visible(points: np.ndarray, shape: tuple[int, ...]) -> str:
    """JSON list, 1/0 per point: inside the image or not (a cut film loses some vertebrae, whose
    angles must then be reported as missing, not guessed)."""
    h, w = shape[:2]
    inside = (points[:, 0] >= 0) & (points[:, 0] <= w - 1) & (points[:, 1] >= 0) & (points[:, 1] <= h - 1)
    # json.dumps(list of 0/1, separators=(",", ":")), written directly
    return "[" + ",".join(["1" if v else "0" for v in inside.tolist()]) + "]"


def _facing(view: str, mirrored: bool) -> str:
    """Which image side the patient's front faces (lateral) or ``""`` (AP)."""
    if view != "lateral":
        return ""
    return "left" if mirrored else "right"
