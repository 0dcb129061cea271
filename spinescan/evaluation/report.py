"""Turn a benchmark's leaderboard into files a person reads: ``report.md`` and PNG figures.

Everything here is drawn from the leaderboard dictionary (plus each run's ``history.csv`` for
training curves), so a report can be re-rendered from ``leaderboard.json`` alone, and the numbers
in the prose are the numbers in the JSON. matplotlib runs on the Agg backend (no display needed)
and every file is written atomically.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spinescan.atomic import atomic_path, atomic_write_text

PLOTS = "plots"


# -- formatting --------------------------------------------------------------------------------------
def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table cell; missing or undefined values print as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def fmt_ci(ci: Sequence[float] | None, digits: int = 3) -> str:
    if not ci or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in ci):
        return ""
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def fmt_metric(entry: dict[str, Any], name: str, digits: int = 3, worst: bool = False) -> str:
    """``mean ± SD [CI]`` (``mean ± SD (worst W) [CI]`` with ``worst``); the SD and worst run only
    when there were several runs."""
    text = fmt(entry.get(name), digits)
    if entry.get("n_runs", 1) > 1 and entry.get(f"{name}_sd") is not None:
        text += f" ± {fmt(entry.get(f'{name}_sd'), digits)}"
        if worst:
            text += f" (worst {fmt(entry.get(f'{name}_worst'), digits)})"
    ci = fmt_ci(entry.get(f"{name}_ci"), digits)
    return f"{text} {ci}".strip()


def fmt_p(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


# -- figures -----------------------------------------------------------------------------------------
def _pyplot():  # noqa: ANN202
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def plot_confusion(cm: Sequence[Sequence[int]], classes: Sequence[str], title: str, path: Path) -> Path:
    """Counts with row percentages (sensitivity on the diagonal), true classes in rows."""
    import numpy as np  # noqa: PLC0415

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


def read_history(path: Path) -> dict[str, list[float]]:
    """``history.csv`` as columns of floats (empty when the file is missing or unreadable)."""
    if not path.is_file():
        return {}
    columns: dict[str, list[float]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            for key, value in row.items():
                try:
                    columns.setdefault(key, []).append(float(value))
                except (TypeError, ValueError):
                    continue
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
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

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
                [(run_label(r), read_history(Path(r["run_dir"]) / "history.csv")) for r in entry["runs"]],
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


def run_label(run: dict[str, Any]) -> str:
    label = f"seed {run.get('seed')}"
    if run.get("fold") is not None:
        label += f" fold {run['fold'] + 1}"
    return label


# -- markdown ----------------------------------------------------------------------------------------
def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _speed(entry: dict[str, Any]) -> list[str]:
    reached = (entry.get("reached_target") or "").replace(" runs", "")
    return [
        fmt(entry.get("train_seconds"), 1),
        f"{fmt(entry.get('seconds_to_target'), 1)} ({reached})"
        if reached
        else fmt(entry.get("seconds_to_target"), 1),
        fmt(entry.get("epochs_to_target"), 1),
        fmt(entry.get("params")),
        fmt(entry.get("inference_ms"), 2),
    ]


def _leaderboard_table(lb: dict[str, Any]) -> list[str]:
    header = [
        "model",
        "classes",
        "test images",
        "accuracy",
        "balanced acc.",
        "macro-F1",
        "AUC",
        "ECE",
        "val acc.",
        "train s",
        "s to target",
        "epochs to target",
        "params",
        "ms / image",
        "winner",
    ]
    rows = []
    for e in lb.get("models", []):
        rows.append(
            [
                f"**{e['key']}**",
                ", ".join(e["classes"]),
                fmt(e.get("n_test_total")),
                fmt_metric(e, "accuracy"),
                fmt_metric(e, "balanced_accuracy"),
                fmt_metric(e, "macro_f1"),
                fmt_metric(e, "auc"),
                fmt(e.get("ece")),
                fmt(e.get("val_accuracy")),
                *_speed(e),
                "✔" if e.get("winner") else "",
            ]
        )
        for p in lb.get("probes", []):
            if p["task"] == e["key"]:
                rows.append(
                    [
                        f"↳ shortcut probe: {p['probe']}",
                        "",
                        fmt(p.get("n_test_total")),
                        fmt_metric(p, "accuracy"),
                        fmt_metric(p, "balanced_accuracy"),
                        fmt_metric(p, "macro_f1"),
                        fmt_metric(p, "auc"),
                        fmt(p.get("ece")),
                        "",
                        "",
                        "",
                        "",
                        "",
                        "",
                        "",
                    ]
                )
    return _table(header, rows)


def _per_class_table(lb: dict[str, Any]) -> list[str]:
    rows = []
    for e in lb.get("models", []):
        for cls in e["classes"]:
            rows.append(
                [
                    e["key"],
                    cls,
                    fmt(e["sensitivity"].get(cls)),
                    fmt(e["specificity"].get(cls)),
                    fmt(e.get("auc_per_class", {}).get(cls)),
                ]
            )
    return _table(["model", "class", "sensitivity", "specificity", "one-vs-rest AUC"], rows)


def _runs_table(lb: dict[str, Any]) -> list[str]:
    rows = []
    for e in lb.get("models", []):
        worst = e.get("accuracy_worst")
        for r in e["runs"]:
            mark = " (worst)" if len(e["runs"]) > 1 and r["accuracy"] == worst else ""
            rows.append(
                [
                    e["key"],
                    run_label(r),
                    fmt(r.get("n_test")),
                    fmt(r["accuracy"]) + mark,
                    fmt(r["auc"]),
                    fmt(r.get("val_accuracy")),
                    fmt(r.get("epochs_run")),
                    fmt(r.get("train_seconds"), 1),
                    "reused" if r.get("reused") else "trained",
                    f"`{r['run_dir']}`",
                ]
            )
    return _table(
        ["model", "run", "test n", "accuracy", "AUC", "val acc.", "epochs", "train s", "", "run dir"], rows
    )


def _subgroup_tables(lb: dict[str, Any]) -> list[str]:
    column = lb.get("protocol", {}).get("by")
    if not column:
        return []
    lines = [f"## Subgroups by `{column}`", ""]
    rows = []
    for item in [*lb.get("models", []), *lb.get("probes", [])]:
        label = item["key"] if "probe" not in item else f"↳ probe {item['probe']} ({item['task']})"
        for value, g in sorted((item.get("subgroups") or {}).items()):
            rows.append(
                [
                    label,
                    f"`{value}`",
                    fmt(g.get("n_test_total")),
                    fmt_metric(g, "accuracy"),
                    fmt_metric(g, "balanced_accuracy"),
                    fmt_metric(g, "auc"),
                    ", ".join(f"{c}: {n}" for c, n in g.get("class_counts", {}).items()),
                ]
            )
    lines += _table(
        ["model", column, "test images", "accuracy", "balanced acc.", "AUC", "images per class"], rows
    )
    lines += ["", "AUC is undefined (–) in a subgroup that holds only one class.", ""]
    return lines


def _study_row(label: str, c: dict[str, Any], specialist_side_accuracy: float) -> list[str]:
    """One paired comparison (a specialist, or the specialists combined) as a table row."""
    mc = c["mcnemar"]
    return [
        label,
        " / ".join(c["classes"]),
        fmt(c["n_images"]),
        fmt(specialist_side_accuracy),
        fmt(c["generalist_accuracy"]),
        f"{c['difference']:+.3f} {fmt_ci(c['difference_ci'])}",
        f"{mc['only_specialist_correct']} / {mc['only_generalist_correct']}",
        fmt_p(mc["p_value"]),
    ]


def _study_section(study: dict[str, Any] | None, figures: dict[str, str]) -> list[str]:
    if not study:
        return []
    lines = [
        "## Generalist vs specialists (paired, same test images)",
        "",
        f"Backbone `{study.get('backbone')}`. Positive differences favour the specialist side; "
        "the answer above is generated from this table.",
        "",
    ]
    if figures.get("study"):
        lines += [f"![paired differences]({figures['study']})", ""]
    rows = [
        _study_row(f"{c['specialist']} vs {study['generalist']}", c, c["specialist_accuracy"])
        for c in study.get("comparisons", [])
    ]
    d = study.get("deployment")
    if d:
        label = f"{' + '.join(d['specialists'])} combined vs {study['generalist']}"
        rows.append(_study_row(label, d, d["combined_accuracy"]))
    lines += _table(
        [
            "comparison",
            "classes",
            "paired images",
            "specialist side acc.",
            "generalist acc.",
            "difference [95% CI]",
            "discordant (spec. only / gen. only)",
            "McNemar p",
        ],
        rows,
    )
    if d:
        lines += [
            "",
            "Balanced accuracy on the 3-class test set: specialists combined "
            f"{fmt(d['combined_balanced_accuracy'])}, "
            f"{study['generalist']} {fmt(d['generalist_balanced_accuracy'])}.",
        ]
    lines += ["", f"*Mapping.* {study['mapping']}", ""]
    if d:
        lines += [f"*Combination rule.* {d['rule']}", ""]
    lines += [f"*Pooling.* {study['pooling']}", ""]
    return lines


def render_markdown(lb: dict[str, Any], figures: dict[str, dict[str, str]] | None = None) -> str:
    """``report.md``: answer first, then the leaderboard, the study, details and figures."""
    figures = figures or {}
    overview = figures.get("_overview", {})
    proto, data = lb.get("protocol", {}), lb.get("dataset", {})
    runs_word = f"{len(proto.get('seeds', []))} seed(s)" + (
        f" x {proto['folds']} folds" if proto.get("folds") else ""
    )
    header = [
        lb.get("created", ""),
        f"spinescan {lb.get('spinescan_version', '')}",
        f"dataset `{data.get('root', '')}`"
        + (" (the embedded synthetic phantoms)" if data.get("default") else ""),
        runs_word,
        f"{proto.get('ci_level', 0.95):.0%} bootstrap CIs ({proto.get('n_boot')} replicates)",
    ]
    lines = ["# Spine Scan benchmark", "", " · ".join(header), ""]
    if lb.get("study"):
        lines += ["## Answer", "", lb["study"]["answer"], ""]
    lines += ["## Leaderboard (test split)", ""]
    lines += _leaderboard_table(lb)
    lines += [
        "",
        "Figures are the mean over runs (*test images* counts them over all runs; with k folds each "
        "image is tested once per seed); with several runs `± SD` is the spread between runs, and the "
        "bracket is the 95% bootstrap CI of the mean (each run's test set resampled, stratified by class). "
        "*Winner*: the run of each model with the best **validation** accuracy (ties: fewer seconds to "
        "the target); test figures never choose it. Shortcut probes are cross-validated logistic "
        "regressions on image geometry / global intensity only, scored on the same test images: the "
        "floor a framing shortcut gives.",
        "",
    ]
    if overview.get("summary"):
        lines += [f"![accuracy with CIs]({overview['summary']})", ""]
    lines += _study_section(lb.get("study"), overview)
    lines += _subgroup_tables(lb)
    lines += ["## Per-class sensitivity and specificity", "", *_per_class_table(lb), ""]
    lines += ["## Runs", "", *_runs_table(lb), ""]
    winners = lb.get("winners", {})
    if winners:
        lines += ["## Winners (chosen on validation accuracy)", ""]
        lines += [f"- **{m}**: `{d}`" for m, d in winners.items()]
        lines += [
            "",
            f"Recorded in `{lb.get('winners_file', 'winners.json')}` for `spinescan export --onnx`.",
            "",
        ]
    lines += ["## Figures", ""]
    for e in lb.get("models", []):
        figs = figures.get(e["key"], {})
        if figs:
            lines += [f"### {e['key']}", ""]
            lines += [" ".join(f"![{kind}]({path})" for kind, path in figs.items() if kind != "curves"), ""]
            if figs.get("curves"):
                lines += [f"![training curves]({figs['curves']})", ""]
    notes = lb.get("notes") or []
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def report_paths(out: str | Path) -> dict[str, Path]:
    """Where a report's files go: ``leaderboard.json`` (written by the benchmark), ``report.md``, plots."""
    out = Path(out)
    return {"leaderboard": out / "leaderboard.json", "report": out / "report.md", "plots": out / PLOTS}


def write_report(leaderboard: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write the figures and ``report.md`` of ``leaderboard`` (its JSON form) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = draw_figures(leaderboard, out)
    paths = report_paths(out)
    atomic_write_text(paths["report"], render_markdown(leaderboard, figures))
    return paths
