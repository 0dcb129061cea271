"""The lateral classifiers at their defaults: the 5-seed stability check and the learning curve (issue 24).

    # 5 seeds at 300 phantoms per class (the goal: no model at chance on any seed)
    nice -n 10 python benchmarks/lateral_curve.py stability --work /tmp/lateral/curve \
        --out benchmarks/results/lateral/stability.json
    # learning curve: 50, 100, 300, 1000 phantoms per class x 3 seeds
    nice -n 10 python benchmarks/lateral_curve.py curve --work /tmp/lateral/curve \
        --out benchmarks/results/lateral/curve.json

Each size gets one lateral phantom set (``spinescan synth --views lateral --seed 0``, rendered
once under WORK and reused), and every model is trained through the shared loop with its plugin
defaults (``spinescan train MODEL --seed S``), so the models of one seed share the dataset's
split. A finished matching run is reused, so an interrupted study continues where it stopped
and the JSON is rewritten (atomically) after every run. Per run it records test and validation
accuracy, the chance level (the largest class share of the test split), whether the run is "at
chance" (test accuracy within 0.05 of it), any stalled-start restarts, the training and validation curves and
the training seconds. ``--models`` / ``--seeds`` / ``--sizes`` narrow it; ``--epochs`` overrides
the plugins' epochs (then the figures are not "at the defaults": the JSON says so).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MODELS = ("generalist", "kyphosis", "lordosis")
AT_CHANCE_MARGIN = 0.05


def phantoms(work: Path, per_class: int) -> Path:
    """The lateral phantom set of ``per_class`` per class (rendered once)."""
    data = work / f"phantoms-{per_class}"
    if not (data / "manifest.csv").is_file():
        cmd = [
            sys.executable,
            "-m",
            "spinescan",
            "synth",
            str(data),
            "--per-class",
            str(per_class),
            "--views",
            "lateral",
            "--seed",
            "0",
            "--size",
            "256",
            "--workers",
            "1",
        ]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return data


def one_run(model: str, data: Path, runs: Path, seed: int, hparams: dict[str, Any]) -> dict[str, Any]:
    """Train (or reuse) ``model`` at ``seed`` and summarise the run."""
    from landmark_bench import train_or_reuse

    run_dir, reused = train_or_reuse(model, data, runs, seed, hparams)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    confusion = metrics["test"].get("confusion") or []
    n = sum(sum(row) for row in confusion) or metrics["test"]["n"]
    chance = max(sum(row) for row in confusion) / n if confusion else None
    with open(run_dir / "history.csv", newline="") as f:
        history = list(csv.DictReader(f))
    test = float(metrics["test"]["accuracy"])
    return {
        "model": model,
        "seed": seed,
        "test_accuracy": round(test, 4),
        "val_accuracy": round(float(metrics["val"]["accuracy"]), 4),
        "test_n": n,
        "chance": None if chance is None else round(chance, 4),
        "at_chance": chance is not None and test <= chance + AT_CHANCE_MARGIN,
        "restarts": len(metrics.get("restarts") or []),
        "train_seconds": metrics.get("train_seconds"),
        "val_curve": [round(float(h["val_accuracy"]), 3) for h in history],
        # training accuracy per epoch: a stalled start shows here (at chance with the loss at ln k)
        "train_curve": [round(float(h["accuracy"]), 3) for h in history],
        "lr_curve": [float(h["learning_rate"]) for h in history],
        "reused": reused,
        "run_dir": str(run_dir),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per model and size: mean, min and max test accuracy and how many runs were at chance."""
    out: dict[str, Any] = {}
    for r in runs:
        key = f"{r['model']}@{r['per_class']}"
        out.setdefault(key, []).append(r["test_accuracy"])
    return {
        k: {
            "runs": len(v),
            "mean": round(sum(v) / len(v), 4),
            "min": min(v),
            "max": max(v),
            "at_chance": sum(r["at_chance"] for r in runs if f"{r['model']}@{r['per_class']}" == k),
        }
        for k, v in out.items()
    }


def write(out: Path, doc: dict[str, Any]) -> None:
    from spinescan.atomic import atomic_write_text

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(doc, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("study", choices=("stability", "curve"))
    ap.add_argument("--work", type=Path, required=True, help="phantom sets and runs (scratch)")
    ap.add_argument("--out", type=Path, required=True, help="the JSON written")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="phantoms per class")
    ap.add_argument("--epochs", type=int, default=None, help="override the plugins' epochs")
    args = ap.parse_args(argv)
    stability = args.study == "stability"
    seeds = args.seeds or ([0, 1, 2, 3, 4] if stability else [0, 1, 2])
    sizes = args.sizes or ([300] if stability else [50, 100, 300, 1000])
    hparams = {} if args.epochs is None else {"epochs": args.epochs}
    doc: dict[str, Any] = {
        "schema": "spinescan.lateral-curve/1",
        "study": args.study,
        "defaults": not hparams,
        "hparams_overrides": hparams,
        "phantoms": "spinescan synth --views lateral --seed 0 --size 256 --per-class N",
        "at_chance_rule": f"test accuracy <= chance (largest test class share) + {AT_CHANCE_MARGIN}",
        "runs": [],
    }
    from spinescan.zoo.registry import get_spec

    doc["specs"] = {m: get_spec(m).summary() for m in args.models}
    start = time.perf_counter()
    for per_class in sizes:
        data = phantoms(args.work, per_class)
        for seed in seeds:  # seeds outermost within a size: every model gets a seed before the next
            for model in args.models:
                r = one_run(model, data, args.work / f"runs-{per_class}", seed, hparams)
                r["per_class"] = per_class
                doc["runs"].append(r)
                doc["summary"] = summarise(doc["runs"])
                doc["elapsed_seconds"] = round(time.perf_counter() - start)
                write(args.out, doc)
                print(
                    f"{model} {per_class}/class seed {seed}: test {r['test_accuracy']:.3f} "
                    f"(chance {r['chance']}, restarts {r['restarts']})",
                    flush=True,
                )
    print(json.dumps(doc["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
