"""Real-film landmark study (issue 21): `cobb` on the AASCE training films, patient-grouped k-fold CV.

    nice python benchmarks/aasce_cv.py --data ../shared/data/real/aasce-train --runs /tmp/aasce/runs \
        --folds 5 --fold-list 0 1 2 3 4 --sizes all --recipes real pretrain \
        --pretrain-run RUN_DIR --out benchmarks/results/aasce/cv.json

Every run is an ordinary `spinescan train cobb` run (the shared loop) whose split is overridden by the
fold: the fold's films are its test part, never seen in training or validation. ``--sizes`` trains on
nested subsets of the fold's training films (the first N in a seeded patient order, so 10 is inside
30 is inside 100), for the how-many-real-films-do-phantoms-save question; ``--recipes``:

* ``real``: from a random initialisation, real films only;
* ``pretrain``: initialised from ``--pretrain-run`` (a `cobb` run trained on phantoms), then the same
  training on the real films;
* ``phantoms``: no real training at all: ``--pretrain-run`` itself scored on the fold's test films.

Each record keeps the run directory and the predicted landmarks of the test films, so the figures can be
re-scored (``--rescore``) without training again. Figures: :func:`spinescan.metrics.score_aasce` when
present, else the run's own ``metrics.json`` test summary.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

MODEL = "cobb"
STEPS_PER_RUN = 800  # optimizer steps of a run on the whole training part (~40 epochs)
SMALL_STEPS = {10: 400, 30: 400, 100: 600}  # nested subsets: they fit (and overfit) sooner
MIN_EPOCHS = 40


def nested_subset(train: list[str], patient_of: dict[str, str], n: int | None, seed: int) -> list[str]:
    """The first ``n`` films of ``train`` in a seeded order of patients (all of a patient's films
    together), so smaller subsets are inside larger ones."""
    if n is None or n >= len(train):
        return sorted(train)
    def key(patient: str) -> str:
        return hashlib.sha256(f"{seed}:{patient}".encode()).hexdigest()
    patients = sorted({patient_of[r] for r in train}, key=key)
    chosen: list[str] = []
    by_patient: dict[str, list[str]] = {}
    for r in sorted(train):
        by_patient.setdefault(patient_of[r], []).append(r)
    for p in patients:
        if len(chosen) >= n:
            break
        chosen.extend(by_patient[p])
    return sorted(chosen[:n])


def epochs_for(n_train: int, batch: int, steps: int) -> int:
    return max(MIN_EPOCHS, math.ceil(steps / max(1, math.ceil(n_train / batch))))


def test_predictions(run_dir: Path) -> dict[str, list]:
    """``{file: landmarks}`` of the run's test films from its ``predictions.csv``."""
    out = {}
    with open(run_dir / "predictions.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["split"] == "test":
                out[row["file"]] = json.loads(row["landmarks"])
    return out


def predict_with(run_dir: Path, data: Path, files: list[str]) -> dict[str, list]:
    """Landmarks of ``files`` read by the Keras model of ``run_dir`` (the zero-real-film point)."""
    import numpy as np

    from spinescan.radiograph.imageio import read_image
    from spinescan.radiograph.measure import read_landmarks
    from spinescan.radiograph.preprocess import preprocess_placed
    from spinescan.training.inference import load_run_model as load_model
    from spinescan.zoo.registry import get_spec

    spec = get_spec(MODEL)
    model = load_model(run_dir)
    out = {}
    for rel in files:
        img = read_image(data / rel)
        x, pl = preprocess_placed(img, spec.input_size, spec.preprocessing)
        o = np.asarray(model.predict(x[None], verbose=0))[0]
        r = read_landmarks(o, pl, spec.view, spec.input_size[:2], img.shape[:2])
        out[rel] = [[None if not np.isfinite(v) else float(v) for v in p] for p in r["landmarks"]]
    return out


def fraiwan_check(run_dir: Path, root: Path, overlays: Path | None = None) -> dict[str, Any]:
    """Cross-hospital check (issue 21, goal: spine_crop AUC >= 0.98, healthy median < 10 deg): the
    model's ``cobb_deg`` on the Fraiwan dev films (labels only, never trained on), all films and the
    spine_crop subset (the honest one: every healthy film there is a narrow crop)."""
    from spinescan.evaluation.landmark_study import film_figures, measure_films
    from spinescan.training.inference import load_run_model as load_model
    from spinescan.zoo.registry import get_spec

    records = measure_films(load_model(run_dir), get_spec(MODEL), root, overlays, ("*",) if overlays else ())
    crop = [r for r in records if r["framing"] == "spine_crop"]
    return {
        "run_dir": str(run_dir),
        "all": film_figures(records, "cobb_deg", "scoliosis"),
        "spine_crop": film_figures(crop, "cobb_deg", "scoliosis"),
        "films": [{k: r[k] for k in ("file", "label", "framing", "cobb_deg")} for r in records],
    }


def score(pred: dict[str, list], rows: dict[str, dict[str, str]]) -> dict[str, Any]:
    """The field's figures for ``pred`` against the manifest rows (AASCE SMAPE and friends), read
    both ways: through the model's smoothed mid-lines (what the predictor reports) and raw."""

    try:
        from spinescan.evaluation.aasce import parse_corners, score_aasce
    except ImportError:  # a checkout without the AASCE figures: re-score later (--rescore)
        return {"note": "spinescan.evaluation.aasce not available"}
    files = sorted(pred)
    lm = [parse_corners(pred[f], f) for f in files]
    ordered = [rows[f] for f in files]
    return {
        name: score_aasce(lm, ordered, smoothed=name == "smoothed").to_dict() for name in ("smoothed", "raw")
    }


def run_one(
    args: argparse.Namespace, base: Any, key: dict[str, Any], overrides: dict[str, Any],
    patient_of: dict[str, str], data: Path, spec: Any,
) -> dict[str, Any]:
    """Train (or, for ``phantoms``, only read with) one configuration; its record without figures."""
    from spinescan.data.splits import Split
    from spinescan.progress import Plain
    from spinescan.training.config import TrainConfig
    from spinescan.training.loop import train
    from spinescan.training.settings import RunSettings, parse_image_size

    if key["recipe"] == "phantoms":
        pred = predict_with(args.pretrain_run, data, base.test)
        return {"n_train": 0, "run_dir": str(args.pretrain_run), "train_seconds": 0.0, "hparams": {},
                "run_test_summary": None, "predictions": pred}
    n = None if key["size"] == "all" else int(key["size"])
    seed = key["seed"]
    tr = nested_subset(base.train, patient_of, n, seed)
    split = Split(seed, tr, list(base.val), list(base.test), fold=key["fold"], k=key["k"])
    steps = SMALL_STEPS.get(n, args.steps) if n is not None else args.steps
    batch = int(overrides.get("batch_size", spec.train.batch_size))
    hp = {"epochs": epochs_for(len(tr), batch, steps), **overrides}
    # a run id per configuration: two folds started in the same second must not share a directory
    run_id = f"{key['tag'] or 'cv'}-f{key['fold']}-n{key['size']}-{key['recipe']}-s{seed}"
    size = parse_image_size(args.image_size) if args.image_size else None
    config = TrainConfig(
        model=MODEL, data=data, runs_dir=args.runs, hparams=hp, split=split, progress=Plain(), run_id=run_id,
        settings=RunSettings(seed=seed, image_size=size),
        init_from=args.pretrain_run if key["recipe"] == "pretrain" else None,
    )
    t0 = time.perf_counter()
    result = train(config)
    run_dir = Path(result.run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "n_train": len(tr), "run_dir": str(run_dir), "hparams": hp,
        "train_seconds": round(float(metrics.get("train_seconds", time.perf_counter() - t0)), 1),
        "run_test_summary": metrics.get("test"), "predictions": test_predictions(run_dir),
    }


def save(out: Path, results: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--fold-list", type=int, nargs="+", default=None)
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--sizes", nargs="+", default=["all"])
    ap.add_argument("--recipes", nargs="+", default=["real"], choices=["real", "pretrain", "phantoms"])
    ap.add_argument("--pretrain-run", type=Path)
    ap.add_argument("--steps", type=int, default=STEPS_PER_RUN)
    ap.add_argument("--hparams", default="{}", help='JSON overrides, e.g. {"readout": "centres"}')
    ap.add_argument("--image-size", default=None, help="input HEIGHTxWIDTH, e.g. 512x192 [the spec's]")
    ap.add_argument("--tag", default="", help="name of this configuration in the results")
    ap.add_argument("--rescore", action="store_true", help="re-score the records in --out, train nothing")
    ap.add_argument("--fraiwan", type=Path, help="with --fraiwan-run: the cross-hospital check only")
    ap.add_argument("--fraiwan-run", type=Path)
    args = ap.parse_args(argv)
    if args.fraiwan:
        figures = fraiwan_check(args.fraiwan_run, args.fraiwan)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=1))
        print(json.dumps({k: figures[k] for k in ("all", "spine_crop")}, indent=1))
        return 0

    from spinescan.data.datasets import load_dataset
    from spinescan.data.splits import kfold_splits
    from spinescan.zoo.registry import get_spec

    spec = get_spec(MODEL)
    data = args.data.resolve()
    samples = load_dataset(data, default_view="ap").select(view="ap").samples
    rows = {s.rel: {**s.extra, "file": s.rel, "label": s.label} for s in samples}
    patient_of = {s.rel: s.patient_id for s in samples}
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {"records": []}
    if args.rescore:
        for rec in results["records"]:
            rec["figures"] = score(rec["predictions"], rows)
        args.out.write_text(json.dumps(results, indent=1))
        print(f"re-scored {len(results['records'])} records -> {args.out}")
        return 0
    if {"pretrain", "phantoms"} & set(args.recipes) and not args.pretrain_run:
        ap.error("--recipes pretrain/phantoms need --pretrain-run")
    splits = kfold_splits(samples, args.folds, args.split_seed)
    overrides = json.loads(args.hparams)
    for fold in args.fold_list if args.fold_list is not None else range(args.folds):
        for size in args.sizes:
            for recipe in args.recipes:
                for seed in args.seeds if recipe != "phantoms" else [0]:
                    key = dict(tag=args.tag, fold=fold, k=args.folds, size=size, recipe=recipe, seed=seed)
                    if any(all(r.get(a) == b for a, b in key.items()) for r in results["records"]):
                        print(f"done already: {key}")
                        continue
                    rec = {**key, **run_one(args, splits[fold], key, overrides, patient_of, data, spec)}
                    rec["figures"] = score(rec["predictions"], rows)
                    results["records"].append(rec)
                    save(args.out, results)
                    summary = rec["run_test_summary"] or {}
                    brief = json.dumps({k: v for k, v in summary.items() if not isinstance(v, dict)})[:400]
                    print(f"{key} n_train={rec['n_train']} {rec['train_seconds']:.0f}s {brief}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
