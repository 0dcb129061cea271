"""How well do AP phantoms stand in for real AP films? Two numbers, measured on the real dev films.

1. Zero-shot transfer: the scoliosis plugin is trained on AP phantoms only, exactly as the first
   stage of ``--pretrain phantoms`` does (plugin defaults, 1,000 phantoms per class rendered at
   twice the input height, 10 epochs; phantom seed = training seed), and then scores the real dev
   films it has never seen: accuracy (argmax) and ROC-AUC on the ``spine_crop`` subset (the
   framing-fair figure) and on the whole set, each with a 95% stratified bootstrap CI, per seed.
2. A realism probe: a logistic regression telling real dev films from AP phantoms after the same
   preprocessing as the model (the plugin's spine_crop window, 224 x 64), on downsampled pixels
   plus simple texture statistics (intensity deciles, gradient and Laplacian energy, row/column
   profile spread), stratified 5-fold cross-validated AUC, repeated over 5 fold seeds.
   0.5 = the probe cannot tell them apart; 1.0 = it always can.

The dev films guide generator changes when this is used during development: figures measured on
them afterwards are optimistic for unseen real films (selection on the test set).

    nice -n 5 .venv/bin/python benchmarks/realism.py --real ../shared/data/real/fraiwan-kauh-dev \\
        --work /tmp/realism --tag after --seeds 0 1

Writes ``<work>/<tag>/realism.json`` (and prints a table). Phantom sets and runs are reused when
present (``<work>/<tag>/phantoms-s<seed>``, ``<work>/<tag>/runs``); delete them to re-measure.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODEL = "scoliosis"
PRETRAIN_EPOCHS = 10  # spinescan.training.pretrain.DEFAULT_EPOCHS
PER_CLASS = 1000  # spinescan.training.pretrain.DEFAULT_PER_CLASS


def _spec() -> Any:
    from spinescan.zoo.registry import get_spec

    return get_spec(MODEL)


def real_films(root: Path) -> list[dict[str, str]]:
    with open(root / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("view", "ap") == "ap"]
    for r in rows:
        r["path"] = str(root / r["file"])
    return rows


def preprocessed(paths: list[str], spec: Any) -> np.ndarray:
    """The model's input tensors (N, H, W, C), read and preprocessed as the predictor does."""
    from spinescan.radiograph.imageio import read_image
    from spinescan.radiograph.preprocess import preprocess

    return np.stack([preprocess(read_image(p), spec.input_size, spec.preprocessing) for p in paths])


TONE_STATS = ("film_q50", "film_q99", "film_pct_above_0.98", "window_q50", "window_q90")


def tone_stats(paths: list[str], spec: Any) -> dict[str, dict[str, float]]:
    """How bright films are after the model's intensity scaling: per film, intensity quantiles of
    the whole film and of its spine_crop window, and the share of near-white pixels; returned as
    the 10th/50th/90th percentile over films. This is what showed that the phantoms clipped bone
    to white where real films keep headroom (spinescan.synth.exposure.sample_exposure)."""
    from spinescan.radiograph.imageio import read_image
    from spinescan.radiograph.preprocess import crop_window, scale_intensity, to_grey

    rows = []
    for p in paths:
        x = scale_intensity(to_grey(read_image(p)), spec.preprocessing)
        top, left, h, w = crop_window(x, spec.preprocessing.crop_aspect)
        win = x[top : top + h, left : left + w]
        q50, q99 = np.quantile(x, [0.5, 0.99])
        rows.append([q50, q99, 100.0 * float((x > 0.98).mean()), *np.quantile(win, [0.5, 0.9])])
    qs = np.quantile(np.array(rows), [0.1, 0.5, 0.9], axis=0)
    return {
        k: {"p10": float(qs[0, i]), "p50": float(qs[1, i]), "p90": float(qs[2, i])}
        for i, k in enumerate(TONE_STATS)
    }


def _print_tone(name: str, stats: dict[str, dict[str, float]]) -> None:
    print(
        f"  tone {name:8s} "
        + "  ".join(f"{k} {v['p50']:.3f} [{v['p10']:.3f}, {v['p90']:.3f}]" for k, v in stats.items())
    )


