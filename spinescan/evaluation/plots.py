"""The benchmark report's PNG figures (matplotlib on the Agg backend, every file written atomically)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spinescan.atomic import atomic_path
from spinescan.evaluation.formatting import fmt, run_label, slug
from spinescan.training.runs import RunDir

PLOTS = "plots"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def plot_confusion(cm: Sequence[Sequence[int]], classes: Sequence[str], title: str, path: Path) -> Path:
    """Counts with row percentages (sensitivity on the diagonal), true classes in rows."""
    import numpy as np

    plt = _pyplot()
    m = np.asarray(cm, dtype=float)
    rows = m.sum(axis=1, keepdims=True)
    frac = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    size = 1.2 + 1.1 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            colour = "white" if frac[i, j] > 0.6 else "black"
            ax.text(j, i, f"{int(m[i, j])}\n{frac[i, j]:.0%}", ha="center", va="center", color=colour)
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    return _save(fig, path)


def plot_roc(roc: dict[str, dict[str, Any]], title: str, path: Path) -> Path:
    """One-vs-rest ROC curves, one per class, with their AUC in the legend."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    for cls, curve in roc.items():
        ax.step(curve["fpr"], curve["tpr"], lw=1.8, label=f"{cls} (AUC {fmt(curve.get('auc'))})")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_aspect("equal")
    return _save(fig, path)


def plot_reliability(bins: Sequence[dict[str, Any]], ece: float | None, title: str, path: Path) -> Path:
    """Accuracy against confidence per bin (bars) over the diagonal, and how many images per bin."""
    plt = _pyplot()
    fig, (ax, axn) = plt.subplots(
        2, 1, figsize=(4.6, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.08}
    )
    width = [b["upper"] - b["lower"] for b in bins]
    left = [b["lower"] for b in bins]
    used = [b for b in bins if b["count"]]
    ax.bar(
        [b["lower"] for b in used],
        [b["accuracy"] for b in used],
        width=[b["upper"] - b["lower"] for b in used],
        align="edge",
        color="#4c72b0",
        edgecolor="white",
        label="accuracy in bin",
    )
    ax.plot(
        [(b["lower"] + b["upper"]) / 2 for b in used],
        [b["confidence"] for b in used],
        "D",
        ms=5,
        color="#c44e52",
        label="mean confidence in bin",
    )
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}\nECE {fmt(ece)}", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    axn.bar(left, [b["count"] for b in bins], width=width, align="edge", color="grey", edgecolor="white")
    axn.set_xlim(0, 1)
    axn.set_xlabel("confidence (top-class probability)")
    axn.set_ylabel("images")
    return _save(fig, path)


def read_history(run_dir: Path) -> dict[str, list[float]]:
    """A run's ``history.csv`` as columns of floats (empty when missing or unreadable)."""
    try:
        rows = RunDir(Path(run_dir)).read_history()
    except (OSError, ValueError, KeyError):
        return {}
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            columns.setdefault(key, []).append(float(value))
    return columns


def plot_training_curves(
    histories: Sequence[tuple[str, dict[str, list[float]]]],
    title: str,
    path: Path,
    target: float | None = None,
) -> Path | None:
    """Accuracy and loss per epoch for each run (solid: validation, dotted: training)."""
    histories = [(label, h) for label, h in histories if h]
    if not histories:
        return None
    plt = _pyplot()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(9, 3.6))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, h) in enumerate(histories):
        colour = colours[i % len(colours)]
        epochs = h.get("epoch") or list(range(len(next(iter(h.values())))))
        epochs = [e + 1 for e in epochs] if epochs and min(epochs) == 0 else epochs
        for metric, ax in (("accuracy", ax_acc), ("loss", ax_loss)):
            if metric in h:
                ax.plot(epochs[: len(h[metric])], h[metric], ls=":", marker=".", color=colour, lw=1.2)
            if f"val_{metric}" in h:
                values = h[f"val_{metric}"]
                ax.plot(epochs[: len(values)], values, marker="o", ms=3, color=colour, lw=1.8, label=label)
    if target:
        ax_acc.axhline(target, color="grey", ls="--", lw=1, label=f"target {target:g}")
    ax_acc.set_ylim(0, 1.02)
    from matplotlib.ticker import MaxNLocator

    last = max(len(h.get("val_loss", h.get("loss", []))) for _, h in histories)
    for ax, name in ((ax_acc, "accuracy"), (ax_loss, "loss")):
        if last <= 12:
            ax.set_xticks(range(1, max(last, 1) + 1))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0.5, max(last, 1) + 0.5)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    ax_acc.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{title} (solid: validation, dotted: training)", fontsize=10)
    return _save(fig, path)


