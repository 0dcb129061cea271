"""How attenuation becomes grey levels: the film's exposure (drawn without knowing the class) and its
formation (scatter, texture, mottle, the tone curve of film and display window, unsharp masking, heel
effect, grain)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from spinescan.synth.canvas import Canvas


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
