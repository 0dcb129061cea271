"""The shared preprocessing: aspect kept, intensity in [0, 1], and no width shortcut with spine_crop."""

from __future__ import annotations

import numpy as np
import pytest

from spinescan.radiograph.preprocess import Preprocessing, crop_window, preprocess, spine_column


def film(height: int, width: int, spine_x: int, angle_deg: float = 0.0) -> np.ndarray:
    """A dark film with a bright 'spine' band, optionally tilted."""
    img = np.full((height, width), 30, np.uint8)
    ys = np.arange(height)
    xs = (spine_x + np.tan(np.radians(angle_deg)) * (ys - height / 2)).astype(int)
    for y, x in zip(ys, xs, strict=True):
        img[y, max(0, x - 6) : x + 6] = 220
    return img


def test_letterbox_keeps_angles() -> None:
    img = film(400, 200, 100, angle_deg=10)
    x = preprocess(img, (64, 64, 1))[:, :, 0]
    rows = np.arange(8, 56)
    centres = np.array([np.average(np.arange(64), weights=x[r] + 1e-9) for r in rows])
    slope = np.polyfit(rows, centres, 1)[0]
    assert np.degrees(np.arctan(slope)) == pytest.approx(10, abs=1.5)
    assert x[:, :10].max() == 0.0 and x[:, -10:].max() == 0.0  # padding left and right


def test_intensity_and_channels() -> None:
    img8 = film(100, 50, 25)
    img16 = img8.astype(np.uint16) * 257
    a = preprocess(img8, (32, 32, 3))
    b = preprocess(img16, (32, 32, 3))
    assert a.shape == (32, 32, 3) and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_array_equal(a[:, :, 0], a[:, :, 2])
    rgba = np.dstack([img8, img8, img8, np.full_like(img8, 255)])
    np.testing.assert_allclose(preprocess(rgba, (32, 32, 1))[:, :, 0], a[:, :, 0], atol=1e-5)


def test_flat_image_does_not_divide_by_zero() -> None:
    x = preprocess(np.full((40, 20), 7, np.uint8), (16, 16, 1))
    assert np.isfinite(x).all() and x.max() == 0.0


def test_spine_column_found_off_centre() -> None:
    assert abs(spine_column(film(300, 300, 180).astype(np.float32)) - 180) <= 3


def test_spine_crop_removes_the_width_signal() -> None:
    """The same spine framed narrow or wide gives the same padding, so width is not visible."""
    prep = Preprocessing(resize="spine_crop", crop_aspect=0.3)
    narrow = film(600, 200, 100)
    wide = np.full((600, 900), 30, np.uint8)
    wide[:, 350:550] = narrow
    a = preprocess(narrow, (64, 64, 1), prep)[:, :, 0]
    b = preprocess(wide, (64, 64, 1), prep)[:, :, 0]
    pad_a, pad_b = (a.max(axis=0) == 0).sum(), (b.max(axis=0) == 0).sum()
    assert pad_a == pad_b
    np.testing.assert_allclose(a, b, atol=0.02)
    # Letterbox, by contrast, shows the width as padding.
    la = preprocess(narrow, (64, 64, 1))[:, :, 0]
    lb = preprocess(wide, (64, 64, 1))[:, :, 0]
    assert (la.max(axis=0) == 0).sum() != (lb.max(axis=0) == 0).sum()


def test_crop_window_shapes() -> None:
    assert crop_window(np.zeros((600, 900)), 0.3)[2:] == (600, 180)
    assert crop_window(np.zeros((600, 100)), 0.3)[2:] == (333, 100)


def test_preprocessing_round_trips_through_json() -> None:
    import json

    prep = Preprocessing(resize="spine_crop", intensity="percentile", crop_aspect=0.25)
    assert Preprocessing.from_dict(json.loads(prep.to_json())) == prep
    with pytest.raises(ValueError):
        Preprocessing(resize="stretch")
