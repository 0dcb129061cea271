"""Tables, a plot and one generated sentence from benchmarks/aasce_cv.py's records (issue 21).

    python benchmarks/aasce_report.py --data ../shared/data/real/aasce-train \
        --cv benchmarks/results/aasce/cv.json [more.json ...] --out benchmarks/results/aasce

* the cross-validation figures of every configuration trained on all of each fold's training films:
  the films of all folds pooled (each film read once, by the model that never saw it), AASCE SMAPE,
  largest-Cobb MAE, landmark error, corners more than 2% of the film height off, sensitivity and
  specificity at 10 deg, with 95% patient-bootstrap CIs;
* how many real films phantom pretraining saves: SMAPE against the number of real training films,
  with and without pretraining, on the same held-out films, the paired difference per size (film
  bootstrap), and the phantoms-only point; ``OUT/data_efficiency.png`` and a generated sentence.

Writes ``OUT/report.md`` and ``OUT/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np


def load_rows(data: Path) -> dict[str, dict[str, str]]:
    from spinescan.data.datasets import load_dataset

    samples = load_dataset(data, default_view="ap").select(view="ap").samples
    return {s.rel: {**s.extra, "file": s.rel, "label": s.label, "patient_id": s.patient_id} for s in samples}


def pooled(records: list[dict[str, Any]], rows: dict[str, dict[str, str]], smoothed: bool) -> Any:
    """One score over the union of the records' test films (later records win a film read twice)."""
    from spinescan.evaluation.aasce import parse_corners, score_aasce

    pred: dict[str, list] = {}
    for rec in records:
        pred.update(rec["predictions"])
    files = sorted(pred)
    lm = [parse_corners(pred[f], f) for f in files]
    return files, score_aasce(lm, [rows[f] for f in files], smoothed=smoothed)


