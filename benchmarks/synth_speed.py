"""How fast is ``spinescan synth``, and how much of that is just PNG encoding and writing?

Generates N phantoms of one view with ``generate`` (timed end to end, manifest included), then
re-encodes and writes the very same N images with the same PNG parameters in one process, so the
two rates can be compared: the gap is the cost of drawing. The ratio (generation time over the
encode-and-write floor, both measured in this one run) is the figure to compare across machines
and loads; the load average is printed beside it. Goal (issue 13): at most 5x, for
``spinescan synth OUT --per-class 200 --size 256`` (1,000 films, both views):

    .venv/bin/python benchmarks/synth_speed.py --per-class 200 --size 256 --workers 2
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import cv2

from spinescan.synth import generate
from spinescan.synth.writer import PNG_PARAMS


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the generator's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=200, help="images per class and view")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--views", default="lateral,ap", help="comma-separated views")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    views = tuple(v for v in args.views.split(",") if v)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="synth-speed-") as tmp:
        out = Path(tmp) / "phantoms"
        c0 = _cpu()
        t0 = time.perf_counter()
        generate(out, args.per_class, size=args.size, views=views, workers=args.workers, progress=False)
        gen_s = time.perf_counter() - t0
        gen_cpu = _cpu() - c0
        files = sorted(out.rglob("*.png"))
        images = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in files]
        again = Path(tmp) / "encode-only"
        again.mkdir()
        c0 = _cpu()
        t0 = time.perf_counter()
        for i, img in enumerate(images):
            _, buf = cv2.imencode(".png", img, PNG_PARAMS)
            (again / f"{i:05d}.png").write_bytes(buf.tobytes())
        enc_s = time.perf_counter() - t0
        enc_cpu = _cpu() - c0
        mean_kb = sum(p.stat().st_size for p in files) / len(files) / 1024
    n = len(files)
    cpus = os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in load_before)
    print(f"{n} phantoms ({'+'.join(views)}), height {args.size} px, mean PNG {mean_kb:.1f} KiB, {cpus} CPUs")
    print(f"load average before the run (1, 5, 15 min): {load}")
    print(f"generate (workers={args.workers}): {gen_s:6.2f} s  {n / gen_s:7.1f} images/s")
    print(f"encode + write only (1 process): {enc_s:6.2f} s  {n / enc_s:7.1f} images/s")
    print(f"ratio generate / encode-and-write floor: {gen_s / enc_s:.1f}x (goal <= 5x)")
    print(
        f"CPU seconds (all processes): generate {gen_cpu:.2f}, encode + write {enc_cpu:.2f}; "
        f"CPU ratio {gen_cpu / enc_cpu:.1f}x (wall ratio x workers, if the cores were free)"
    )


if __name__ == "__main__":
    main()
