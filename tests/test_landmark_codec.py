"""Landmark targets and read-out (spinescan.radiograph.landmark_codec) through the preprocessing's
geometry."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from spinescan.radiograph.landmark_codec import (
    N_POINTS,
    POINT_NAMES,
    decode,
    encode,
    from_normalised,
    to_normalised,
)
from spinescan.radiograph.preprocess import Preprocessing, preprocess, preprocess_placed
from spinescan.synth import generate


def _film(height: int, width: int, spine_x: int, dot: tuple[float, float]) -> np.ndarray:
    """A dark film, a bright spine band at ``spine_x`` and a small bright disc centred on ``dot``."""
    img = np.full((height, width), 20, np.uint8)
    img[:, spine_x - 8 : spine_x + 8] = 120
    shift = 4
    centre = (round(dot[0] * (1 << shift)), round(dot[1] * (1 << shift)))
    cv2.circle(img, centre, 9 << shift, 255, -1, cv2.LINE_AA, shift)
    return img


def _centroid(x: np.ndarray, around: np.ndarray, r: int = 5) -> np.ndarray:
    """Centroid of the disc near ``around`` (input pixel coordinates): the pixels brighter than the
    spine band (0.43 after min-max scaling), weighted by how much brighter."""
    cx, cy = (round(float(v)) for v in around)
    win = x[cy - r : cy + r + 1, cx - r : cx + r + 1].astype(np.float64)
    win = np.clip(win - 0.5, 0, None)
    ys, xs = np.mgrid[cy - r : cy + r + 1, cx - r : cx + r + 1]
    return np.array([(xs * win).sum() / win.sum(), (ys * win).sum() / win.sum()])


@pytest.mark.parametrize(
    ("shape", "prep", "size"),
    [
        ((600, 400), Preprocessing(), (128, 64, 1)),
        ((600, 400), Preprocessing(resize="spine_crop", crop_aspect=0.375), (128, 48, 1)),
        ((300, 900), Preprocessing(resize="spine_crop", crop_aspect=0.3), (96, 32, 1)),
        ((700, 150), Preprocessing(resize="spine_crop", crop_aspect=0.5), (64, 32, 1)),
    ],
)
def test_placement_follows_the_pixels(shape: tuple[int, int], prep: Preprocessing, size: tuple) -> None:
    h, w = shape
    spine_x = int(w * 0.6)
    dot = (spine_x - 29.7, h * 0.41 + 0.7)  # beside the spine band, inside every crop
    img = _film(h, w, spine_x, dot)
    x, pl = preprocess_placed(img, size, prep)
    np.testing.assert_array_equal(x, preprocess(img, size, prep))  # same tensor as the classifiers get
    expected = pl.to_input(np.array(dot))
    found = _centroid(x[:, :, 0], expected)
    # the blob's centroid after an area resize sits where the mapping says, to a fraction of a pixel
    assert np.hypot(*(found - expected)) < 0.1  # a half-pixel convention slip would be ~0.4
    pts = np.array([[0.0, 0.0], [w - 1.0, h - 1.0], dot])
    np.testing.assert_allclose(pl.to_source(pl.to_input(pts)), pts, atol=1e-9)


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    out = tmp_path_factory.mktemp("codec")
    generate(out, per_class=2, seed=5, size=192, workers=1, progress=False)
    with open(out / "manifest.csv", newline="") as f:
        return out, list(csv.DictReader(f))


def test_encode_then_decode_returns_the_manifest_landmarks(rows: tuple[Path, list[dict[str, str]]]) -> None:
    root, manifest = rows
    size = (128, 48, 1)
    crops = (Preprocessing(resize=m, crop_aspect=0.375) for m in ("spine_crop", "spine_band"))
    for prep in (Preprocessing(), *crops):
        for r in manifest:
            img = cv2.imread(str(root / r["file"]), cv2.IMREAD_GRAYSCALE)
            _, pl = preprocess_placed(img, size, prep)
            lm, sac = np.array(json.loads(r["landmarks"])), np.array(json.loads(r["sacrum"]))
            t = encode(lm, sac, pl, size[:2])
            assert t.coords.shape == (N_POINTS, 2) and t.coords.dtype == np.float32
            assert t.coords.min() >= 0.0 and t.coords.max() <= 1.0
            logits = np.where(t.visible, 10.0, -10.0)
            d = decode(t.coords, logits, pl, size[:2])
            vis = t.visible[:68]
            # float32 targets: a few thousandths of a film pixel
            np.testing.assert_allclose(d.landmarks[vis], lm[vis], atol=0.01)
            assert np.isnan(d.landmarks[~vis]).all()
            if prep.resize == "letterbox":  # the letterboxed film keeps every landmark on the film
                h, w = img.shape[:2]
                on_film = (lm[:, 0] >= 0) & (lm[:, 0] <= w - 1) & (lm[:, 1] >= 0) & (lm[:, 1] <= h - 1)
                np.testing.assert_array_equal(t.visible[:68], on_film)


def test_spine_band_keeps_the_rows_of_narrow_films() -> None:
    narrow = np.full((600, 100), 10, np.uint8)
    narrow[:, 40:60] = 200
    band = Preprocessing(resize="spine_band", crop_aspect=0.375)
    _, pl = preprocess_placed(narrow, (128, 48, 1), band)
    assert (pl.crop_top, pl.crop_height, pl.crop_width) == (0, 600, 100)  # whole film, padded
    _, cut = preprocess_placed(narrow, (128, 48, 1), Preprocessing(resize="spine_crop", crop_aspect=0.375))
    assert cut.crop_height < 600  # spine_crop cuts rows of the same film
    wide = np.full((600, 900), 10, np.uint8)
    wide[:, 600:640] = 200
    _, pl = preprocess_placed(wide, (128, 48, 1), band)
    assert pl.crop_height == 600 and pl.crop_width == 225 and pl.crop_left <= 620 <= pl.crop_left + 225
    assert "rows kept" in band.describe()


def test_points_cut_off_by_the_crop_are_invisible() -> None:
    img = np.full((400, 800), 10, np.uint8)
    img[:, 380:420] = 200  # the spine column
    _, pl = preprocess_placed(img, (64, 32, 1), Preprocessing(resize="spine_crop", crop_aspect=0.5))
    lm = np.tile(np.array([[400.0, 200.0]]), (68, 1))
    lm[0] = [20.0, 200.0]  # far left: outside the 200-px-wide window around the spine
    lm[1] = [np.nan, np.nan]  # unknown
    t = encode(lm, None, pl, (64, 32))
    assert not t.visible[0] and not t.visible[1] and t.visible[2:68].all()
    assert not t.visible[68:].any()  # no sacrum given
    assert POINT_NAMES[0] == "T1-TL" and POINT_NAMES[-1] == "S1-R" and len(POINT_NAMES) == N_POINTS


def test_normalised_coordinates_span_the_input() -> None:
    hw = (64, 32)
    corners = np.array([[-0.5, -0.5], [31.5, 63.5], [15.5, 31.5]])
    np.testing.assert_allclose(to_normalised(corners, hw), [[0, 0], [1, 1], [0.5, 0.5]])
    np.testing.assert_allclose(from_normalised(to_normalised(corners, hw), hw), corners)
