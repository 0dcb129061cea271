"""The tf.data pipeline: same tensors as the numpy predictor path, sane augmentation, weights."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from spinescan.radiograph.imageio import read_image
from spinescan.radiograph.preprocess import preprocess
from spinescan.training import augment, pipeline
from spinescan.zoo.registry import get_spec

NO_AUG = augment.Augmentation(
    rotation_deg=0,
    shift=0,
    zoom=0,
    flip=False,
    brightness=0,
    contrast=0,
    gamma=0,
    noise=0,
    blur_probability=0,
)


def _spec(size: int = 48):
    return get_spec("generalist").with_image_size(size)


def _images(tmp_path: Path, n: int = 6) -> list[Path]:
    """Films of odd shapes and formats (tall/narrow, 16-bit, RGBA) so resizing is exercised."""
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        h, w = 90 + 17 * i, 40 + 9 * i
        img = (rng.random((h, w)) * 255).astype(np.uint8)
        if i % 3 == 1:
            img = (img.astype(np.uint16) * 257).astype(np.uint16)
        elif i % 3 == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGRA)
        path = tmp_path / f"img{i}.png"
        cv2.imwrite(str(path), img)
        paths.append(path)
    return paths


def _collect(ds) -> tuple[np.ndarray, ...]:
    parts = list(zip(*[tuple(t.numpy() for t in batch) for batch in ds], strict=True))
    return tuple(np.concatenate(p) for p in parts)


def test_class_weights_balance_the_loss() -> None:
    labels = np.array([0] * 6 + [1] * 2 + [2] * 4)
    w = pipeline.class_weights(labels, 4)
    # Each present class contributes the same total weight; an absent class gets none.
    totals = [w[c] * np.sum(labels == c) for c in range(3)]
    assert np.allclose(totals, totals[0])
    assert np.isclose(w[labels].sum(), len(labels))
    assert w[3] == 0


def test_every_source_matches_numpy_preprocess(tmp_path: Path) -> None:
    spec = _spec()
    paths = _images(tmp_path)
    labels = np.arange(len(paths)) % 3
    expected = np.stack([preprocess(read_image(p), spec.input_size, spec.preprocessing) for p in paths])
    x_files, y_files = _collect(pipeline.make_dataset(paths, labels, spec, batch_size=4))
    assert np.abs(x_files - expected).max() < 1e-6
    assert list(y_files) == list(labels)
    arrays = pipeline.load_arrays([_Sample(p) for p in paths], spec)
    x_mem, y_mem = _collect(pipeline.make_dataset(arrays, labels, spec, batch_size=4))
    assert np.abs(x_mem - expected).max() < 1e-6
    assert list(y_mem) == list(labels)
    cached = pipeline.cache_arrays([_Sample(p) for p in paths], spec, tmp_path / "cache.npy")
    assert isinstance(cached, np.memmap)
    x_map, y_map = _collect(pipeline.make_dataset(cached, labels, spec, batch_size=4))
    assert np.abs(x_map - expected).max() < 1e-6
    assert list(y_map) == list(labels)
    # Training order is shuffled, yet every image still travels with its own label.
    x_tr, y_tr = _collect(pipeline.make_dataset(cached, labels, spec, batch_size=2, training=True, seed=1))
    for image, label in zip(x_tr, y_tr, strict=True):
        i = int(np.argmin(np.abs(expected - image).reshape(len(paths), -1).max(axis=1)))
        assert np.abs(expected[i] - image).max() < 1e-6 and labels[i] == label


class _Sample:
    def __init__(self, path: Path) -> None:
        self.path = path


def test_training_dataset_shuffles_keeps_weights_and_drops_ragged_batch() -> None:
    spec = _spec(16)
    n, batch = 21, 4
    x = np.arange(n, dtype=np.float32)[:, None, None, None] * np.ones((1, 16, 16, 1), np.float32) / n
    y = np.arange(n) % 3
    w = np.linspace(0.5, 1.5, n).astype(np.float32)
    ds = pipeline.make_dataset(x, y, spec, batch, training=True, sample_weights=w, seed=3)
    xb, yb, wb = _collect(ds)
    assert len(yb) == (n // batch) * batch  # the ragged last batch is dropped in training
    ids = np.rint(xb[:, 0, 0, 0] * n).astype(int)
    assert len(set(ids)) == len(ids)  # no image twice in an epoch
    assert list(ids) != sorted(ids)  # shuffled
    assert np.allclose(yb, y[ids]) and np.allclose(wb, w[ids])  # labels/weights travel with images
    second = np.rint(_collect(ds)[0][:, 0, 0, 0] * n).astype(int)
    assert list(second) != list(ids)  # reshuffled each epoch


def test_augmentation_without_ranges_is_identity() -> None:
    import tensorflow as tf

    x = np.random.default_rng(0).random((3, 24, 20, 1)).astype(np.float32)
    out = augment.augment_batch(tf.constant(x), tf.constant([1, 2]), NO_AUG).numpy()
    assert np.abs(out - x).max() < 1e-4


def test_augmentation_is_seeded_bounded_and_changes_images() -> None:
    import tensorflow as tf

    x = np.random.default_rng(0).random((4, 32, 32, 1)).astype(np.float32)
    a = augment.augment_batch(tf.constant(x), tf.constant([5, 6])).numpy()
    b = augment.augment_batch(tf.constant(x), tf.constant([5, 6])).numpy()
    c = augment.augment_batch(tf.constant(x), tf.constant([7, 8])).numpy()
    assert a.shape == x.shape and a.dtype == np.float32
    assert np.array_equal(a, b)  # same seed, same result
    assert not np.allclose(a, c)  # another seed, another result
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert not np.allclose(a, x)


def test_flip_alone_mirrors_some_images_and_leaves_the_others() -> None:
    import tensorflow as tf

    x = np.random.default_rng(2).random((16, 20, 24, 1)).astype(np.float32)
    out = augment.augment_batch(tf.constant(x), tf.constant([9, 9]), replace(NO_AUG, flip=True)).numpy()
    mirrored = [np.abs(o - xi[:, ::-1]).max() < 1e-4 for o, xi in zip(out, x, strict=True)]
    kept = [np.abs(o - xi).max() < 1e-4 for o, xi in zip(out, x, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True))
    assert any(mirrored) and any(kept)


def _second_moments(img: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(img > 0.5)
    return np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(float)))


def test_geometric_augmentation_preserves_angles() -> None:
    """Rotation, shift and zoom only: a disc stays a disc (shear or anisotropic stretching, which
    would change the curvature angles that define the labels, would make it an ellipse)."""
    import tensorflow as tf

    size = 64
    yy, xx = np.mgrid[:size, :size]
    disc = ((xx - 32) ** 2 + (yy - 30) ** 2 <= 12**2).astype(np.float32)[None, :, :, None]
    strong = replace(NO_AUG, rotation_deg=30, shift=0.1, zoom=0.3, flip=True)
    batch = np.repeat(disc, 8, axis=0)
    out = augment.augment_batch(tf.constant(batch), tf.constant([3, 4]), strong).numpy()
    areas = []
    for img in out[..., 0]:
        small, large = _second_moments(img)
        assert large / small < 1.15
        areas.append((img > 0.5).sum())
    assert np.ptp(areas) > 10  # zoom did act


@pytest.mark.real
def test_real_films_tf_pipeline_equals_numpy_preprocess(real_dir: Path) -> None:
    """Every real film through the loader, then the tf.data path and the numpy path agree."""
    spec = _spec(128)
    root = real_dir / "fraiwan-kauh-dev"
    with open(root / "manifest.csv", newline="") as fh:
        files = [root / row["file"] for row in csv.DictReader(fh)]
    files += sorted((real_dir / "lateral-sample").glob("*.png"))
    assert len(files) > 50
    expected = np.stack([preprocess(read_image(p), spec.input_size, spec.preprocessing) for p in files])
    x, _ = _collect(pipeline.make_dataset(files, np.zeros(len(files), int), spec, batch_size=16))
    assert x.shape == expected.shape
    assert np.abs(x - expected).max() < 1e-5
