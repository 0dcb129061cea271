"""The landmark models' benchmark: figures over seeds, the paired comparison with the classifiers
on the same phantom test films, and the measured angle on real films (issue 14).

* :func:`seed_figures`: landmark error (fraction of film height), angle MAE, SMAPE and the label
  accuracy of each seed's run, with the mean and a 95% t-interval over seeds.
* :func:`compare_with_classifier`: angle-then-threshold against a classifier trained on the same
  dataset and seed, hence on the same test films (the shared split): per film, is each right?
  Paired over films and seeds with the study's own code (bootstrap CI of the difference,
  exact McNemar; :func:`spinescan.evaluation.study.paired_summary`).
* :func:`measure_films`: a landmark run's reading of a folder of films with a ``manifest.csv``
  (e.g. the real AP dev films, labels only): AUC of the measured angle and the threshold's accuracy.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spinescan import metrics as m
from spinescan.evaluation.study import paired_summary

#: Two-sided 95% Student t quantiles for 1..10 degrees of freedom.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def mean_ci(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean, SD and a 95% t-interval over seeds (``None`` values are left out; one seed: no CI)."""
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if not len(v):
        return {"mean": None, "sd": None, "ci": None, "n_seeds": 0, "values": []}
    mean, sd = m.mean_sd(v.tolist())
    ci = None
    if len(v) > 1:
        t = _T95[min(len(v) - 2, len(_T95) - 1)] if len(v) - 1 <= len(_T95) else 1.96
        half = t * sd / math.sqrt(len(v))
        ci = [mean - half, mean + half]
    return {"mean": mean, "sd": sd, "ci": ci, "n_seeds": len(v), "values": v.tolist()}


#: Figures of :func:`spinescan.metrics.landmark_summary` that the papers on AP landmark models report.
FIELD_FIGURES = ("corners_far", "largest_cobb_mae", "sensitivity", "specificity")


def seed_figures(run_metrics: Sequence[dict[str, Any]], part: str = "test") -> dict[str, Any]:
    """The figures of one landmark model over its seeds' runs (``metrics.json`` documents)."""
    parts = [r[part] for r in run_metrics]
    names = sorted({n for p in parts for n in p.get("angles", {})})
    return {
        "n_films": [p["n"] for p in parts],
        "landmark_error": mean_ci([p.get("landmark_error") for p in parts]),
        "angle_mae": {n: mean_ci([(p["angles"].get(n) or {}).get("mae") for p in parts]) for n in names},
        "angle_bias": {n: mean_ci([(p["angles"].get(n) or {}).get("bias") for p in parts]) for n in names},
        "smape": mean_ci([p.get("smape") for p in parts]),
        "label_accuracy": mean_ci([p.get("label_accuracy") for p in parts]),
        "collapsed_pairs": mean_ci([p.get("collapsed_pairs") for p in parts]),
        # the field's figures (issue 21; absent from runs scored before them: no values)
        **{k: mean_ci([p.get(k) for p in parts]) for k in FIELD_FIGURES},
    }


def read_landmark_predictions(run_dir: Path, part: str = "test") -> dict[str, dict[str, str]]:
    """``{file: row}`` of a landmark run's ``predictions.csv`` for one split."""
    with open(Path(run_dir) / "predictions.csv", newline="", encoding="utf-8") as fh:
        return {r["file"]: r for r in csv.DictReader(fh) if r["split"] == part}


