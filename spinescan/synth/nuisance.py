"""Everything about a film that is not the patient's spine: framing, exposure, noise, markers, text.

Each nuisance variable is drawn from its own random stream with a distribution that does not know
the class. That is what makes the "no shortcut" property hold: the image size, brightness,
contrast, crop and annotations carry no information about the label, which lives only in the
spine's geometry.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import cv2
import numpy as np

from spinescan.synth.canvas import Canvas

#: name: (probability, aspect range). Real full-spine films are tall: full frames about 0.4-0.6
#: width/height, and narrow crops around the spine (as in the healthy real AP films) about 0.2-0.3.
FRAMINGS = {
    "fullframe": (0.4, (0.40, 0.62)),
    "torso": (0.25, (0.30, 0.42)),
    "spine_crop": (0.35, (0.20, 0.30)),
}


@dataclass(frozen=True)
class Framing:
    """Where the film's field of view sits relative to the spine."""

    name: str
    aspect: float  # width / height
    top: float  # field margin above T1, fraction of the T1-S1 length
    bottom: float  # field margin below S1
    shift: float  # horizontal offset of the field, fraction of its width
    rotation: float  # degrees, in-plane patient rotation on the detector
    mirror: bool  # lateral films: patient facing the other way


def sample_framing(view: str, rng: np.random.Generator) -> Framing:
    names = list(FRAMINGS)
    probs = np.array([FRAMINGS[n][0] for n in names])
    name = names[int(rng.choice(len(names), p=probs / probs.sum()))]
    lo, hi = FRAMINGS[name][1]
    return Framing(
        name=name,
        aspect=float(rng.uniform(lo, hi)),
        top=float(rng.uniform(0.04, 0.45)),
        bottom=float(rng.uniform(0.06, 0.45)),
        shift=float(rng.uniform(-0.12, 0.12)),
        rotation=float(np.clip(rng.normal(0.0, 2.0), -5.0, 5.0)),
        mirror=bool(view == "lateral" and rng.random() < 0.5),
    )


def _matrix(
    k: float, theta: float, mirror: bool, cx: float, cy: float, width: int, height: int
) -> np.ndarray:
    c, s = np.cos(np.radians(theta)), np.sin(np.radians(theta))
    m = -1.0 if mirror else 1.0
    # world (x, y up) -> centred, mirrored, y down -> rotated -> scaled -> image centre
    a = k * np.array([[c * m, s], [s * m, -c]])
    # Note the rotation acts on (m*x, -y); the determinant's sign only reflects mirroring.
    t = np.array([(width - 1) / 2.0, (height - 1) / 2.0]) - a @ np.array([cx, cy])
    return np.hstack([a, t[:, None]])


def layout(framing: Framing, keypoints: np.ndarray, centre_x: float, height: int) -> tuple[np.ndarray, int]:
    """The world-to-pixel affine and the image width, for an image ``height`` pixels tall.

    The field spans T1-S1 plus the sampled margins; the width follows the framing's aspect ratio
    only (never the anatomy). If a strongly curved spine would leave a narrow crop, the field zooms
    out just enough to keep every landmark inside.
    """
    pts = np.asarray(keypoints, dtype=np.float64)
    y_top, y_bot = pts[:, 1].max(), pts[:, 1].min()
    length = y_top - y_bot
    field_top, field_bot = y_top + framing.top * length, y_bot - framing.bottom * length
    k = height / (field_top - field_bot)
    width = max(16, round(height * framing.aspect))
    cx = centre_x + framing.shift * width / k * (-1.0 if framing.mirror else 1.0)
    cy = (field_top + field_bot) / 2.0
    m = _matrix(k, framing.rotation, framing.mirror, cx, cy, width, height)
    pad_x, pad_y = 0.04 * width + 2.0, 0.02 * height + 2.0
    for _ in range(3):
        px = pts @ m[:, :2].T + m[:, 2]
        span = px.max(axis=0) - px.min(axis=0)
        room = np.array([width - 1 - 2 * pad_x, height - 1 - 2 * pad_y])
        if np.any(span > room):
            k *= float(np.min(room / span)) * 0.98
            m = _matrix(k, framing.rotation, framing.mirror, cx, cy, width, height)
            continue
        lo = np.array([pad_x, pad_y]) - px.min(axis=0)
        hi = np.array([width - 1 - pad_x, height - 1 - pad_y]) - px.max(axis=0)
        m[:, 2] += np.clip(0.0, lo, hi) if np.all(lo <= hi) else (lo + hi) / 2.0
        break
    return m, width


