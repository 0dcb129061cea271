"""Hyperband-tuned vs default hyper-parameters for the generalist, paired on one test split (issue 15).

    nice -n 5 python benchmarks/tune_study.py [--out reports/tune-study] [--per-class 200]
        [--max-epochs 20] [--budget 22m] [--seeds 0 1]

1. Renders ``--per-class`` lateral phantoms per class at 128 px (skipped if already there).
2. ``spinescan tune generalist`` (Hyperband, validation split of seed 0, test split never read).
3. Trains the generalist with the plugin defaults and with the tuned file, once per ``--seeds``
   initialisation seed, all on seed 0's split (the split tuning used, so its test images were
   never seen by the search), for the plugin's default epochs.
4. Pairs tuned against default on the same test images: accuracy with a stratified bootstrap CI
   per arm, the paired difference CI (images resampled within each run, averaged over runs) and
   the exact McNemar test on discordant pairs pooled over runs (spinescan.metrics, the code the
   benchmark's study uses).

Writes OUT/result.json and OUT/result.md; the committed copy is benchmarks/results/tune-study/.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from spinescan import metrics as m
from spinescan.progress import Plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/tune-study"))
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--budget", default="22m")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--train-epochs", type=int, help="Epochs of the compared runs [plugin default].")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    data = out / "phantoms"
    progress = Plain()

    if not (data / "manifest.csv").is_file():
        from spinescan.synth import generate

        generate(
            data, per_class=args.per_class, seed=0, size=128, views=("lateral",), workers=2, progress=False
        )

    from spinescan.data.datasets import load_dataset
    from spinescan.data.splits import make_split
    from spinescan.training.config import TrainConfig
    from spinescan.training.loop import train
    from spinescan.training.runs import RunDir
    from spinescan.training.settings import RunSettings
    from spinescan.training.tune import Budget, TuneConfig, tune
    from spinescan.zoo.registry import get_spec

    start = time.monotonic()
    result = tune(
        TuneConfig(
            model="generalist",
            data=data,
            out=out / "search",
            max_epochs=args.max_epochs,
            budget=Budget.parse(args.budget),
            settings=RunSettings(seed=0),
            progress=progress,
        )
    )
    tune_seconds = time.monotonic() - start
    progress.info(f"tuning: {len(result.trials)} trials, best val {result.best_score}, {result.best}")

    spec = get_spec("generalist")
    view = load_dataset(data).select(view="lateral").samples
    split = make_split(view, 0, spec.train.validation_fraction, spec.train.test_fraction)
    arms = {"default": None, "tuned": result.best_file}
    runs: dict[str, list[dict]] = {arm: [] for arm in arms}
    for seed in args.seeds:
        for arm, hparams_file in arms.items():
            config = TrainConfig(
                model="generalist", data=data, hparams_file=hparams_file, split=split,
                settings=RunSettings(seed=seed), hparams={"epochs": args.train_epochs},
                runs_dir=out / "runs" / arm, progress=progress,
            )  # fmt: skip
            run = train(config)
            files, labels, probs = RunDir(run.run_dir).read_predictions()["test"]
            y = np.asarray([spec.classes.index(lab) for lab in labels])
            runs[arm].append({
                "seed": seed,
                "run_dir": str(run.run_dir),
                "files": files,
                "y": y,
                "correct": probs.argmax(axis=1) == y,
                "train_seconds": run.metrics["train_seconds"],
                "val_accuracy": run.metrics["val"]["accuracy"],
            })  # fmt: skip
    write(out, args, result, tune_seconds, runs)


def write(out: Path, args: argparse.Namespace, result, tune_seconds: float, runs: dict) -> None:
    rows, diffs, los, his = [], [], [], []
    a_all, b_all = [], []
    for tuned, default in zip(runs["tuned"], runs["default"], strict=True):
        assert tuned["files"] == default["files"]
        y = tuned["y"]
        diff, lo, hi = m.paired_bootstrap_diff(tuned["correct"], default["correct"], strata=y, n_boot=2000)
        diffs.append(diff)
        los.append(lo)
        his.append(hi)
        a_all.append(tuned["correct"])
        b_all.append(default["correct"])
        for arm, r in (("default", default), ("tuned", tuned)):
            acc = float(r["correct"].mean())
            ci = m.bootstrap_ci(lambda c: float(c.mean()), r["correct"].astype(float), strata=y, n_boot=2000)
            rows.append({
                "arm": arm, "seed": r["seed"], "n_test": len(y), "test_accuracy": acc, "ci": ci,
                "val_accuracy": r["val_accuracy"], "train_seconds": r["train_seconds"],
            })  # fmt: skip
    pooled = m.mcnemar_exact(np.concatenate(a_all), np.concatenate(b_all))
    summary = {
        "command": (
            f"nice -n 5 python benchmarks/tune_study.py --out {out} --per-class {args.per_class} "
            f"--max-epochs {args.max_epochs} --budget {args.budget} --seeds {' '.join(map(str, args.seeds))}"
            + (f" --train-epochs {args.train_epochs}" if args.train_epochs else "")
        ),
        "tuning": {
            "seconds": round(tune_seconds, 1),
            "trials": len(result.trials),
            "best_val_accuracy": result.best_score,
            "best_hparams": result.best,
        },
        "runs": rows,
        "difference_tuned_minus_default": float(np.mean(diffs)),
        "difference_ci_mean_of_runs": [float(np.mean(los)), float(np.mean(his))],
        "mcnemar_pooled": pooled.to_dict(),
    }
    (out / "result.json").write_text(json.dumps(summary, indent=2, default=float))
    lines = [
        "# Hyperband-tuned vs default hyper-parameters (generalist, lateral phantoms)",
        "",
        f"Command: `{summary['command']}`",
        "",
        f"Tuning: {len(result.trials)} Hyperband trials in {tune_seconds / 60:.1f} min, best validation "
        f"accuracy {result.best_score}, best settings `{json.dumps(result.best)}`.",
        "",
        "| arm | init seed | test n | test accuracy [95% CI] | val accuracy | training s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['arm']} | {r['seed']} | {r['n_test']} | {r['test_accuracy']:.3f} "
            f"[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] | {r['val_accuracy']:.3f} | {r['train_seconds']:.0f} |"
        )
    lo, hi = summary["difference_ci_mean_of_runs"]
    lines += [
        "",
        "Paired on the same test images (seed 0 split): tuned minus default "
        f"{summary['difference_tuned_minus_default']:+.3f} "
        f"(95% CI {lo:+.3f} to {hi:+.3f}, per-run paired bootstrap averaged over runs); exact McNemar on "
        f"discordant pairs pooled over runs: only tuned right {pooled.b}, only default right {pooled.c}, "
        f"p = {pooled.p_value:.3g}.",
    ]
    (out / "result.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
