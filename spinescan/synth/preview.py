"""A contact sheet of a phantom dataset: a few films per class with their angles, for eyeballing.

Looking at the images is part of using the generator responsibly (does it look like a radiograph,
is the label visible in the spine?); one PNG per dataset makes that a single command.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import cv2
import numpy as np

from spinescan.atomic import atomic_write_bytes
from spinescan.synth.labels import CLASSES
from spinescan.synth.writer import MANIFEST, SynthError

_CAPTION = 16


def _caption(row: dict[str, str]) -> str:
    if row["view"] == "lateral":
        return f"K{float(row['thoracic_kyphosis_deg']):.0f} L{float(row['lumbar_lordosis_deg']):.0f}"
    return f"Cobb {float(row['cobb_deg']):.0f}"


def _tile(root: Path, row: dict[str, str], height: int, landmarks: bool) -> np.ndarray:
    img = cv2.imread(str(root / row["file"]), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise SynthError(f"cannot read {root / row['file']}")
    scale = height / img.shape[0]
    tile = cv2.resize(img, (max(1, round(img.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)
    tile = cv2.cvtColor(tile, cv2.COLOR_GRAY2BGR)
    if landmarks:
        pts = np.array(json.loads(row["landmarks"])) * scale
        for x, y in pts:
            cv2.circle(tile, (round(x), round(y)), 1, (0, 200, 255), -1, cv2.LINE_AA)
    text = _caption(row)
    (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.38, 1)
    if tile.shape[1] < tw + 4:  # narrow crops: pad so that captions do not run into each other
        extra = tw + 4 - tile.shape[1]
        left, right = extra // 2, extra - extra // 2
        tile = cv2.copyMakeBorder(tile, 0, 0, left, right, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    strip = np.full((_CAPTION, tile.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (2, _CAPTION - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([tile, strip])


def contact_sheet(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    per_class: int = 6,
    height: int = 180,
    landmarks: bool = False,
) -> Path:
    """Write a PNG grid: one row per (view, class), ``per_class`` films each, captioned by angle."""
    root = Path(root)
    try:
        with open(root / MANIFEST, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise SynthError(f"cannot read {root / MANIFEST}: {exc.strerror or exc}") from None
    lines = []
    for view, classes in CLASSES.items():
        for label in classes:
            chosen = [r for r in rows if r["view"] == view and r["label"] == label][:per_class]
            if not chosen:
                continue
            tiles = [_tile(root, r, height, landmarks) for r in chosen]
            head = np.full((height + _CAPTION, 86, 3), 255, np.uint8)
            for k, text in enumerate((view, label)):
                cv2.putText(
                    head, text, (4, 20 + 18 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA
                )
            gap = np.full((height + _CAPTION, 3, 3), 255, np.uint8)
            lines.append(np.hstack([head] + [x for t in tiles for x in (t, gap)]))
    if not lines:
        raise SynthError(f"{root / MANIFEST} lists no phantoms")
    width = max(line.shape[1] for line in lines)
    sheet = np.vstack(
        [np.pad(line, ((0, 4), (0, width - line.shape[1]), (0, 0)), constant_values=255) for line in lines]
    )
    ok, buf = cv2.imencode(".png", sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:  # pragma: no cover
        raise SynthError("PNG encoding failed")
    return atomic_write_bytes(out, buf.tobytes())
