"""Batch augmentation for the tf.data pipeline (:mod:`spinescan.training.pipeline`).

Augmentation runs on whole batches, never inside the model (random layers do not export to
ONNX). It only uses transforms that preserve curvature angles: rotation, shift and *isotropic*
zoom move or scale the spine as a whole; brightness, contrast, gamma, noise and blur change
exposure; a horizontal flip mirrors it. Shear and anisotropic stretching are excluded on purpose:
they change the very angles (Cobb, kyphosis, lordosis) that define the labels. A landmark model's
targets move with its films (:func:`augment_landmark_batch`).

Randomness is stateless and seeded from ``tf.data.Dataset.random(seed)``, so a run is repeatable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spinescan.errors import require_tensorflow

if TYPE_CHECKING:
    import tensorflow as tf


@dataclass(frozen=True)
class Augmentation:
    """Ranges of the random, angle-preserving transforms (all applied per image)."""

    rotation_deg: float = 7.0
    shift: float = 0.06  # fraction of the image size
    zoom: float = 0.10  # isotropic scale in [1 - zoom, 1 + zoom]
    flip: bool = True
    brightness: float = 0.08  # additive
    contrast: float = 0.20  # multiplicative about the image mean
    gamma: float = 0.3  # tone curve y + a*y*(1-y), a in [-g, g] (about gamma 0.77-1.3)
    noise: float = 0.03  # max std of additive (uniform) noise
    blur_probability: float = 0.3


DEFAULT_AUGMENTATION = Augmentation()

# Exposure, contrast, tone curve, blur and noise only: nothing moves, so the landmark models can
# use it without moving the images under their targets (real films differ from phantoms far more
# in exposure and detector curve than in geometry).
PHOTOMETRIC_AUGMENTATION = Augmentation(rotation_deg=0.0, shift=0.0, zoom=0.0, flip=False)

# What a landmark model trains with: the targets move with the film (augment_landmark_batch), so
# geometry is back, milder than the classifiers' so that T1 and L5 rarely leave the tall crop.
LANDMARK_AUGMENTATION = Augmentation(rotation_deg=6.0, shift=0.03, zoom=0.08, flip=True)


def _blur(tf: Any, x: tf.Tensor) -> tf.Tensor:
    """Separable binomial [1, 2, 1] / 4 blur (close to a Gaussian of sigma 0.7 px).

    Written as shifted sums: TensorFlow's CPU convolution with one input and one output channel
    measured ~40x slower than these element-wise ops.
    """
    p = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    rows = 0.25 * p[:, :-2] + 0.5 * p[:, 1:-1] + 0.25 * p[:, 2:]
    return 0.25 * rows[:, :, :-2] + 0.5 * rows[:, :, 1:-1] + 0.25 * rows[:, :, 2:]


def augment_batch(
    images: tf.Tensor, seed: tf.Tensor, aug: Augmentation = DEFAULT_AUGMENTATION, fill_value: float = 0.0
) -> tf.Tensor:
    """Randomly transform a batch ``N x H x W x C`` (float32 in [0, 1]) with stateless seeds.

    ``seed`` is a shape-[2] int tensor; each transform derives its own seed from it. On 2 CPU
    cores augmentation competes with training for the same cycles, so it is written to be cheap:
    flip, rotation, zoom and shift are one resampling; exposure is a handful of element-wise ops
    (a polynomial tone curve instead of ``pow``); noise is uniform (same variance as Gaussian,
    far cheaper to draw).
    """
    tf = require_tensorflow()
    x = tf.convert_to_tensor(images, tf.float32)
    shape = tf.shape(x)
    n, h, w = shape[0], shape[1], shape[2]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    uniform, seeds = _uniform_sampler(tf, seed, n)
    per_image = tf.stack([n, 1, 1, 1])
    if aug.rotation_deg or aug.zoom or aug.shift or aug.flip:
        transform, _ = _random_affine(tf, n, hf, wf, uniform, aug)
        x = _warp(tf, x, transform, h, w, fill_value)
    return _expose(tf, x, uniform, aug, seeds, per_image)


def _expose(tf: Any, x: tf.Tensor, uniform: Any, aug: Augmentation, seeds: Any, per_image: Any) -> tf.Tensor:
    """The exposure half of :func:`augment_batch` (draws 5-10 of its seeds)."""
    shape = tf.shape(x)
    n, h, w = shape[0], shape[1], shape[2]
    # Exposure: contrast about the image mean and brightness, then a gamma-like tone curve
    # y + a*y*(1-y) (monotone for |a| < 1; a = 0.3 bends mid-grey like gamma 0.77 or 1.3).
    if aug.contrast or aug.brightness:
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        contrast = uniform(5, 1.0 - aug.contrast, 1.0 + aug.contrast, per_image)
        brightness = uniform(6, -aug.brightness, aug.brightness, per_image)
        x = x * contrast + (mean * (1.0 - contrast) + brightness)
    if aug.gamma:
        x = tf.clip_by_value(x, 0.0, 1.0)
        x = x + uniform(7, -aug.gamma, aug.gamma, per_image) * x * (1.0 - x)

    # Blur on some images, then sensor noise (the same for every channel of a grey film).
    if aug.blur_probability > 0:
        blurred = _blur(tf, x)
        do_blur = tf.cast(uniform(8, 0.0, 1.0, per_image) < aug.blur_probability, tf.float32)
        x = x + do_blur * (blurred - x)
    if aug.noise > 0:
        sigma = uniform(9, 0.0, aug.noise * math.sqrt(3.0), per_image)
        x = x + tf.random.stateless_uniform(tf.stack([n, h, w, 1]), seeds[10], -1.0, 1.0) * sigma
    return tf.clip_by_value(x, 0.0, 1.0)


def _random_affine(tf: Any, n: Any, hf: Any, wf: Any, uniform: Any, aug: Augmentation) -> tuple[Any, Any]:
    """One random similarity (and optional mirror) per image, as the 8 projective parameters that
    map output pixels to input pixels (draws seeds 0-4), and the mirror sign per image:
    ``p_in = c + A F (p_out - c) - A t``, A = rotation / zoom, F = optional mirror."""
    theta = uniform(0, -1.0, 1.0) * (aug.rotation_deg * math.pi / 180.0)
    scale = uniform(1, 1.0 - aug.zoom, 1.0 + aug.zoom)
    tx = uniform(2, -aug.shift, aug.shift) * wf
    ty = uniform(3, -aug.shift, aug.shift) * hf
    mirror = tf.where(uniform(4, 0.0, 1.0) < 0.5, -1.0, 1.0) if aug.flip else tf.ones([n])
    cos, sin = tf.cos(theta) / scale, tf.sin(theta) / scale
    cx, cy = (wf - 1.0) / 2.0, (hf - 1.0) / 2.0
    a0, a1, b0, b1 = mirror * cos, sin, -mirror * sin, cos
    a2 = cx - a0 * cx - a1 * cy - (cos * tx + sin * ty)
    b2 = cy - b0 * cx - b1 * cy - (-sin * tx + cos * ty)
    zeros = tf.zeros_like(a0)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1), mirror


def _warp(tf: Any, x: Any, transform: Any, h: Any, w: Any, fill_value: float) -> Any:
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=x,
        transforms=transform,
        output_shape=tf.stack([h, w]),
        fill_value=tf.constant(fill_value, tf.float32),
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


def _uniform_sampler(tf: Any, seed: Any, n: Any) -> tuple[Any, Any]:
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=12)

    def uniform(i: int, lo: float, hi: float, shape_: Any = None) -> Any:
        return tf.random.stateless_uniform(shape_ if shape_ is not None else [n], seeds[i], lo, hi)

    return uniform, seeds


def augment_landmark_batch(
    images: tf.Tensor,
    targets: tf.Tensor,
    seed: tf.Tensor,
    aug: Augmentation,
    fill_value: float,
    mirror_order: Sequence[int],
) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`augment_batch` for a landmark model: the same similarity moves the images and their
    targets ``(N, K, 3)`` (normalised x, y, visible) together, so the model sees spines at other
    tilts, scales and positions with the truth still on them.

    A mirrored film swaps left and right, so its points are re-ordered by ``mirror_order`` (each
    point's mirror image: TL <-> TR, BL <-> BR); a point moved off the input becomes not visible
    (the loss masks it). Similarities keep every angle between endplates, so the Cobb angles of the
    targets do not change (a mirror only flips their sign convention, which the read-out ignores).
    """
    tf = require_tensorflow()
    x = tf.convert_to_tensor(images, tf.float32)
    y = tf.convert_to_tensor(targets, tf.float32)
    shape = tf.shape(x)
    n, h, w = shape[0], shape[1], shape[2]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    uniform, seeds = _uniform_sampler(tf, seed, n)
    transform, mirror = _random_affine(tf, n, hf, wf, uniform, aug)
    x = _warp(tf, x, transform, h, w, fill_value)
    # targets: normalised -> input pixels (pixel centres), through the inverse map, and back
    px = y[..., 0] * wf - 0.5
    py = y[..., 1] * hf - 0.5
    a0, a1, a2, b0, b1, b2 = (transform[:, i : i + 1] for i in range(6))
    det = a0 * b1 - a1 * b0
    dx, dy = px - a2, py - b2
    ox = (b1 * dx - a1 * dy) / det
    oy = (-b0 * dx + a0 * dy) / det
    nx, ny = (ox + 0.5) / wf, (oy + 0.5) / hf
    inside = tf.cast((nx >= 0.0) & (nx <= 1.0) & (ny >= 0.0) & (ny <= 1.0), tf.float32)
    moved = tf.stack([tf.clip_by_value(nx, 0.0, 1.0), tf.clip_by_value(ny, 0.0, 1.0), y[..., 2] * inside], -1)
    mirrored = tf.gather(moved, list(mirror_order), axis=1)
    y = tf.where((mirror < 0.0)[:, None, None], mirrored, moved)
    per_image = tf.stack([n, 1, 1, 1])
    return _expose(tf, x, uniform, aug, seeds, per_image), y


def augment_landmark_batches(
    ds: tf.data.Dataset, seed: int, augmentation: Augmentation, fill: float, mirror_order: Sequence[int]
) -> tf.data.Dataset:
    """``ds`` of ``(images, targets)`` batches through :func:`augment_landmark_batch` (seeded as
    :func:`augment_batches`)."""
    tf = require_tensorflow()
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2, drop_remainder=True)
    return tf.data.Dataset.zip((ds, seeds)).map(
        lambda batch, s: augment_landmark_batch(batch[0], batch[1], s, augmentation, fill, mirror_order),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def augment_batches(
    ds: tf.data.Dataset, seed: int, augmentation: Augmentation, fill: float
) -> tf.data.Dataset:
    """``ds`` of ``(images, ...)`` batches with :func:`augment_batch` applied to the images.

    Each batch draws its own stateless seed from one seeded stream, re-drawn every epoch, so a
    run is reproducible and no two epochs see the same transforms."""
    tf = require_tensorflow()
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2, drop_remainder=True)
    return tf.data.Dataset.zip((ds, seeds)).map(
        lambda batch, s: (augment_batch(batch[0], s, augmentation, fill), *batch[1:]),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
