"""How much SMAPE does the read-out alone cost? (issue 21, part 4)

    nice -n 10 python benchmarks/aasce_readout.py --data /work/shared/data/real/aasce-train \
        --out benchmarks/results/landmarks/aasce_readout.json

Scores the *expert* corners of aasce-train against the manifest's columns with
:func:`spinescan.evaluation.aasce.score_aasce`, two ways:

* ``raw``: the challenge's rule on the raw mid-lines (a sanity check: SMAPE ~0; what is left is the
  corners' rounding and films whose expert corners lie off the film, which the read-out refuses);
* ``smoothed``: the model's own read-out (``PREDICTION_READOUT``: mid-lines smoothed along the
  spine), i.e. a perfect landmark model read the way ``spinescan-predict`` reads: the floor under
  any model's SMAPE with this read-out, and the figure a raw read-out would have to beat by less
  landmark noise.

No model, no images: the manifest's landmarks only (seconds).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

SCHEMA = 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a landmarked AP set with manifest.csv")
    ap.add_argument("--out", type=Path, help="write the figures here (JSON)")
    ap.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args(argv)

    from spinescan.atomic import atomic_write_text
    from spinescan.evaluation.aasce import score_aasce

    with open(args.data / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("landmarks")]
    experts = [np.array(json.loads(r["landmarks"]), dtype=np.float64) for r in rows]
    out: dict = {"schema": SCHEMA, "data": str(args.data), "n_films": len(rows), "readouts": {}}
    for name, smoothed in (("raw", False), ("smoothed", True)):
        t0 = time.perf_counter()
        score = score_aasce(experts, rows, smoothed=smoothed, n_boot=args.n_boot)
        out["readouts"][name] = {**score.to_dict(), "seconds": round(time.perf_counter() - t0, 2)}
        d = out["readouts"][name]
        print(
            f"{name:9s} SMAPE {d['smape']:.2f}% [{d['smape_ci'][0]:.2f}, {d['smape_ci'][1]:.2f}]"
            f"  largest-Cobb MAE {d['largest_cobb_mae']:.2f} deg"
            f" [{d['largest_cobb_mae_ci'][0]:.2f}, {d['largest_cobb_mae_ci'][1]:.2f}]"
            f"  sens {d['sensitivity']:.3f} spec {d['specificity']:.3f}  unmeasured {d['n_unmeasured']}"
        )
    if args.out:
        atomic_write_text(args.out, json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
