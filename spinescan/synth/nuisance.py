"""Everything about a film that is not the patient's spine: framing, exposure, noise, markers, text.

Each nuisance variable is drawn from its own random stream with a distribution that does not know
the class. That is what makes the "no shortcut" property hold: the image size, brightness,
contrast, crop and annotations carry no information about the label, which lives only in the
spine's geometry.
"""

from __future__ import annotations

import functools
import string
from dataclasses import dataclass

import cv2
import numpy as np

from spinescan.synth.canvas import Canvas

#: name: (probability, aspect range). Real full-spine films are tall: full frames about 0.25-0.62
#: width/height, and narrow crops around the spine (as in the healthy real AP films) about 0.16-0.4
#: (measured on the real AP dev films: crops 0.16-0.40, median 0.25; full frames 0.25-0.62, median
#: 0.42).
FRAMINGS = {
    "fullframe": (0.4, (0.36, 0.62)),
    "torso": (0.25, (0.28, 0.42)),
    "spine_crop": (0.35, (0.16, 0.32)),
}

#: Field of view along the spine, per view: name -> probability. ``cervical-pelvis`` runs from the
#: skull base to below the femoral heads (long-cassette full-spine films), ``thoracic-pelvis`` from
#: just above T1 to the pelvis, ``thoracolumbar`` starts between T2 and T5 (the upper thoracic
#: vertebrae are cut off), ``lumbar`` starts at T10-T12 (lumbar-spine films). Cut films keep every
#: landmark in the manifest and flag the ones outside the image (``landmarks_visible``). AP films are
#: long films, and a cut AP film keeps T4 down: a lumbar-only AP film would hide a thoracic curve
#: and so carry a label its pixels do not show (a first version with 3% lumbar AP films and cuts
#: down to T5, among other differences, scored worse zero-shot on the real films than the old
#: generator: benchmarks/realism.py).
EXTENTS = {
    "lateral": {"cervical-pelvis": 0.35, "thoracic-pelvis": 0.35, "thoracolumbar": 0.18, "lumbar": 0.12},
    "ap": {"cervical-pelvis": 0.4, "thoracic-pelvis": 0.52, "thoracolumbar": 0.08},
}
#: Narrowest film written: ``spinescan data check`` flags images under 32 px on a side as too small
#: (spinescan.data.datasets' ``min_size``), so a narrow crop of a small film is widened to this.
MIN_WIDTH = 32


@dataclass(frozen=True)
class Framing:
    """Where the film's field of view sits relative to the spine."""

    name: str
    aspect: float  # width / height
    extent: str  # field of view along the spine (EXTENTS)
    top: float  # field margin above T1 (fraction of the T1-S1 length), or the top level (cut films)
    bottom: float  # field margin below S1, fraction of the T1-S1 length
    shift: float  # horizontal offset of the field, fraction of its width
    rotation: float  # degrees, in-plane patient rotation on the detector
    mirror: bool  # lateral films: patient facing the other way


@functools.lru_cache(maxsize=16)
def _cdf(items: tuple[tuple[str, float], ...]) -> tuple[tuple[str, ...], np.ndarray]:
    names = tuple(n for n, _ in items)
    probs = np.array([w for _, w in items])
    cdf = (probs / probs.sum()).cumsum()
    cdf /= cdf[-1]
    return names, cdf


def _pick(rng: np.random.Generator, table: dict[str, float]) -> str:
    """``names[rng.choice(len(names), p=normalised weights)]``, the draw done the way numpy's
    ``Generator.choice`` does it (one ``random()``, searched in the normalised cumulative sum), so
    the same name comes out and the stream advances the same; the table's sums are cached and the
    argument checks skipped (a sixth of the cost of drawing a framing)."""
    names, cdf = _cdf(tuple(table.items()))
    return names[int(cdf.searchsorted(rng.random(), side="right"))]