def plot_summary(rows: Sequence[tuple[str, float, Sequence[float] | None, str]], path: Path) -> Path | None:
    """Forest plot of test accuracy with 95% CIs: CNNs and their shortcut probes side by side."""
    rows = [r for r in rows if r[1] is not None and not math.isnan(r[1])]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.42 * len(rows) + 1.2))
    for i, (_label, value, ci, kind) in enumerate(reversed(rows)):
        colour = "#4c72b0" if kind == "model" else "#999999"
        if ci and not any(math.isnan(v) for v in ci):
            ax.plot(ci, [i, i], color=colour, lw=2)
        ax.plot([value], [i], "o" if kind == "model" else "s", color=colour)
    ax.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)], fontsize=8)
    for tick, row in zip(ax.get_yticklabels(), reversed(rows), strict=True):
        tick.set_color("#1f3b63" if row[3] == "model" else "#777777")
        tick.set_fontweight("bold" if row[3] == "model" else "normal")
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("test accuracy (95% CI)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Models (blue) and shortcut probes (grey)", fontsize=10)
    return _save(fig, path)


def plot_study(study: dict[str, Any], path: Path) -> Path | None:
    """Paired accuracy differences (specialist or combination minus generalist) with 95% CIs."""
    rows = [
        (f"{c['specialist']} specialist\n({' vs '.join(c['classes'])})", c["difference"], c["difference_ci"])
        for c in study.get("comparisons", [])
    ]
    if study.get("deployment"):
        d = study["deployment"]
        rows.append(("specialists combined\n(3-class decision)", d["difference"], d["difference_ci"]))
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 0.75 * len(rows) + 1.3))
    for i, (_, diff, ci) in enumerate(reversed(rows)):
        ax.plot(ci, [i, i], color="#4c72b0", lw=2.5)
        ax.plot([diff], [i], "o", color="#4c72b0")
    ax.axvline(0, color="grey", ls="--", lw=1)
    ax.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)], fontsize=8)
    ax.set_xlabel(f"accuracy difference vs the {study['generalist']} (paired, 95% CI)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Positive: the specialist side is more accurate", fontsize=10)
    return _save(fig, path)


def draw_figures(leaderboard: dict[str, Any], out: Path) -> dict[str, dict[str, str]]:
    """All PNGs for a leaderboard; returns ``{entry key: {figure kind: relative path}}``."""
    plots = out / PLOTS
    figures: dict[str, dict[str, str]] = {}

    def rel(path: Path | None) -> str | None:
        return None if path is None else path.relative_to(out).as_posix()

    for entry in leaderboard.get("models", []):
        key, name = entry["key"], slug(entry["key"])
        title = f"{key} ({entry['n_runs']} run{'s' if entry['n_runs'] > 1 else ''}, test images pooled)"
        made = {
            "confusion": plot_confusion(
                entry["confusion_matrix"], entry["classes"], title, plots / f"confusion_{name}.png"
            ),
            "roc": plot_roc(entry["roc"], title, plots / f"roc_{name}.png") if entry.get("roc") else None,
            "reliability": plot_reliability(
                entry["reliability"], entry.get("ece_pooled"), title, plots / f"reliability_{name}.png"
            )
            if entry.get("reliability")
            else None,
            "curves": plot_training_curves(
                [(run_label(r), read_history(Path(r["run_dir"]))) for r in entry["runs"]],
                key,
                plots / f"curves_{name}.png",
                entry.get("target_accuracy"),
            ),
        }
        figures[key] = {kind: rel(p) for kind, p in made.items() if p is not None}

    summary_rows: list[tuple[str, float, Sequence[float] | None, str]] = []
    for entry in leaderboard.get("models", []):
        summary_rows.append((entry["key"], entry["accuracy"], entry.get("accuracy_ci"), "model"))
        for probe in leaderboard.get("probes", []):
            if probe["task"] == entry["key"]:
                summary_rows.append(
                    (
                        f"{entry['key']} probe: {probe['probe']}",
                        probe["accuracy"],
                        probe.get("accuracy_ci"),
                        "probe",
                    )
                )
    summary = plot_summary(summary_rows, plots / "summary.png")
    study = leaderboard.get("study")
    study_png = plot_study(study, plots / "study.png") if study else None
    figures["_overview"] = {k: v for k, v in (("summary", rel(summary)), ("study", rel(study_png))) if v}
    return figures