def ensure_phantoms(out: Path, seed: int, per_class: int, size: int, workers: int) -> Path:
    from spinescan.synth import generate

    done = out / "realism-phantoms.json"
    wanted = {"seed": seed, "per_class": per_class, "size": size, "view": "ap"}
    if done.is_file() and json.loads(done.read_text()) == wanted:
        return out
    t0 = time.perf_counter()
    generate(out, per_class=per_class, seed=seed, size=size, views=("ap",), workers=workers, progress=False)
    took = time.perf_counter() - t0
    print(f"  rendered {2 * per_class} AP phantoms (seed {seed}, {size} px) in {took:.0f} s")
    done.write_text(json.dumps(wanted))
    return out


def ensure_run(data: Path, runs_dir: Path, seed: int, epochs: int) -> Path:
    """Train the scoliosis plugin on the phantoms only (the pretraining stage's settings)."""
    run_id = f"realism-s{seed}"
    run_dir = runs_dir / MODEL / run_id
    if (run_dir / "metrics.json").is_file() and (run_dir / "model.keras").is_file():
        return run_dir
    cmd = [
        sys.executable, "-m", "spinescan", "train", MODEL, "--data", str(data), "--epochs", str(epochs),
        "--seed", str(seed), "--runs", str(runs_dir), "--run-id", run_id, "--quiet",
    ]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    print(f"  trained {run_id} in {time.perf_counter() - t0:.0f} s")
    return run_dir


def _scores(y: np.ndarray, p: np.ndarray, seed: int) -> dict[str, Any]:
    from spinescan.metrics import bootstrap_ci, roc_auc

    pred = (p >= 0.5).astype(int)

    def acc(yy: np.ndarray, pp: np.ndarray) -> float:
        return float(np.mean((pp >= 0.5).astype(int) == yy))

    def auc(yy: np.ndarray, pp: np.ndarray) -> float:
        return float(roc_auc(yy.astype(bool), pp))

    return {
        "n": len(y),
        "n_scoliosis": int(y.sum()),
        "called_scoliosis": int(pred.sum()),
        "accuracy": acc(y, p),
        "accuracy_ci": bootstrap_ci(acc, y, p, seed=seed, strata=y),
        "auc": auc(y, p) if 0 < y.sum() < len(y) else None,
        "auc_ci": bootstrap_ci(auc, y, p, seed=seed, strata=y) if 0 < y.sum() < len(y) else None,
    }


def zero_shot(run_dir: Path, films: list[dict[str, str]], x: np.ndarray, seed: int) -> dict[str, Any]:
    from spinescan.training.inference import load_run_model, predict_arrays

    spec = _spec()
    probs = predict_arrays(load_run_model(run_dir), x)[:, spec.classes.index("scoliosis")]
    y = np.array([f["label"] == "scoliosis" for f in films], dtype=int)
    crop = np.array([f.get("framing") == "spine_crop" for f in films])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "run_dir": str(run_dir),
        "phantom_val_accuracy": (metrics.get("val") or {}).get("accuracy"),
        "whole": _scores(y, probs, seed),
        "spine_crop": _scores(y[crop], probs[crop], seed),
    }


def texture_features(x: np.ndarray) -> np.ndarray:
    """Per image (H, W) in [0, 1]: pixels downsampled to 28 x 8 plus texture statistics."""
    img = x[..., 0].astype(np.float32)
    small = cv2.resize(img, (8, 28), interpolation=cv2.INTER_AREA).ravel()
    gx, gy = cv2.Sobel(img, cv2.CV_32F, 1, 0), cv2.Sobel(img, cv2.CV_32F, 0, 1)
    grad = np.hypot(gx, gy)
    lap = cv2.Laplacian(img, cv2.CV_32F)
    blur = cv2.GaussianBlur(img, (0, 0), 2.0)
    stats = [
        *np.quantile(img, np.linspace(0.05, 0.95, 10)),
        img.mean(), img.std(), grad.mean(), grad.std(), np.abs(lap).mean(), lap.std(),
        np.abs(img - blur).mean(), img.mean(axis=0).std(), img.mean(axis=1).std(),
        float((img < 0.02).mean()), float((img > 0.98).mean()),
    ]  # fmt: skip
    return np.concatenate([small, np.array(stats, dtype=np.float32)])


