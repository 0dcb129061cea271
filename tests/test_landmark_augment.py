"""Landmark augmentation moves each film and its targets together (and re-labels mirrored corners)."""

from __future__ import annotations

import numpy as np
import pytest

from spinescan.radiograph.landmark_codec import POINT_NAMES, mirror_order

tf = pytest.importorskip("tensorflow")


def test_mirror_order_swaps_sides_and_is_an_involution():
    order = mirror_order()
    assert [POINT_NAMES[i] for i in order[:4]] == ["T1-TR", "T1-TL", "T1-BR", "T1-BL"]
    assert [POINT_NAMES[i] for i in order[-2:]] == ["S1-R", "S1-L"]
    assert [order[i] for i in order] == list(range(len(POINT_NAMES)))


def _dots(n: int, h: int, w: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Films with one bright pixel per visible target, the dots far enough apart to be told apart."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, h, w, 1), np.float32)
    y = np.zeros((n, k, 3), np.float32)
    for i in range(n):
        for j, py in enumerate(np.linspace(12, h - 12, 4).astype(int)):
            px = int(rng.integers(8, w - 8))
            x[i, py, px, 0] = 1.0
            y[i, j] = [(px + 0.5) / w, (py + 0.5) / h, 1.0]
    return x, y


def test_targets_follow_the_warped_film():
    from spinescan.training.augment import Augmentation, augment_landmark_batch

    h, w, k = 96, 48, len(POINT_NAMES)
    x, y = _dots(8, h, w, k, seed=0)
    geometric = Augmentation(
        rotation_deg=10, shift=0.05, zoom=0.1, flip=True, brightness=0, contrast=0, gamma=0, noise=0,
        blur_probability=0,
    )
    identity = list(range(k))  # the dots are not corners: check geometry alone
    xa, ya = (t.numpy() for t in augment_landmark_batch(x, y, tf.constant([3, 4]), geometric, 0.0, identity))
    yy, xx = np.mgrid[0:h, 0:w]
    errors = []
    for i in range(len(x)):
        for j in range(4):
            if ya[i, j, 2] < 0.5:
                continue
            tx, ty = ya[i, j, 0] * w - 0.5, ya[i, j, 1] * h - 0.5
            window = (np.abs(xx - tx) < 3) & (np.abs(yy - ty) < 3)
            mass = xa[i, ..., 0] * window
            assert mass.sum() > 0.5, "the dot is not where its target went"
            errors.append(np.hypot((mass * xx).sum() / mass.sum() - tx, (mass * yy).sum() / mass.sum() - ty))
    assert len(errors) >= 24
    assert np.median(errors) < 0.2


def test_a_mirrored_film_swaps_its_corners():
    from spinescan.training.augment import Augmentation, augment_landmark_batch

    h, w, k = 64, 32, len(POINT_NAMES)
    y = np.zeros((16, k, 3), np.float32)
    y[:, 0] = [0.25, 0.5, 1.0]  # T1-TL on the left
    y[:, 1] = [0.75, 0.5, 1.0]  # T1-TR on the right
    flip_only = Augmentation(
        rotation_deg=0, shift=0, zoom=0, flip=True, brightness=0, contrast=0, gamma=0, noise=0,
        blur_probability=0,
    )
    x = np.zeros((16, h, w, 1), np.float32)
    x[:, h // 2, 2, 0] = 1.0  # a marker on the left edge shows which films were mirrored
    xa, ya = augment_landmark_batch(x, y, tf.constant([1, 2]), flip_only, 0.0, mirror_order())
    xa, ya = xa.numpy(), ya.numpy()
    mirrored = xa[:, h // 2, w - 3, 0] > 0.5
    assert 0 < mirrored.sum() < len(x)
    # mirrored or not, the top-left corner stays left of the top-right one
    assert (ya[:, 0, 0] < ya[:, 1, 0]).all()
    assert np.allclose(sorted({round(float(v), 4) for v in ya[:, 0, 0]}), [0.25])
