"""The tf.data input pipeline: images to batches, with augmentation and class weights.

Three sources feed the same batches, and all of them call the one numpy
:func:`spinescan.radiograph.preprocess.preprocess`, so the tensors a model trains on are the tensors the
predictor feeds it:

* *in memory* (the default): every image is decoded and preprocessed once into one array, and
  batches gather indices from it. Cheapest on a 2-core machine, where every cycle spent decoding
  is a cycle not spent training.
* *file-backed* (:func:`cache_arrays`): the same, but the array is a memory-mapped ``.npy`` file,
  so a dataset larger than memory is paged in from disk by the OS. Decoding still happens once,
  which is what keeps the input pipeline from becoming the bottleneck.
* *streaming* (a list of paths): decode every image every epoch through a parallel ``map`` and
  ``tf.numpy_function``. Used for one-off passes (evaluation, the real-film parity test); for
  training it pays the decoding cost every epoch.

Augmentation (:mod:`spinescan.training.augment`) runs on whole batches of these datasets, never
inside the model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from spinescan.errors import require_tensorflow
from spinescan.progress import Progress, as_progress
from spinescan.radiograph.imageio import read_image
from spinescan.radiograph.preprocess import Preprocessing, preprocess
from spinescan.training.augment import DEFAULT_AUGMENTATION, Augmentation, augment_batches

if TYPE_CHECKING:
    import tensorflow as tf

    from spinescan.data.datasets import Sample
    from spinescan.zoo.spec import ModelSpec


# -- numpy side: reading and class weights --------------------------------------------------------


def encode_labels(samples: Sequence[Sample], classes: Sequence[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    return np.asarray([index[s.label] for s in samples], dtype=np.int32)


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Balanced weights ``n / (k * count)``: every class contributes equally to the loss.

    Replaces the original project's copying of minority-class files on disk. A class absent from
    ``labels`` gets weight 0 (nothing to weigh).
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    weights = np.zeros(num_classes, dtype=np.float32)
    present = counts > 0
    weights[present] = len(labels) / (present.sum() * counts[present])
    return weights


def load_image(path: str | os.PathLike[str], input_size: Sequence[int], prep: Preprocessing) -> np.ndarray:
    """Read and preprocess one file (the exact function the predictor uses)."""
    return preprocess(read_image(path), tuple(input_size), prep)


def load_arrays(
    samples: Sequence[Sample],
    spec: ModelSpec,
    progress: Progress | bool = False,
    label: str = "Loading images",
    workers: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Decode and preprocess ``samples`` into one NxHxWxC float32 array (threads: OpenCV
    releases the GIL while decoding and resizing). ``out`` is filled instead when given."""
    x = np.empty((len(samples), *spec.input_size), dtype=np.float32) if out is None else out
    if not samples:
        return x
    workers = workers or min(4, os.cpu_count() or 1)

    def one(i: int) -> int:
        x[i] = load_image(samples[i].path, spec.input_size, spec.preprocessing)
        return i

    with ThreadPoolExecutor(workers) as pool, as_progress(progress).bar(len(samples), label) as advance:
        for _ in pool.map(one, range(len(samples))):
            advance(1)
    return x


def cache_arrays(
    samples: Sequence[Sample],
    spec: ModelSpec,
    path: str | os.PathLike[str],
    progress: Progress | bool = False,
    label: str = "Caching images",
) -> np.memmap:
    """Preprocess ``samples`` once into a ``.npy`` file and return it memory-mapped read-only.

    The file-backed training source: memory use is bounded by the OS page cache, not the dataset.
    """
    shape = (len(samples), *spec.input_size)
    array = np.lib.format.open_memmap(os.fspath(path), mode="w+", dtype=np.float32, shape=shape)
    load_arrays(samples, spec, progress=progress, label=label, out=array)
    array.flush()
    del array
    return np.load(os.fspath(path), mmap_mode="r")