def compare_with_classifier(
    landmark_runs: Sequence[dict[str, dict[str, str]]],
    classifier_runs: Sequence[tuple[list[str], list[str], np.ndarray]],
    classes: Sequence[str],
    negative_class: str = "healthy",
    n_boot: int = 2000,
) -> dict[str, Any] | None:
    """Angle-then-threshold (landmark model) vs a classifier, paired per film, one pair per seed.

    ``landmark_runs[i]`` (``{file: row}``) and ``classifier_runs[i]`` (files, labels, probs) are
    the same seed's test predictions. Films of the classifier's ``classes`` only. A two-class
    classifier is scored on its question (positive class or not; the landmark model answers it
    with its derived label); a multi-class one on the exact label. A film the landmark model
    cannot label (angle not measured) counts as wrong for it.
    """
    binary = len(classes) == 2
    positive = next((c for c in classes if c != negative_class), None)
    pairs = []
    per_seed = []
    for lm_rows, (files, labels, probs) in zip(landmark_runs, classifier_runs, strict=True):
        a, b, truth = [], [], []
        for f, label, p in zip(files, labels, probs, strict=True):
            row = lm_rows.get(f)
            if row is None or label not in classes:
                continue
            said = classes[int(np.argmax(p))]
            measured = row["pred_label"] or None
            if binary:
                t = label == positive
                a.append(measured is not None and (measured == positive) == t)
                b.append((said == positive) == t)
                truth.append(int(t))
            else:
                a.append(measured == label)
                b.append(said == label)
                truth.append(list(classes).index(label))
        if a:
            aa, bb = np.array(a), np.array(b)
            pairs.append((aa, bb, np.array(truth)))
            test = m.mcnemar_exact(aa, bb)
            per_seed.append(
                {
                    "n_films": len(aa),
                    "landmark_accuracy": float(aa.mean()),
                    "classifier_accuracy": float(bb.mean()),
                    "mcnemar_p": test.p_value,
                    "discordant": [test.b, test.c],
                }
            )
    if not pairs:
        return None
    summary = paired_summary(pairs, n_boot)
    mc = summary.pop("mcnemar")
    return {
        "classes": list(classes),
        "scored_as": f"{positive} vs not" if binary else "exact label",
        "n_films": summary["n_images"],
        "n_seeds": summary["n_runs"],
        "landmark_accuracy": summary["specialist_accuracy"],
        "classifier_accuracy": summary["generalist_accuracy"],
        "difference": summary["difference"],
        "difference_ci": summary["difference_ci"],
        "mcnemar": {
            "only_landmark_correct": mc["only_specialist_correct"],
            "only_classifier_correct": mc["only_generalist_correct"],
            "p_value": mc["p_value"],
        },
        "per_seed": per_seed,
    }


def measure_films(
    model: Any,
    spec: Any,
    root: Path,
    overlay_dir: Path | None = None,
    overlay_files: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """A landmark model's reading of every film in ``root/manifest.csv`` (columns ``file``,
    ``label``, optional ``framing``), through the predictor's own read-out; overlays for
    ``overlay_files`` (``*`` for all) into ``overlay_dir``."""
    from spinescan.edge.landmark_overlay import write_overlay
    from spinescan.radiograph.angle_defs import definitions
    from spinescan.radiograph.imageio import read_image
    from spinescan.radiograph.measure import read_landmarks
    from spinescan.radiograph.preprocess import preprocess_placed

    with open(Path(root) / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    extra = definitions(spec.measurements)  # an angle a plugin registered, beyond the built-ins
    out = []
    for r in rows:
        img = read_image(Path(root) / r["file"])
        x, placement = preprocess_placed(img, spec.input_size, spec.preprocessing)
        o = model.predict(x[None], verbose=0)[0]
        reading = read_landmarks(o, placement, spec.view, spec.input_size[:2], img.shape[:2], extra)
        rec = {
            "file": r["file"],
            "label": r.get("label"),
            "framing": r.get("framing", ""),
            "pred_label": reading["label"],
            **{n: reading["angles"][n].value for n in spec.measurements},
        }
        if overlay_dir is not None and ("*" in overlay_files or r["file"] in overlay_files):
            target = Path(overlay_dir) / (Path(r["file"]).stem + f".{spec.name}.png")
            write_overlay(img, reading, target)
            rec["overlay"] = str(target)
        out.append(rec)
    return out


def film_figures(records: Sequence[dict[str, Any]], angle: str, positive: str) -> dict[str, Any]:
    """AUC of ``angle`` for ``positive`` vs the rest, and the derived label's accuracy."""
    y = np.array([r["label"] == positive for r in records])
    s = np.array([np.nan if r[angle] is None else r[angle] for r in records], dtype=np.float64)
    ok = np.isfinite(s)
    auc = m.roc_auc(y[ok], s[ok]) if ok.any() and len(set(y[ok].tolist())) == 2 else None
    return {
        "n": len(records),
        "n_measured": int(ok.sum()),
        "auc": None if auc is None else float(auc),
        "threshold_accuracy": float(np.mean([r["pred_label"] == r["label"] for r in records]))
        if records
        else None,
        f"median_{angle}_{positive}": float(np.nanmedian(s[y])) if (y & ok).any() else None,
        f"median_{angle}_other": float(np.nanmedian(s[~y])) if (~y & ok).any() else None,
    }