def fmt(value: float, ci: tuple[float, float] | list[float], digits: int = 2) -> str:
    return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def cv_table(groups: dict[tuple, list], rows: dict, smoothed: bool) -> tuple[list[str], list[dict]]:
    lines = [
        "| configuration | folds | films | SMAPE % | largest-Cobb MAE (deg) | landmark error (x height) "
        "| corners > 2% off | sensitivity at 10 deg | specificity at 10 deg | train s / fold |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    out = []
    for (tag, recipe), recs in sorted(groups.items()):
        _, s = pooled(recs, rows, smoothed)
        folds = sorted({r["fold"] for r in recs})
        secs = np.mean([r["train_seconds"] for r in recs])
        lines.append(
            f"| {tag} / {recipe} | {len(folds)} | {s.n_films} | {fmt(s.smape, s.smape_ci)} "
            f"| {fmt(s.largest_cobb_mae, s.largest_cobb_mae_ci)} "
            f"| {fmt(s.landmark_error, s.landmark_error_ci, 4)} "
            f"| {fmt(s.corners_far, s.corners_far_ci, 3)} | {fmt(s.sensitivity, s.sensitivity_ci)} "
            f"| {fmt(s.specificity, s.specificity_ci)} | {secs:.0f} |"
        )
        out.append({"tag": tag, "recipe": recipe, "folds": folds, **s.to_dict(), "train_seconds_mean": secs})
    return lines, out


def efficiency(records: list[dict], rows: dict, smoothed: bool, out_dir: Path) -> tuple[list[str], dict]:
    """SMAPE against the number of real films, real-only vs pretrained, paired on the same films."""
    from spinescan.metrics import paired_bootstrap_diff

    by: dict[tuple, list] = defaultdict(list)
    for r in records:
        by[(r["size"], r["recipe"])].append(r)
    sizes = sorted({s for s, _ in by if s != "all"}, key=int) + (
        ["all"] if any(s == "all" for s, _ in by) else []
    )
    lines = [
        "| real films | real only: SMAPE % | phantom-pretrained: SMAPE % | pretrained - real (paired) |",
        "|---|---|---|---|",
    ]
    points: dict[str, Any] = {"sizes": [], "n_train": [], "real": [], "pretrain": [], "diff": []}
    sentences = []
    for size in sizes:
        real, pre = by.get((size, "real"), []), by.get((size, "pretrain"), [])
        folds = {r["fold"] for r in pre}
        real = [r for r in real if r["fold"] in folds]  # paired: the same held-out films
        if not real or not pre:
            continue
        files_r, sr = pooled(real, rows, smoothed)
        files_p, sp = pooled(pre, rows, smoothed)
        if files_r != files_p:
            continue
        d, lo, hi = paired_bootstrap_diff(sp.films.smape, sr.films.smape)
        n_train = int(np.mean([r["n_train"] for r in real]))
        lines.append(
            f"| {size} ({n_train}) | {fmt(sr.smape, sr.smape_ci)} | {fmt(sp.smape, sp.smape_ci)} "
            f"| {d:+.2f} [{lo:+.2f}, {hi:+.2f}] |"
        )
        points["sizes"].append(size)
        points["n_train"].append(n_train)
        points["real"].append([sr.smape, *sr.smape_ci])
        points["pretrain"].append([sp.smape, *sp.smape_ci])
        points["diff"].append([d, lo, hi])
        verdict = "helped" if hi < 0 else "hurt" if lo > 0 else "made no clear difference"
        sentences.append(
            f"with {n_train} real films pretraining {verdict} (SMAPE {sr.smape:.1f}% -> {sp.smape:.1f}%, "
            f"paired difference {d:+.1f} points, 95% CI {lo:+.1f} to {hi:+.1f})"
        )
    ph = [r for r in records if r["recipe"] == "phantoms"]
    paired_folds = {r["fold"] for r in records if r["recipe"] == "pretrain"}
    ph = [r for r in ph if not paired_folds or r["fold"] in paired_folds]
    if ph:
        _, s0 = pooled(ph, rows, smoothed)
        points["phantoms_only"] = [s0.smape, *s0.smape_ci]
        lines.append(f"| 0 (phantoms only) | - | {fmt(s0.smape, s0.smape_ci)} | - |")
    answer = (
        "Phantom pretraining, measured on the same held-out films: " + "; ".join(sentences) + "."
        if sentences
        else "No paired sizes measured yet."
    )
    if points["sizes"]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        x = np.asarray(points["n_train"], float)
        fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
        for key, colour, label in (
            ("real", "tab:blue", "real films only"),
            ("pretrain", "tab:orange", "phantom-pretrained"),
        ):
            y = np.asarray(points[key], float)
            ax.errorbar(
                x,
                y[:, 0],
                yerr=[y[:, 0] - y[:, 1], y[:, 2] - y[:, 0]],
                marker="o",
                capsize=3,
                color=colour,
                label=label,
            )
        if "phantoms_only" in points:
            ax.axhline(
                points["phantoms_only"][0], color="grey", ls="--", label="phantoms only (0 real films)"
            )
        ax.set_xscale("log")
        ax.set_xlabel("real training films")
        ax.set_ylabel("AASCE SMAPE (%)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out_dir / "data_efficiency.png")
        plt.close(fig)
    return [*lines, "", answer], {**points, "answer": answer}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--cv", type=Path, nargs="+", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--readout", choices=["smoothed", "raw"], default="smoothed")
    ap.add_argument("--efficiency-tag", default=None, help="the tag whose size/recipe records form the study")
    args = ap.parse_args(argv)
    rows = load_rows(args.data)
    records = [r for path in args.cv for r in json.loads(path.read_text())["records"]]
    smoothed = args.readout == "smoothed"
    args.out.mkdir(parents=True, exist_ok=True)
    full = defaultdict(list)
    for r in records:
        if r["size"] == "all" and r["recipe"] != "phantoms":
            full[(r["tag"], r["recipe"])].append(r)
    cv_lines, cv = cv_table(full, rows, smoothed)
    study = [r for r in records if args.efficiency_tag is None or r["tag"] == args.efficiency_tag]
    eff_lines, eff = efficiency(study, rows, smoothed, args.out)
    report = [
        "# cobb on real AASCE films (issue 21)",
        "",
        f"Read-out: {args.readout}.",
        "",
        "## Cross-validation",
        "",
        *cv_lines,
        "",
        "## How many real films does phantom pretraining save?",
        "",
        *eff_lines,
        "",
    ]
    (args.out / "report.md").write_text("\n".join(report))
    (args.out / "summary.json").write_text(json.dumps({"cv": cv, "efficiency": eff}, indent=1, default=float))
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