# -- TensorFlow side ------------------------------------------------------------------------------


def _options(tf: Any) -> Any:
    options = tf.data.Options()
    options.deterministic = True
    # Shard by element, not by file: in-memory sources have no files, and it keeps multi-worker
    # runs equivalent to single-worker ones.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def _memmap_gather(tf: Any, array: np.memmap, labels: np.ndarray, weights: np.ndarray | None) -> Any:
    """Batches read from the memory-mapped cache (rows sorted for locality, then put back)."""
    image_shape = tuple(array.shape[1:])

    def read(idx: np.ndarray) -> np.ndarray:
        order = np.argsort(idx)
        out = np.empty((len(idx), *image_shape), dtype=np.float32)
        out[order] = array[idx[order]]
        return out

    def fn(idx: tf.Tensor) -> tuple:
        images = tf.numpy_function(read, [idx], tf.float32, stateful=False)
        images.set_shape((None, *image_shape))
        out = (images, tf.gather(tf.constant(labels), idx))
        return out if weights is None else (*out, tf.gather(tf.constant(weights), idx))

    return fn


def _file_loader(tf: Any, spec: ModelSpec) -> Any:
    size, prep = tuple(spec.input_size), spec.preprocessing

    def load(path: Any) -> np.ndarray:
        return load_image(path.decode() if isinstance(path, bytes) else str(path), size, prep)

    def fn(path: tf.Tensor) -> tf.Tensor:
        image = tf.numpy_function(load, [path], tf.float32, stateful=False)
        image.set_shape(size)
        return image

    return fn


def make_dataset(
    source: np.ndarray | np.memmap | Sequence[str | os.PathLike[str]],
    labels: np.ndarray,
    spec: ModelSpec,
    batch_size: int,
    training: bool = False,
    augment: bool = False,
    sample_weights: np.ndarray | None = None,
    seed: int = 0,
    augmentation: Augmentation = DEFAULT_AUGMENTATION,
) -> tf.data.Dataset:
    """Batches of ``(images, labels[, weights])``.

    ``source`` is the preprocessed NxHxWxC array (in memory), a memory-mapped one from
    :func:`cache_arrays` (file-backed) or a list of image paths (streaming). ``training``
    shuffles (reshuffled each epoch) and drops a ragged last batch so BatchNorm never sees a
    batch of one; evaluation keeps every image, in order.
    """
    tf = require_tensorflow()
    labels = np.asarray(labels, dtype=np.int32)
    n = len(labels)
    memmap = isinstance(source, np.memmap)
    in_memory = isinstance(source, np.ndarray) and not memmap
    weights = None if sample_weights is None else np.asarray(sample_weights, dtype=np.float32)
    drop = training and n >= 2 * batch_size

    if in_memory:
        images = tf.constant(source, dtype=tf.float32)
        ds = tf.data.Dataset.range(n)
        if training:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size, drop_remainder=drop)
        y_all = tf.constant(labels)
        w_all = None if weights is None else tf.constant(weights)

        def gather(idx: tf.Tensor) -> tuple:
            out = (tf.gather(images, idx), tf.gather(y_all, idx))
            return out if w_all is None else (*out, tf.gather(w_all, idx))

        ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    elif memmap:
        ds = tf.data.Dataset.range(n)
        if training:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size, drop_remainder=drop)
        ds = ds.map(_memmap_gather(tf, source, labels, weights), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        paths = [os.fspath(p) for p in source]
        parts = (paths, labels) if weights is None else (paths, labels, weights)
        ds = tf.data.Dataset.from_tensor_slices(parts)
        if training:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
        load = _file_loader(tf, spec)
        ds = ds.map(lambda p, *rest: (load(p), *rest), num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(batch_size, drop_remainder=drop)

    if training and augment:
        ds = augment_batches(ds, seed, augmentation, float(spec.preprocessing.pad_value))
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_options(tf))


