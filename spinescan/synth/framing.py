"""Where a film's field of view sits on the spine: its framing (aspect, extent along the spine,
margins, shift, rotation, mirroring), drawn without knowing the class, and the affine that places the
spine on the film.

Each nuisance variable (here, :mod:`.exposure` and :mod:`.presentation`) is drawn from its own random
stream with a distribution that does not know the class. That is what makes the "no shortcut"
property hold: the image size, brightness, contrast, crop and annotations carry no information about
the label, which lives only in the spine's geometry.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

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