def realism_probe(x_real: np.ndarray, x_phantom: np.ndarray, repeats: int = 5) -> dict[str, Any]:
    """Cross-validated AUC of a logistic regression separating real films from phantoms."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    feats = np.array([texture_features(im) for im in np.concatenate([x_real, x_phantom])])
    y = np.r_[np.ones(len(x_real)), np.zeros(len(x_phantom))]
    out: dict[str, Any] = {"n_real": len(x_real), "n_phantom": len(x_phantom)}
    for name, cols in (("pixels+texture", slice(None)), ("texture", slice(224, None))):
        aucs = []
        for r in range(repeats):
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
            folds = StratifiedKFold(5, shuffle=True, random_state=r)
            p = cross_val_predict(clf, feats[:, cols], y, cv=folds, method="predict_proba")[:, 1]
            aucs.append(float(roc_auc_score(y, p)))
        out[name] = {"auc_mean": float(np.mean(aucs)), "auc_sd": float(np.std(aucs)), "aucs": aucs}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--real", type=Path, default=REPO.parent / "shared" / "data" / "real" / "fraiwan-kauh-dev"
    )
    ap.add_argument("--work", type=Path, default=Path("/tmp/realism"))
    ap.add_argument("--tag", default="current", help="subfolder of --work for this generator version")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--per-class", type=int, default=PER_CLASS)
    ap.add_argument("--epochs", type=int, default=PRETRAIN_EPOCHS)
    ap.add_argument("--probe-phantoms", type=int, default=400, help="phantoms in the realism probe")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--skip-train", action="store_true", help="realism probe only")
    args = ap.parse_args()
    # OpenCV's thread pool does not survive the fork of the phantom writer's workers: stay serial.
    cv2.setNumThreads(1)
    if not (args.real / "manifest.csv").is_file():
        sys.exit(f"no real films at {args.real} (manifest.csv missing)")
    spec = _spec()
    size = 2 * int(spec.input_size[0])  # spinescan.training.pretrain.phantom_size
    work = args.work / args.tag
    work.mkdir(parents=True, exist_ok=True)
    films = real_films(args.real)
    x_real = preprocessed([f["path"] for f in films], spec)
    result: dict[str, Any] = {
        "tag": args.tag, "seeds": args.seeds, "per_class": args.per_class, "size": size,
        "epochs": args.epochs, "real": str(args.real), "zero_shot": {}, "probe": {},
        "tone": {"real": tone_stats([f["path"] for f in films], spec)},
    }  # fmt: skip
    _print_tone("real", result["tone"]["real"])
    for seed in args.seeds:
        print(f"seed {seed}")
        data = ensure_phantoms(work / f"phantoms-s{seed}", seed, args.per_class, size, args.workers)
        from spinescan.data.datasets import load_dataset

        samples = [s for s in load_dataset(data).samples if s.view == "ap"]
        pick = np.random.default_rng(seed).choice(len(samples), min(args.probe_phantoms, len(samples)), False)
        x_ph = preprocessed([str(samples[i].path) for i in sorted(pick)], spec)
        result["tone"][f"phantoms-s{seed}"] = tone_stats([str(samples[i].path) for i in sorted(pick)], spec)
        _print_tone("phantoms", result["tone"][f"phantoms-s{seed}"])
        result["probe"][str(seed)] = realism_probe(x_real, x_ph)
        print("  probe", json.dumps({k: v["auc_mean"] for k, v in result["probe"][str(seed)].items()
                                     if isinstance(v, dict)}))  # fmt: skip
        if not args.skip_train:
            run_dir = ensure_run(data, work / "runs", seed, args.epochs)
            result["zero_shot"][str(seed)] = zs = zero_shot(run_dir, films, x_real, seed)
            for part in ("spine_crop", "whole"):
                s = zs[part]
                print(
                    f"  {part:10s} acc {s['accuracy']:.3f} {np.round(s['accuracy_ci'], 3).tolist()}  "
                    f"auc {s['auc']:.3f} {np.round(s['auc_ci'], 3).tolist()}  "
                    f"called scoliosis {s['called_scoliosis']}/{s['n']} (truly {s['n_scoliosis']})"
                )
    out = work / "realism.json"
    out.write_text(json.dumps(result, indent=1, default=float))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
