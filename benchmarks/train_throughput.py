"""Training throughput: file-backed tf.data pipeline versus the same images already in memory.

The question it answers: is the input pipeline the bottleneck? Every mode trains the same model
(the default ``compact`` backbone at the spec's default size, batch 32, augmentation on, class
weights on) on the same images for the same number of steps; only where the images come from
differs:

* ``in-memory``: decoded once into an array in RAM (``spinescan train``'s default);
* ``file-backed``: decoded once into a memory-mapped ``.npy`` file, read back from disk each
  epoch (``spinescan train --file-backed``);
* ``streaming``: every PNG decoded and preprocessed again every epoch.

A ratio (in-memory / file-backed images per second) near 1 means the input pipeline hides behind
training; the goal is < 1.15. ``pipeline_only`` times each source without a model.

    .venv/bin/python benchmarks/train_throughput.py                  # phantoms generated in a temp dir
    .venv/bin/python benchmarks/train_throughput.py --data DIR --epochs 3 --json out.json

Warm-up (graph tracing, first file reads) is excluded: one untimed epoch precedes the timed ones.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _dataset(data: Path | None, tmp: Path, per_class: int, size: int) -> Path:
    if data is not None:
        return data
    from spinescan.synth import generate

    out = tmp / "phantoms"
    generate(out, per_class=per_class, seed=0, size=size, views=("lateral",), workers=2, progress=False)
    return out


def measure(mode: str, x, y, weights, spec, batch: int, epochs: int, seed: int) -> dict:
    """Train a fresh model; return images/s over ``epochs`` timed epochs after one warm-up."""
    import keras

    from spinescan.training import pipeline

    keras.utils.set_random_seed(seed)
    ds = pipeline.make_dataset(
        x, y, spec, batch, training=True, augment=True, sample_weights=weights, seed=seed
    )
    model = spec.build(spec, backbone="compact", weights=None)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=False,
    )
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    # One fit, as in real training; the first epoch (tracing, first reads) is the warm-up.
    model.fit(ds, epochs=1 + epochs, verbose=0, callbacks=[Timer()])
    times = times[1:]
    n = len(y)
    images = (n // batch) * batch if n >= 2 * batch else n  # training drops a ragged last batch
    per_epoch = [images / t for t in times]
    return {
        "mode": mode,
        "images_per_epoch": images,
        "epoch_seconds": [round(t, 3) for t in times],
        "images_per_second": round(images * len(times) / sum(times), 1),
        "images_per_second_per_epoch": [round(v, 1) for v in per_epoch],
    }


def pipeline_only(mode: str, x, y, weights, spec, batch: int, seed: int) -> dict:
    """Images/s of the input pipeline alone (read, preprocess, augment, batch; no model): how much
    of the machine the pipeline takes away from training."""
    from spinescan.training import pipeline

    ds = pipeline.make_dataset(
        x, y, spec, batch, training=True, augment=True, sample_weights=weights, seed=seed
    )
    for _ in ds:  # warm-up epoch
        pass
    start = time.perf_counter()
    n = sum(int(b[0].shape[0]) for b in ds)
    return {"mode": mode, "images_per_second": round(n / (time.perf_counter() - start), 1)}


def _combine(runs: list[dict]) -> dict:
    seconds = [t for r in runs for t in r["epoch_seconds"]]
    images = runs[0]["images_per_epoch"]
    return {
        "mode": runs[0]["mode"],
        "images_per_epoch": images,
        "epoch_seconds": seconds,
        "images_per_second": round(images * len(seconds) / sum(seconds), 1),
        "images_per_second_per_run": [r["images_per_second"] for r in runs],
        # The least-disturbed epoch: on a shared machine, load from other processes only ever
        # slows an epoch down, so the fastest one is the best estimate of the unloaded rate.
        "best_epoch_images_per_second": round(images / min(seconds), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, help="dataset (default: lateral phantoms generated in a temp dir)"
    )
    parser.add_argument("--model", default="generalist")
    parser.add_argument("--per-class", type=int, default=200, help="phantoms per class when generating")
    parser.add_argument("--phantom-size", type=int, default=256, help="phantom film height (synth default)")
    parser.add_argument("--image-size", type=int, help="model input size (default: the spec's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per mode")
    parser.add_argument("--repeats", type=int, default=2, help="alternating measurements per mode")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)

    from spinescan.data.checks import samples_for_spec
    from spinescan.data.datasets import load_dataset
    from spinescan.training.pipeline import cache_arrays, class_weights, encode_labels, load_arrays
    from spinescan.zoo.registry import get_spec

    spec = get_spec(args.model).with_image_size(args.image_size)
    load_before = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        root = _dataset(args.data, Path(tmp), args.per_class, args.phantom_size)
        samples, skipped = samples_for_spec(load_dataset(root, spec.view), spec.view, spec.classes)
        y = encode_labels(samples, spec.classes)
        w = class_weights(y, spec.num_classes)[y]
        start = time.perf_counter()
        arrays = load_arrays(samples, spec)
        load_seconds = time.perf_counter() - start
        paths = [s.path for s in samples]
        mapped = cache_arrays(samples, spec, Path(tmp) / "cache.npy")
        # Alternate the modes so that load from other processes on a shared machine hits all alike.
        sources = {"file-backed": mapped, "in-memory": arrays, "streaming": paths}
        runs = [
            measure(mode, sources[mode], y, w, spec, args.batch_size, args.epochs, 0)
            for _ in range(args.repeats)
            for mode in sources
        ]
        results = [_combine([r for r in runs if r["mode"] == mode]) for mode in sources]
        alone = [pipeline_only(mode, sources[mode], y, w, spec, args.batch_size, 0) for mode in sources]
    import keras
    import tensorflow as tf

    files, memory, streaming = results
    report = {
        "model": spec.name,
        "backbone": "compact",
        "input_size": list(spec.input_size),
        "batch_size": args.batch_size,
        "images": len(samples),
        "skipped": len(skipped),
        "dataset": str(args.data)
        if args.data
        else f"lateral phantoms, {args.per_class}/class, {args.phantom_size} px",
        "preload_seconds": round(load_seconds, 2),
        "load_average_before": load_before,
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "results": results,
        "pipeline_only": alone,
        "ratio_in_memory_over_file_backed": round(
            memory["images_per_second"] / files["images_per_second"], 3
        ),
        "ratio_in_memory_over_streaming": round(
            memory["images_per_second"] / streaming["images_per_second"], 3
        ),
        "ratio_best_epoch_in_memory_over_file_backed": round(
            memory["best_epoch_images_per_second"] / files["best_epoch_images_per_second"], 3
        ),
        "ratio_best_epoch_in_memory_over_streaming": round(
            memory["best_epoch_images_per_second"] / streaming["best_epoch_images_per_second"], 3
        ),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        from spinescan.atomic import atomic_write_text

        atomic_write_text(args.json, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
