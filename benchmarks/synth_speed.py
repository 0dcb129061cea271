"""How fast is ``spinescan synth``, and how much of that is just PNG encoding and writing?

Generates N phantoms of one view with ``generate`` (timed end to end, manifest included), then
re-encodes and writes the very same N images with the same PNG parameters in one process, so the
two rates can be compared: the gap is the cost of drawing. Run once, on an otherwise idle machine:

    .venv/bin/python benchmarks/synth_speed.py --n 1000 --size 256 --workers 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2

from spinescan.synth import generate
from spinescan.synth.labels import CLASSES
from spinescan.synth.writer import PNG_PARAMS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="total images (split evenly over the classes)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--view", default="lateral", choices=sorted(CLASSES))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    per_class = max(1, round(args.n / len(CLASSES[args.view])))
    with tempfile.TemporaryDirectory(prefix="synth-speed-") as tmp:
        out = Path(tmp) / "phantoms"
        t0 = time.perf_counter()
        generate(out, per_class, size=args.size, views=(args.view,), workers=args.workers, progress=False)
        gen_s = time.perf_counter() - t0
        files = sorted(out.rglob("*.png"))
        images = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in files]
        again = Path(tmp) / "encode-only"
        again.mkdir()
        t0 = time.perf_counter()
        for i, img in enumerate(images):
            _, buf = cv2.imencode(".png", img, PNG_PARAMS)
            (again / f"{i:05d}.png").write_bytes(buf.tobytes())
        enc_s = time.perf_counter() - t0
        mean_kb = sum(p.stat().st_size for p in files) / len(files) / 1024
    n = len(files)
    cpus = os.cpu_count()
    print(f"{n} {args.view} phantoms, height {args.size} px, mean PNG {mean_kb:.1f} KiB, {cpus} CPUs")
    print(f"generate (workers={args.workers}): {gen_s:6.2f} s  {n / gen_s:7.1f} images/s")
    print(f"encode + write only (1 process): {enc_s:6.2f} s  {n / enc_s:7.1f} images/s")


if __name__ == "__main__":
    main()