@dataclass(frozen=True)
class Exposure:
    """Film formation and display: how attenuation becomes grey levels."""

    gain: float  # exposure: scales the attenuation before the exponential
    soft: float  # soft-tissue weight
    bone: float  # bone weight
    air: float  # how dark the lungs and gas are
    gamma: float
    low: float  # display window, as fractions of the signal range
    high: float
    fog: float  # scatter / base fog added everywhere
    heel: float  # anode heel effect: linear brightness gradient top to bottom
    blur: float  # system blur, mm
    noise: float  # quantum noise level
    texture: float  # trabecular mottle amplitude
    invert_background: bool  # a few films show a light surround outside the body


def sample_exposure(rng: np.random.Generator) -> Exposure:
    return Exposure(
        gain=float(rng.uniform(1.2, 2.2)),
        soft=float(rng.uniform(0.32, 0.5)),
        bone=float(rng.uniform(0.22, 0.36)),
        air=float(rng.uniform(0.45, 0.7)),
        gamma=float(rng.uniform(0.75, 1.35)),
        low=float(rng.uniform(0.0, 0.12)),
        high=float(rng.uniform(0.85, 1.05)),
        fog=float(rng.uniform(0.0, 0.08)),
        heel=float(rng.uniform(-0.1, 0.1)),
        blur=float(rng.uniform(0.4, 1.8)),
        noise=float(rng.uniform(0.01, 0.05)),
        texture=float(rng.uniform(0.06, 0.18)),
        invert_background=bool(rng.random() < 0.05),
    )


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    h, w = max(2, int(height / cell) + 2), max(2, int(width / cell) + 2)
    small = rng.standard_normal((h, w)).astype(np.float32)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def form_film(cv: Canvas, exp: Exposure, bone_density: float, rng: np.random.Generator) -> np.ndarray:
    """Attenuation layers -> a float image in [0, 1] (bright = dense), with blur and noise.

    Transmission falls exponentially with the summed attenuation (Beer-Lambert); the displayed
    grey is the absorbed fraction, relative to what dense bone over a full body would absorb.
    """
    h, w = cv.height, cv.width
    mm = cv.mm
    soft_mask = cv.reduced("soft")
    dist = cv2.distanceTransform((soft_mask > 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    thickness = np.sqrt(np.clip(dist / (70.0 * mm), 0.0, 1.0))  # a body is roughly elliptical
    air = cv2.GaussianBlur(cv.reduced("air"), (0, 0), max(0.5, 4.0 * mm))
    tex = 1.0 + exp.texture * _smooth_noise(rng, h, w, max(2.0, 4.0 * mm))
    spongy = (cv.reduced("bone") + 0.8 * cv.reduced("pelvis") + 0.5 * cv.reduced("post")) * tex
    bones = spongy + 0.9 * cv.reduced("cortex") + 0.35 * cv.reduced("ribs")
    density = exp.soft * thickness * (1.0 - exp.air * air) + exp.bone * bone_density * bones
    signal = 1.0 - np.exp(-exp.gain * density)
    ref = 1.0 - np.exp(-exp.gain * (exp.soft + 1.8 * exp.bone))
    x = np.clip((signal / ref - exp.low) / (exp.high - exp.low), 0.0, 1.0)
    x = x ** np.float32(exp.gamma)
    x = x * (1.0 + exp.heel * np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]) + exp.fog
    if exp.invert_background:
        x = np.where(soft_mask > 0.5, x, np.maximum(x, 0.85))
    sigma = exp.blur * mm
    if sigma > 0.3:
        x = cv2.GaussianBlur(x, (0, 0), sigma)
    x = x + exp.noise * np.sqrt(np.clip(x, 0.0, 1.0) + 0.05) * rng.standard_normal((h, w)).astype(np.float32)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


# --- annotations ----------------------------------------------------------------------------------

_CHARS = string.ascii_uppercase + string.digits


def _random_text(rng: np.random.Generator) -> str:
    kind = int(rng.integers(4))
    if kind == 0:
        return f"{rng.integers(1990, 2025)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"
    if kind == 1:
        return "ID " + "".join(rng.choice(list(string.digits), size=int(rng.integers(5, 9))))
    if kind == 2:
        return "".join(rng.choice(list(_CHARS), size=int(rng.integers(3, 10))))
    return f"{rng.integers(60, 125)}KV {rng.integers(5, 40)}MAS"


def annotate(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Side marker, burned-in text, ruler, stitching seam and collimation edges (uint8, in place)."""
    h, w = img.shape
    unit = h / 256.0
    # Lead side marker: a letter, sometimes boxed, near a top corner (or anywhere along the edge).
    letter = "L" if rng.random() < 0.5 else "R"
    scale = float(rng.uniform(0.2, 0.42)) * unit
    thick = max(1, round(rng.uniform(0.8, 2.0) * unit))
    (tw, th), _ = cv2.getTextSize(letter, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x = int(rng.uniform(0.03, 0.3) * w) if rng.random() < 0.5 else int(w - tw - rng.uniform(0.03, 0.3) * w)
    y = int(rng.uniform(0.03, 0.5) * h) + th
    value = int(rng.integers(190, 256))
    cv2.putText(img, letter, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, value, thick, cv2.LINE_AA)
    if rng.random() < 0.4:
        cv2.rectangle(img, (x - 2, y - th - 2), (x + tw + 2, y + 3), value, max(1, thick // 2), cv2.LINE_AA)
    # Burned-in text lines along the edges.
    for _ in range(int(rng.integers(0, 4))):
        text = _random_text(rng)
        s = float(rng.uniform(0.1, 0.2)) * unit
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_PLAIN, s * 2.0, 1)
        x = int(rng.uniform(0.0, max(1.0, w - tw)))
        y = (
            int(th + 2 + rng.uniform(0.0, 0.06) * h)
            if rng.random() < 0.5
            else int(h - 3 - rng.uniform(0, 0.06) * h)
        )
        cv2.putText(
            img, text, (x, y), cv2.FONT_HERSHEY_PLAIN, s * 2.0, int(rng.integers(150, 256)), 1, cv2.LINE_AA
        )
    # A radiopaque ruler along one side.
    if rng.random() < 0.15:
        x0 = int(rng.uniform(0.02, 0.12) * w) if rng.random() < 0.5 else int(rng.uniform(0.88, 0.98) * w)
        ys = np.arange(int(0.1 * h), int(0.9 * h), max(2, round(4 * unit)))
        cv2.line(img, (x0, int(ys[0])), (x0, int(ys[-1])), 220, 1)
        for i, yy in enumerate(ys):
            cv2.line(img, (x0, int(yy)), (x0 + (4 if i % 5 == 0 else 2), int(yy)), 220, 1)
    # Seam where two cassettes/detector shots were stitched into one full-spine film.
    if rng.random() < 0.2:
        yy = int(rng.uniform(0.3, 0.7) * h)
        img[yy : yy + max(1, round(unit)), :] = np.clip(
            img[yy : yy + max(1, round(unit)), :] * 0.6 + 60, 0, 255
        )
    # Many archived films were stored as JPEG: block artefacts and softened edges.
    if rng.random() < 0.4:
        quality = int(rng.integers(55, 96))
        _, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        img[:] = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    # Collimation: black bands at the edges.
    if rng.random() < 0.2:
        left, right = int(rng.uniform(0, 0.06) * w), int(rng.uniform(0, 0.06) * w)
        img[:, :left] = 0
        if right:
            img[:, w - right :] = 0
    return img
