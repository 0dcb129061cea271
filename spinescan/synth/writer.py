"""Write a phantom dataset: PNGs in ``OUT/<view>/<class>/`` and ``OUT/manifest.csv``, in parallel.

Determinism: image ``i`` of class ``c`` in view ``v`` is drawn from
``SeedSequence([seed, v, c, i])`` alone and encoded with fixed PNG parameters, so the bytes do not
depend on ``workers``, on the order in which processes finish, or on how many images of other
classes are made. Workers are forked (cheap, and scripts need no ``if __name__ == "__main__"``
guard) unless TensorFlow is already loaded in the parent, whose thread pools do not survive a
fork; then they are spawned.
"""

from __future__ import annotations

import csv
import ctypes
import io
import json
import multiprocessing
import os
import re
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from spinescan.atomic import atomic_write_text
from spinescan.data.provenance import synthetic_provenance, write_provenance
from spinescan.errors import SpineScanError
from spinescan.progress import Progress, as_progress
from spinescan.synth.labels import CLASSES, VIEWS
from spinescan.synth.phantom import make_phantom
from spinescan.synth.presentation import warm_text_cache

MANIFEST = "manifest.csv"
COLUMNS = (
    "file",
    "view",
    "label",
    "patient_id",
    "thoracic_kyphosis_deg",
    "lumbar_lordosis_deg",
    "cobb_deg",
    "sacral_slope_deg",
    "curve_type",
    "apex",
    "side",
    "facing",
    "framing",
    "width",
    "height",
    "borderline",
    "seed",
    "index",
    "landmarks",
    "sacrum",
    "extent",
    "landmarks_visible",
    "sacrum_visible",
)
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 6]
#: Bumped whenever the same arguments start giving different films, so that cached phantom sets
#: (``--pretrain phantoms`` reuses them) are rendered again. 2: issue 13's richer phantoms.
#: 3: headroom above dense bone in the display window (exposure.sample_exposure).
GENERATOR_VERSION = 3
MIN_SIZE, MAX_SIZE = 64, 4096
_NAME = re.compile(r"^(lateral|ap)_[a-z]+_\d{5,}\.png$")


class SynthError(SpineScanError):
    """The phantom generator was asked for something it cannot make."""


def parse_views(views: str | Sequence[str]) -> tuple[str, ...]:
    """``"lateral,ap"`` or a sequence -> validated, de-duplicated views in the given order."""
    items = [v.strip().lower() for v in (views.split(",") if isinstance(views, str) else views)]
    items = [v for v in items if v]
    bad = [v for v in items if v not in VIEWS]
    if bad or not items:
        raise SynthError(f"unknown view(s) {', '.join(bad) or '(none)'}; choose from {', '.join(VIEWS)}")
    return tuple(dict.fromkeys(items))


def _check(per_class: int, seed: int, size: int, workers: int, borderline: float) -> None:
    if not isinstance(seed, int) or seed < 0:
        raise SynthError(f"--seed must be a non-negative integer, got {seed}")
    if not isinstance(per_class, int) or per_class < 1:
        raise SynthError(f"--per-class must be a positive integer, got {per_class}")
    if not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise SynthError(f"--size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {size}")
    if not isinstance(workers, int) or workers < 1:
        raise SynthError(f"--workers must be at least 1, got {workers}")
    if not 0.0 <= float(borderline) <= 1.0:
        raise SynthError(f"--borderline is a fraction between 0 and 1, got {borderline}")


def _task_list(views: Sequence[str], per_class: int) -> list[tuple[str, int, str, int, int]]:
    return [
        (view, VIEWS.index(view), label, CLASSES[view].index(label), i)
        for view in views
        for label in CLASSES[view]
        for i in range(per_class)
    ]


def relative_file(view: str, label: str, index: int) -> str:
    return f"{view}/{label}/{view}_{label}_{index:05d}.png"


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, np.ndarray):
        return json.dumps(np.round(value, 2).tolist(), separators=(",", ":"))
    return str(value)


def _render(job: tuple[Path, int, int, float, tuple[str, int, str, int, int]]) -> dict[str, str]:
    """Worker: draw, encode and write one image; return its manifest row."""
    out, seed, size, borderline, (view, v_idx, label, c_idx, i) = job
    ph = make_phantom(view, label, np.random.SeedSequence([seed, v_idx, c_idx, i]), size, borderline)
    ok, buf = cv2.imencode(".png", ph.image, PNG_PARAMS)
    if not ok:  # pragma: no cover - OpenCV cannot fail on a uint8 image
        raise RuntimeError("PNG encoding failed")
    rel = relative_file(view, label, i)
    path = out / rel
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)  # never leave a half-written PNG under its real name
    row = {
        "file": rel,
        "view": view,
        "label": label,
        "patient_id": f"synth-{view}-{seed}-{label}-{i:05d}",
        "seed": seed,
        "index": i,
        **ph.record,
    }
    return {k: _fmt(row.get(k)) for k in COLUMNS}


