"""What happens to a film after it is formed: burnt-in text and markers, and how it reached us (next to
another film, photographed, JPEG-compressed). Drawn without knowing the class."""

from __future__ import annotations

import functools
import string

import cv2
import numpy as np

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
