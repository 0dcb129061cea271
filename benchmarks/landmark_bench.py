"""Benchmark the landmark models (issue 14) on phantoms, against the classifiers, and on real films.

    nice -n 5 python benchmarks/landmark_bench.py --data /tmp/lmint/phantoms --runs /tmp/lmint/runs \
        --seeds 0 1 --real /work/shared/data/real --out benchmarks/results/landmarks \
        [--epochs sagittal=20 generalist=15]

For every seed it trains (or reuses a finished matching run of) ``cobb``, ``sagittal`` and the
classifiers with their plugin defaults through the shared loop (``spinescan train``), so all of a
seed's models are tested on the same phantom test films (the dataset's shared split). Then:

* per landmark model: landmark error (fraction of film height), angle MAE and bias, AASCE SMAPE
  and the threshold label's accuracy, each as a mean with a 95% t-interval over seeds;
* angle-then-threshold against each classifier of the same view, paired per film over seeds,
  exact McNemar (:func:`spinescan.evaluation.landmark_study.compare_with_classifier`);
* ``--real``: each seed's ``cobb`` on the real AP dev films (labels only, never trained on):
  AUC of the measured ``cobb_deg`` for scoliosis vs healthy (all films and the spine_crop subset)
  and the accuracy of the 10-degree threshold; overlays of the films at both ends of the ranking
  (good and bad), and of the shared lateral sample with ``sagittal``.

Writes ``OUT/landmarks.json`` and ``OUT/overlays/*.png``. ``--classifiers ''`` skips them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

LANDMARK_MODELS = {"ap": "cobb", "lateral": "sagittal"}
CLASSIFIERS = {"ap": ("scoliosis",), "lateral": ("generalist", "kyphosis", "lordosis")}


def train_or_reuse(
    model: str, data: Path, runs: Path, seed: int, hparams: dict[str, Any]
) -> tuple[Path, bool]:
    """A finished run of ``model`` at ``seed`` with its defaults, and whether it was reused (a
    finished run that matches); ``lateral_curve.py`` trains its runs through this too."""
    from spinescan.progress import Plain
    from spinescan.training.config import TrainConfig, resolve_request
    from spinescan.training.loop import train
    from spinescan.training.prepare import find_reusable_run
    from spinescan.training.settings import RunSettings

    config = TrainConfig(
        model=model,
        data=data,
        runs_dir=runs,
        settings=RunSettings(seed=seed),
        hparams=hparams,
        progress=Plain(),
    )
    resolved = resolve_request(config)  # once, for both the reuse check and the training
    found = find_reusable_run(config, resolved)
    if found is not None:
        print(f"{model} seed {seed}: reusing {found}", flush=True)
        return Path(found), True
    t0 = time.perf_counter()
    result = train(config, resolved)
    print(f"{model} seed {seed}: trained in {time.perf_counter() - t0:.0f} s -> {result.run_dir}", flush=True)
    return result.run_dir, False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--views", nargs="+", default=["ap", "lateral"], choices=["ap", "lateral"])
    ap.add_argument("--classifiers", default=None, help="comma list (default: every classifier of the view)")
    ap.add_argument(
        "--epochs",
        nargs="*",
        default=[],
        metavar="MODEL=N",
        help="epochs for some models (default: the plugin's)",
    )
    ap.add_argument(
        "--real", type=Path, default=None, help="the real films folder (fraiwan-kauh-dev, lateral-sample)"
    )
    ap.add_argument("--overlays", type=int, default=3, help="real films drawn at each end of the ranking")
    ap.add_argument(
        "--rescore",
        action="store_true",
        help="score reused landmark runs again with today's read-out (spinescan.training.loop.rescore)",
    )
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    from spinescan.evaluation import landmark_study as L
    from spinescan.training import inference
    from spinescan.training.runs import RunDir, load_run

    args.out.mkdir(parents=True, exist_ok=True)
    overlay_dir = args.out / "overlays"
    overlay_dir.mkdir(exist_ok=True)
    report: dict[str, Any] = {
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "cpu_count": os.cpu_count(),
        "data": str(args.data),
        "seeds": args.seeds,
        "models": {},
    }
    epochs = {k: int(v) for k, v in (e.split("=") for e in args.epochs)}

    def hp(model: str) -> dict[str, Any]:
        return {"epochs": epochs[model]} if model in epochs else {}

    for view in args.views:
        name = LANDMARK_MODELS[view]
        lm_runs = [train_or_reuse(name, args.data, args.runs, s, hp(name))[0] for s in args.seeds]
        if args.rescore:
            from spinescan.training.finish import rescore

            for r in lm_runs:
                rescore(r, args.data)
                print(f"{name}: rescored {r}", flush=True)
        metrics = [RunDir(r).read_metrics() for r in lm_runs]
        history = [RunDir(r).read_history() for r in lm_runs]
        epoch_s = [row["seconds"] for h in history for row in h[1:]]
        entry: dict[str, Any] = {
            "runs": [str(r) for r in lm_runs],
            "test": L.seed_figures(metrics, "test"),
            "val": L.seed_figures(metrics, "val"),
            "epochs": [len(h) for h in history],
            "train_seconds": [mm.get("train_seconds") for mm in metrics],
            "median_epoch_seconds": sorted(epoch_s)[len(epoch_s) // 2] if epoch_s else None,
            "train_films": [mm["counts"]["train"] for mm in metrics],
            "comparisons": {},
        }
        wanted = [
            c for c in CLASSIFIERS[view] if args.classifiers is None or c in args.classifiers.split(",")
        ]
        lm_preds = [L.read_landmark_predictions(r) for r in lm_runs]
        for clf in wanted:
            cl_runs = [train_or_reuse(clf, args.data, args.runs, s, hp(clf))[0] for s in args.seeds]
            run0 = load_run(cl_runs[0])
            preds = [RunDir(r).read_predictions()["test"] for r in cl_runs]
            entry["comparisons"][clf] = L.compare_with_classifier(
                lm_preds, preds, run0.spec.classes, run0.spec.negative_class
            )
            entry["comparisons"][clf]["classifier_runs"] = [str(r) for r in cl_runs]
        if args.real is not None:
            spec = load_run(lm_runs[0]).spec
            real_root = args.real / ("fraiwan-kauh-dev" if view == "ap" else "lateral-sample")
            if view == "ap" and (real_root / "manifest.csv").is_file():
                entry["real_dev_films"] = real_ap(
                    L, inference, spec, lm_runs, real_root, overlay_dir, args.overlays
                )
            if view == "lateral" and real_root.is_dir():
                entry["lateral_sample"] = lateral_sample(inference, spec, lm_runs[0], real_root, overlay_dir)
        report["models"][name] = entry
        (args.out / "landmarks.json").write_text(json.dumps(report, indent=1))
        print(json.dumps({name: {k: v for k, v in entry.items() if k != "runs"}}, indent=1), flush=True)
    return 0


def real_ap(
    L: Any, inference: Any, spec: Any, runs: list[Path], root: Path, overlay_dir: Path, n_ov: int
) -> Any:
    """Each seed's cobb on the real AP dev films: AUC and threshold accuracy; overlays (seed 0)."""
    per_seed = []
    for i, run in enumerate(runs):
        model = inference.load_run_model(run)
        recs = L.measure_films(model, spec, root)
        if i == 0:  # overlays of the ranking's ends: highest/lowest cobb_deg of each class
            ok = [r for r in recs if r["cobb_deg"] is not None]
            pick = []
            for label in ("scoliosis", "healthy"):
                mine = sorted((r for r in ok if r["label"] == label), key=lambda r: r["cobb_deg"])
                pick += [r["file"] for r in mine[:n_ov] + mine[-n_ov:]]
            L.measure_films(model, spec, root, overlay_dir, pick)
            first = recs
        figures = {
            "all": L.film_figures(recs, "cobb_deg", "scoliosis"),
            "spine_crop": L.film_figures(
                [r for r in recs if r["framing"] == "spine_crop"], "cobb_deg", "scoliosis"
            ),
        }
        per_seed.append(figures)
    return {
        "per_seed": per_seed,
        "auc_spine_crop": L.mean_ci([f["spine_crop"]["auc"] for f in per_seed]),
        "accuracy_10deg_spine_crop": L.mean_ci([f["spine_crop"]["threshold_accuracy"] for f in per_seed]),
        "auc_all": L.mean_ci([f["all"]["auc"] for f in per_seed]),
        "accuracy_10deg_all": L.mean_ci([f["all"]["threshold_accuracy"] for f in per_seed]),
        "films_seed0": [{k: v for k, v in r.items()} for r in first],
    }


def lateral_sample(
    inference: Any, spec: Any, run: Path, root: Path, overlay_dir: Path
) -> list[dict[str, Any]]:
    """sagittal on the shared lateral sample film(s) (no labels): the reading and an overlay."""
    from spinescan.edge.landmark_overlay import write_overlay
    from spinescan.radiograph.imageio import find_images, read_image
    from spinescan.radiograph.measure import read_landmarks
    from spinescan.radiograph.preprocess import preprocess_placed

    model = inference.load_run_model(run)
    out = []
    for path in find_images(root, print):
        img = read_image(path)
        x, placement = preprocess_placed(img, spec.input_size, spec.preprocessing)
        reading = read_landmarks(
            model.predict(x[None], verbose=0)[0], placement, "lateral", spec.input_size[:2], img.shape[:2]
        )
        target = overlay_dir / f"{path.stem}.{spec.name}.png"
        write_overlay(img, reading, target)
        out.append(
            {
                "file": path.name,
                "label": reading["label"],
                "label_reason": reading["label_reason"],
                **{n: reading["angles"][n].to_json() for n in spec.measurements},
                "overlay": str(target),
            }
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