def sample_framing(view: str, rng: np.random.Generator) -> Framing:
    name = _pick(rng, {k: v[0] for k, v in FRAMINGS.items()})
    lo, hi = FRAMINGS[name][1]
    aspect = float(rng.uniform(lo, hi))
    extent = _pick(rng, EXTENTS[view])
    if extent == "cervical-pelvis":
        top, bottom = float(rng.uniform(0.2, 0.42)), float(rng.uniform(0.2, 0.45))
    elif extent == "thoracic-pelvis":
        top, bottom = float(rng.uniform(0.03, 0.2)), float(rng.uniform(0.06, 0.4))
    elif extent == "thoracolumbar":
        last = 4.5 if view == "lateral" else 3.0  # AP: the cut never reaches T4 (see EXTENTS)
        top, bottom = float(rng.uniform(1.0, last)), float(rng.uniform(0.06, 0.35))
    else:
        top, bottom = float(rng.uniform(9.3, 12.0)), float(rng.uniform(0.1, 0.35))
    return Framing(
        name=name,
        aspect=aspect,
        extent=extent,
        top=top,
        bottom=bottom,
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


def field_rows(framing: Framing, tops: np.ndarray, s1_y: float) -> tuple[float, float]:
    """World ``y`` of the field's top and bottom edges.

    ``tops`` are the superior endplates' mid heights of T1..L5 (world mm), ``s1_y`` the S1
    endplate's; long films add margins proportional to the T1-S1 length, cut films start at a
    (fractional) vertebral level.
    """
    length = float(tops[0] - s1_y)
    bottom = s1_y - framing.bottom * length
    if framing.extent in ("cervical-pelvis", "thoracic-pelvis"):
        return float(tops[0] + framing.top * length), float(bottom)
    v = int(np.clip(np.floor(framing.top), 0, len(tops) - 2))
    f = framing.top - v
    return float((1.0 - f) * tops[v] + f * tops[v + 1]), float(bottom)


def layout(
    framing: Framing, keypoints: np.ndarray, centre_x: float, height: int, rows: tuple[float, float]
) -> tuple[np.ndarray, int]:
    """The world-to-pixel affine and the image width, for an image ``height`` pixels tall.

    The field spans ``rows`` (world ``y`` of its top and bottom, :func:`field_rows`); the width
    follows the framing's aspect ratio only (never the anatomy). If a strongly curved spine would
    leave a narrow crop, the field zooms out just enough to keep every landmark inside the field's
    rows also inside the image's columns.
    """
    pts = np.asarray(keypoints, dtype=np.float64)
    field_top, field_bot = rows
    inside = pts[(pts[:, 1] <= field_top) & (pts[:, 1] >= field_bot)]
    pts = inside if len(inside) >= 2 else pts
    k = height / (field_top - field_bot)
    width = max(MIN_WIDTH, round(height * framing.aspect))
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
    contrast: float  # detector/film characteristic curve: slope of an S-curve (0 = linear)
    unsharp: float  # edge enhancement of computed radiography: strength
    unsharp_mm: float  # and radius, mm
    equalise: float  # dynamic-range compression (thick regions lifted, thin ones lowered)
    mottle: float  # coarse soft-tissue mottle (bowel content, fat planes)


def sample_exposure(rng: np.random.Generator) -> Exposure:
    """One film's exposure and processing, the same distribution for every class and view.

    The display window has headroom above dense bone (``high`` 1.1-1.6; it was 0.85-1.1), set from
    what real films show (benchmarks/realism.py's analysis, measured on the images, not their
    labels). Real films do not clip bone: on the 91 real AP dev films, after the predictor's
    min-max scaling, the median film puts its 99th intensity percentile at 0.83 (10-90% of films:
    0.71-0.95) and 0.02% of its pixels above 0.98; the brightest pixels are lead markers, text and
    metal. The old window clipped dense bone to white (99th percentile 1.0, 1-4% of pixels above
    0.98), so a phantom's spine_crop window was much brighter than a real one (median 0.70 against
    0.47), and the phantom-trained model under-called scoliosis on real full frames. The one real
    lateral film (99th percentile 0.70, 0.005% above 0.98) says the same. A wider system blur
    (0.8-3.2 mm), which matched the real films' finest-band energy better, scored worse zero-shot
    on the dev films and was not kept (README, "How real are they?").
    """
    return Exposure(
        gain=float(rng.uniform(1.2, 2.2)),
        soft=float(rng.uniform(0.32, 0.5)),
        bone=float(rng.uniform(0.22, 0.36)),
        air=float(rng.uniform(0.45, 0.7)),
        gamma=float(rng.uniform(0.75, 1.35)),
        low=float(rng.uniform(0.0, 0.12)),
        high=float(rng.uniform(1.1, 1.6)),
        fog=float(rng.uniform(0.0, 0.08)),
        heel=float(rng.uniform(-0.1, 0.1)),
        blur=float(rng.uniform(0.4, 1.8)),
        noise=float(rng.uniform(0.01, 0.05)),
        texture=float(rng.uniform(0.06, 0.2)),
        invert_background=bool(rng.random() < 0.05),
        contrast=float(rng.uniform(0.0, 3.0)),
        unsharp=float(rng.uniform(0.1, 0.6)) if rng.random() < 0.5 else 0.0,
        unsharp_mm=float(rng.uniform(4.0, 16.0)),
        equalise=float(rng.uniform(0.0, 0.15)),
        mottle=float(rng.uniform(0.01, 0.04)),
    )


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    h, w = max(2, int(height / cell) + 2), max(2, int(width / cell) + 2)
    small = rng.standard_normal((h, w)).astype(np.float32)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _low_pass(x: np.ndarray, sigma: float) -> np.ndarray:
    """A wide Gaussian blur computed at reduced resolution (cheap for radii of many pixels)."""
    h, w = x.shape
    f = max(1, int(sigma / 3.0))
    if f == 1:
        return cv2.GaussianBlur(x, (0, 0), sigma)
    small = cv2.resize(x, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / f)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


_LUT_SIZE = 4096
_LUT_STEPS = np.arange(_LUT_SIZE, dtype=np.float64)


@functools.lru_cache(maxsize=32)
def _heel_ramp(height: int) -> np.ndarray:
    """-1 .. 1 down the film's rows (a column vector), computed once per film height."""
    ramp = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    ramp.flags.writeable = False
    return ramp


def _tone_curve(exp: Exposure, d_max: float, entries: int = _LUT_SIZE) -> np.ndarray:
    """Attenuation -> displayed grey, every pointwise step in one table of ``_LUT_SIZE`` entries.

    Beer-Lambert absorption relative to dense bone over a full body, the display window, gamma
    and the detector's S-shaped characteristic curve. One table lookup per pixel replaces an
    exponential, a power and a tanh over the whole film. ``entries`` < ``_LUT_SIZE`` computes only
    the table's first entries (each entry is computed on its own, so they are the same values).
    """
    step = np.float64(d_max) / (_LUT_SIZE - 1)
    if step > 0.0:  # np.linspace(0, d_max, _LUT_SIZE) bit for bit, without its Python overhead
        d = _LUT_STEPS[:entries] * step
        if entries == _LUT_SIZE:
            d[-1] = d_max
    else:  # pragma: no cover - d_max is a sum of positive weights
        d = np.linspace(0.0, d_max, _LUT_SIZE, dtype=np.float64)
    signal = 1.0 - np.exp(-exp.gain * d)
    ref = 1.0 - np.exp(-exp.gain * (exp.soft + 1.8 * exp.bone))
    x = np.clip((signal / ref - exp.low) / (exp.high - exp.low), 0.0, 1.0) ** exp.gamma
    if exp.contrast > 0.0:
        c = exp.contrast
        lo, hi = np.tanh(-0.5 * c), np.tanh(0.5 * c)
        x = (np.tanh(c * (x - 0.5)) - lo) / (hi - lo)
    return x.astype(np.float32)


def form_film(cv: Canvas, exp: Exposure, bone_density: float, rng: np.random.Generator) -> np.ndarray:
    """Attenuation layers -> a float image in [0, 1] (bright = dense), with blur and noise.

    Transmission falls exponentially with the summed attenuation (Beer-Lambert); the displayed
    grey is the absorbed fraction, relative to what dense bone over a full body would absorb,
    through a display window, gamma and an S-shaped characteristic curve (:func:`_tone_curve`).
    Then the detector's processing: dynamic-range compression and unsharp-mask edge enhancement
    (what makes ribs and endplates stand out on computed radiographs).
    """
    h, w = cv.height, cv.width
    mm = cv.mm
    soft = cv.layers.get("soft")
    body = (soft > 127).view(np.uint8) if soft is not None else np.zeros((h, w), np.uint8)
    # Pointwise steps below run in place on arrays nothing else holds: the same float32 operations
    # in the same order as the expressions they replace, so the film is bit-identical, with fewer
    # temporaries (a fresh array costs more than the arithmetic on it at these sizes).
    thickness = cv2.distanceTransform(body, cv2.DIST_L2, 3)
    np.minimum(thickness, np.float32(70.0 * mm), out=thickness)
    thickness *= np.float32(1.0 / (70.0 * mm))
    cv2.sqrt(thickness, dst=thickness)
    air = _low_pass(cv.reduced("air"), max(0.5, 4.0 * mm))
    tex = _smooth_noise(rng, h, w, max(2.0, 4.0 * mm))
    tex *= np.float32(exp.texture)
    tex += np.float32(1.0)
    mottle = _smooth_noise(rng, h, w, max(2.0, 12.0 * mm))
    mottle *= np.float32(exp.mottle)
    mottle += np.float32(1.0)
    lay = cv.layers
    spongy = cv.reduced("bone")
    for name, weight in (("pelvis", 0.8), ("post", 0.5)):
        if name in lay:
            spongy += lay[name].astype(np.float32) * np.float32(weight / 255.0)
    spongy *= tex
    for name, weight in (("cortex", 0.9), ("ribs", 0.45)):
        if name in lay:
            spongy += lay[name].astype(np.float32) * np.float32(weight / 255.0)
    # Bowel content, muscle and fat planes: a coarse mottle over the soft tissue.
    air *= np.float32(-exp.air)
    air += np.float32(1.0)
    density = thickness
    density *= mottle
    density *= air
    density *= np.float32(exp.soft)
    spongy *= np.float32(exp.bone * bone_density)
    density += spongy
    d_max = float(exp.soft * 1.2 + exp.bone * bone_density * 6.0)
    density *= np.float32((_LUT_SIZE - 1) / d_max)
    np.minimum(density, np.float32(_LUT_SIZE - 1), out=density)
    idx = density.astype(np.int32)
    # A film uses about half of the table (its densest pixel sits near the middle): only the
    # entries up to the largest index are computed. A negative index (never seen; it would wrap
    # around to the table's end) gets the whole table, as before.
    entries = int(idx.max()) + 1 if idx.min() >= 0 else _LUT_SIZE
    x = np.take(_tone_curve(exp, d_max, entries), idx)  # = table[idx]
    if exp.equalise > 0.0 or exp.unsharp > 0.0:
        wide = _low_pass(x, max(1.0, exp.unsharp_mm * mm * 2.5))
        near = _low_pass(x, max(1.0, exp.unsharp_mm * mm))
        # x * (1 + unsharp) - near * unsharp - (wide - 0.5) * equalise, evaluated in that order
        x *= np.float32(1.0 + exp.unsharp)
        near *= np.float32(exp.unsharp)
        x -= near
        wide -= np.float32(0.5)
        wide *= np.float32(exp.equalise)
        x -= wide
    x *= 1.0 + np.float32(exp.heel) * _heel_ramp(h)
    x += np.float32(exp.fog)
    if exp.invert_background:
        x = np.where(body > 0, x, np.maximum(x, np.float32(0.85)))
    x = cv2.GaussianBlur(x, (0, 0), max(0.5, exp.blur * mm))  # also hides the strokes' aliasing
    np.clip(x, 0.0, 1.0, out=x)
    grain = rng.standard_normal((h, w), dtype=np.float32)
    level = x + np.float32(0.05)
    grain *= cv2.sqrt(level, dst=level)
    grain *= np.float32(exp.noise)
    x += grain
    return np.clip(x, 0.0, 1.0, out=x)


# --- annotations ----------------------------------------------------------------------------------

_CHARS = string.ascii_uppercase + string.digits
_CHAR_ARRAY, _DIGIT_ARRAY = np.array(list(_CHARS)), np.array(list(string.digits))


@functools.lru_cache(maxsize=512)
def _glyph(ch: str, font: int) -> tuple[int, int]:
    """Advance width and height of one Hershey glyph at scale 1, thickness 1 (cached)."""
    (w, h), _ = cv2.getTextSize(ch, font, 1.0, 1)
    return w, h


def warm_text_cache() -> None:
    """Measure every glyph the annotations use, once, in this process.

    OpenCV's first text measurement costs 50-70 ms (it sets up its Hershey fonts); a process pool
    forked after this call inherits both that setup and the filled glyph cache, instead of paying
    for them again in every worker.
    """
    for ch in _CHARS + "LR -":
        _glyph(ch, cv2.FONT_HERSHEY_SIMPLEX)
        _glyph(ch, cv2.FONT_HERSHEY_PLAIN)


def _text_size(text: str, font: int, scale: float, thick: int) -> tuple[int, int]:
    """``cv2.getTextSize`` from cached glyph sizes (it costs a font lookup per call otherwise)."""
    w = sum(_glyph(ch, font)[0] for ch in text)
    h = max(_glyph(ch, font)[1] for ch in text)
    return round(w * scale) + thick, round(h * scale)


def _random_text(rng: np.random.Generator) -> str:
    kind = int(rng.integers(4))
    if kind == 0:
        return f"{rng.integers(1990, 2025)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"
    # rng.choice(list(chars), size=k) is chars[rng.integers(0, len(chars), size=k)] (the same
    # draws), without converting the list on every call
    if kind == 1:
        return "ID " + "".join(_DIGIT_ARRAY[rng.integers(0, len(_DIGIT_ARRAY), size=int(rng.integers(5, 9)))])
    if kind == 2:
        return "".join(_CHAR_ARRAY[rng.integers(0, len(_CHAR_ARRAY), size=int(rng.integers(3, 10)))])
    return f"{rng.integers(60, 125)}KV {rng.integers(5, 40)}MAS"


def annotate(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Side marker, burned-in text, ruler, stitching seam and collimation edges (uint8, in place)."""
    h, w = img.shape
    unit = h / 256.0
    # Lead side marker: a letter, sometimes boxed, near a top corner (or anywhere along the edge).
    letter = "L" if rng.random() < 0.5 else "R"
    scale = float(rng.uniform(0.2, 0.42)) * unit
    thick = max(1, round(rng.uniform(0.8, 2.0) * unit))
    tw, th = _text_size(letter, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
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
        tw, th = _text_size(text, cv2.FONT_HERSHEY_PLAIN, s * 2.0, 1)
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
    # Seam where two cassettes/detector shots were stitched into one full-spine film: a thin line
    # and a step in brightness and blur between the two exposures.
    if rng.random() < 0.25:
        yy = int(rng.uniform(0.3, 0.7) * h)
        t = max(1, round(unit))
        below = img[yy + t :].astype(np.float32) * float(rng.uniform(0.85, 1.15)) + float(
            rng.uniform(-12, 12)
        )
        img[yy + t :] = np.clip(below, 0, 255).astype(np.uint8)
        img[yy : yy + t, :] = np.clip(img[yy : yy + t, :] * 0.6 + float(rng.uniform(20, 90)), 0, 255)
    # Collimation: black bands at the edges.
    if rng.random() < 0.2:
        left, right = int(rng.uniform(0, 0.06) * w), int(rng.uniform(0, 0.06) * w)
        img[:, :left] = 0
        if right:
            img[:, w - right :] = 0
    return img


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    _, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def present(
    img: np.ndarray, rng: np.random.Generator, side_by_side: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """How the film reached us: sometimes next to another film, photographed, JPEG-compressed.

    ``side_by_side`` is off for AP films: the scoliosis model's spine_crop window would then
    centre on the gap between two spines, which the real AP films never show. Returns the new
    image and the 2x3 affine that maps the film's pixel coordinates into it (a
    similarity: rotation, uniform scale and shift, so angles measured from landmarks are kept).
    """
    h, w = img.shape
    m = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    # Two films side by side (a follow-up or a differently processed copy, shown mirrored, as a
    # PACS screen or a scanned pair shows them); the film itself may be the left or the right one.
    if rng.random() < (0.04 if side_by_side else 0.0):
        other = np.clip((img.astype(np.float32) / 255.0) ** float(rng.uniform(0.7, 1.4)) * 255.0, 0, 255)
        other = other.astype(np.uint8)[:, ::-1]
        gap = np.full((h, max(1, int(rng.uniform(0.0, 0.08) * w))), int(rng.integers(0, 60)), np.uint8)
        if rng.random() < 0.5:
            img = np.hstack([img, gap, other])
        else:
            img = np.hstack([other, gap, img])
            m[0, 2] += w + gap.shape[1]
        w = img.shape[1]
    # A photographed (or screen-captured) copy: the film shrunk inside a darker surround, slightly
    # turned, unevenly lit, softened, with the camera's noise.
    if rng.random() < 0.05:
        scale = float(rng.uniform(0.8, 0.96))
        angle = float(rng.uniform(-3.0, 3.0))
        rot = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, scale)
        rot[:, 2] += [rng.uniform(-0.03, 0.03) * w, rng.uniform(-0.03, 0.03) * h]
        surround = int(rng.integers(0, 90))
        img = cv2.warpAffine(img, rot, (w, h), flags=cv2.INTER_LINEAR, borderValue=surround)
        m = rot @ np.vstack([m, [0.0, 0.0, 1.0]])
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - w / 2.0) / (0.7 * w)) ** 2 + ((yy - h / 2.0) / (0.7 * h)) ** 2
        light = 1.0 - float(rng.uniform(0.1, 0.35)) * r2 + float(rng.uniform(-0.1, 0.1)) * (xx / w - 0.5)
        x = img.astype(np.float32) * light + float(rng.uniform(0, 25))
        x = cv2.GaussianBlur(x, (0, 0), float(rng.uniform(0.4, 1.2)))
        x += float(rng.uniform(1.0, 5.0)) * rng.standard_normal(x.shape, dtype=np.float32)
        img = np.clip(x, 0, 255).astype(np.uint8)
        img = _jpeg(img, int(rng.integers(60, 92)))
    # Many archived films were stored as JPEG: block artefacts and softened edges.
    elif rng.random() < 0.4:
        img = _jpeg(img, int(rng.integers(55, 96)))
    return img, m
