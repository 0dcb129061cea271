"""Mirror test-time augmentation for `cobb` on the AASCE cross-validation folds (issue 21): does
averaging a film's reading with its left-right mirror's (un-mirrored, TL/TR and BL/BR swapped back)
lower SMAPE? Each fold's model reads its own test films both ways; figures pool the folds.

    python benchmarks/aasce_tta.py --data ../shared/data/real/aasce-train \
        --cv benchmarks/results/aasce/cv.json --out benchmarks/results/aasce/tta_mirror.json

Measured (2026-12-07): real-only folds pooled (481 films) SMAPE 16.89 -> 16.55; the phantom-pretrained
fold 0 (87 films) 13.77 -> 15.78. Not adopted: a gain of a third of a point on one recipe and a loss of
two points on the other is not a read-out to ship.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def read_both_ways(run_dir: Path, data: Path, files: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``({file: corners}, {file: corners})``: the model's reading as it is, and mirror-averaged."""
    from spinescan.radiograph.imageio import read_image
    from spinescan.radiograph.landmark_codec import mirror_order
    from spinescan.radiograph.measure import read_landmarks
    from spinescan.radiograph.preprocess import preprocess_placed
    from spinescan.training.inference import load_run_model
    from spinescan.zoo.registry import get_spec

    spec = get_spec("cobb")
    order = mirror_order(spec.landmarks)
    model = load_run_model(run_dir)
    hw = tuple(int(v) for v in model.input_shape[1:3])
    plain, mirrored = {}, {}
    for rel in sorted(files):
        img = read_image(data / rel)
        x, placement = preprocess_placed(img, (*hw, 1), spec.preprocessing)
        out = np.asarray(model.predict(np.stack([x, x[:, ::-1]]), verbose=0), dtype=np.float64)
        flipped = out[1].copy()
        flipped[:, 0] = 1.0 - flipped[:, 0]  # normalised x, pixel-centre convention: u -> 1 - u
        both = (out[0] + flipped[order]) / 2.0
        for target, y in ((plain, out[0]), (mirrored, both)):
            r = read_landmarks(y, placement, "ap", hw, img.shape[:2])
            target[rel] = np.asarray([[np.nan if v is None else v for v in p] for p in r["landmarks"]])
    return plain, mirrored


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--cv", type=Path, required=True, help="aasce_cv.py's results (run dirs and folds)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    from spinescan.data.datasets import load_dataset
    from spinescan.evaluation.aasce import score_aasce

    samples = load_dataset(args.data, default_view="ap").select(view="ap").samples
    rows = {s.rel: {**s.extra, "file": s.rel, "label": s.label} for s in samples}
    pooled: dict[str, dict[str, dict[str, Any]]] = {}
    for rec in json.loads(args.cv.read_text())["records"]:
        if rec["recipe"] == "phantoms":
            continue
        plain, mirrored = read_both_ways(Path(rec["run_dir"]), args.data, list(rec["predictions"]))
        group = pooled.setdefault(rec["recipe"], {"plain": {}, "mirror": {}})
        group["plain"].update(plain)
        group["mirror"].update(mirrored)
    keep = ("smape", "smape_ci", "largest_cobb_mae", "largest_cobb_mae_ci", "landmark_error", "corners_far")
    command = " ".join(["python", "benchmarks/aasce_tta.py", *(argv or sys.argv[1:])])
    results: dict[str, Any] = {"command": command}
    for recipe, group in pooled.items():
        for way, pred in group.items():
            files = sorted(pred)
            score = score_aasce([pred[f] for f in files], [rows[f] for f in files]).to_dict()
            results[f"{recipe}/{way}"] = {"films": len(files), **{k: score[k] for k in keep}}
            print(f"{recipe:9s} {way:6s} films={len(files)} SMAPE {score['smape']:.2f}", flush=True)
    args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