#: glibc ``mallopt`` parameters (malloc.h): M_TRIM_THRESHOLD, M_MMAP_THRESHOLD.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _keep_freed_memory() -> None:
    """Let glibc keep freed memory for the next film instead of handing it back to the kernel.

    Each film allocates and frees a few dozen arrays of 25-100 KB. By default glibc serves the
    larger ones with fresh ``mmap`` pages or trims the heap when they are freed, so the next film
    takes hundreds of page faults to get the same memory back: about 1 ms of kernel time per film
    at 256 px, a sixth of the whole cost (measured: 310 minor faults per film before, none after).
    Only changes where memory comes from, never what is computed. Called in worker processes only
    (they are ours and exit at the end), so a caller's own process keeps its allocator settings.
    No-op where the C library has no ``mallopt`` (macOS, Windows).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # pragma: no cover - non-glibc platforms
        return
    mallopt(_M_TRIM_THRESHOLD, 512 << 20)
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest allowed value (bigger arrays: fresh pages)


def _init_worker() -> None:
    """One OpenCV thread per worker process (the processes already use every core), and an
    allocator that reuses memory between films (:func:`_keep_freed_memory`)."""
    cv2.setNumThreads(1)
    _keep_freed_memory()


def _run(jobs: list, workers: int) -> Iterator[dict[str, str]]:
    if workers == 1 or len(jobs) < 2:
        yield from map(_render, jobs)
        return
    safe_fork = "fork" in multiprocessing.get_all_start_methods() and "tensorflow" not in sys.modules
    ctx = multiprocessing.get_context("fork" if safe_fork else "spawn")
    # OpenCV's thread pool does not survive a fork: a child that inherits it mid-state can wait
    # forever on threads that were not copied (seen once the parent had drawn or decoded images
    # itself). Shrinking it to one thread in the parent joins its workers before the fork.
    if safe_fork:
        warm_text_cache()  # set up once here; the forked workers inherit it
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker) as pool:
            yield from pool.map(_render, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers))))
    finally:
        cv2.setNumThreads(threads)


def _remove_stale(out: Path, views: Sequence[str], keep: set[str]) -> None:
    """Drop phantom PNGs of an earlier, larger run, so the folders match the new manifest."""
    for view in views:
        for label in CLASSES[view]:
            folder = out / view / label
            for p in folder.glob("*.png"):
                rel = f"{view}/{label}/{p.name}"
                if _NAME.match(p.name) and rel not in keep:
                    p.unlink()


def generate(
    out: str | os.PathLike[str],
    per_class: int = 100,
    seed: int = 0,
    size: int = 256,
    views: str | Sequence[str] = ("lateral", "ap"),
    workers: int = 1,
    borderline: float = 0.0,
    progress: Progress | bool = True,
) -> Path:
    """Write ``per_class`` phantoms per class of each view under ``out``; return the manifest path.

    ``size`` is the image height in pixels (the width follows each film's framing, never its
    class). ``borderline`` is the fraction of phantoms drawn near the class thresholds.
    """
    _check(per_class, seed, size, workers, borderline)
    views = parse_views(views)
    out = Path(out)
    try:
        for view in views:
            for label in CLASSES[view]:
                (out / view / label).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SynthError(f"cannot create {out}: {exc.strerror or exc}") from None
    tasks = _task_list(views, per_class)
    jobs = [(out, int(seed), int(size), float(borderline), t) for t in tasks]
    rows: list[dict[str, str]] = []
    with as_progress(progress).bar(len(jobs), "Drawing phantoms") as advance:
        for row in _run(jobs, workers):
            rows.append(row)
            advance(1)
    _remove_stale(out, views, {r["file"] for r in rows})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    manifest = atomic_write_text(out / MANIFEST, buf.getvalue())
    settings = {
        "per_class": per_class,
        "size": size,
        "views": list(views),
        "borderline": borderline,
        "generator_version": GENERATOR_VERSION,
    }
    write_provenance(out, synthetic_provenance(seed, **settings))
    return manifest
