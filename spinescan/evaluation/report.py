"""Turn a benchmark's leaderboard into files a person reads: ``report.md`` and PNG figures.

Everything here is drawn from the leaderboard dictionary (plus each run's ``history.csv`` for
training curves), so a report can be re-rendered from ``leaderboard.json`` alone, and the numbers
in the prose are the numbers in the JSON. matplotlib runs on the Agg backend (no display needed)
and every file is written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spinescan.atomic import atomic_write_text
from spinescan.evaluation.formatting import fmt, fmt_ci, fmt_metric, fmt_p, run_label, slug
from spinescan.evaluation.plots import PLOTS, draw_figures

__all__ = ["fmt", "fmt_ci", "fmt_metric", "fmt_p", "render_markdown", "report_paths", "run_label", "slug",
           "write_report"]  # fmt: skip


# -- formatting --------------------------------------------------------------------------------------


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
    lines += _time_lines(study)
    return lines


def _time_lines(study: dict[str, Any]) -> list[str]:
    """The study's second half: time to the target accuracy, generalist vs specialists combined."""
    t = study.get("time_to_target")
    if not t:
        return []

    def secs(value: Any) -> str:
        return "not reached" if value is None else fmt(value, 1)

    rows = [
        [
            str(r["seed"]) + ("" if r["fold"] is None else f"/{r['fold']}"),
            secs(r["generalist_seconds"]),
            secs(r["specialists_seconds"]),
            fmt(r["generalist_train_seconds"], 1),
            fmt(r["specialists_train_seconds"], 1),
        ]
        for r in t["per_run"]
    ]
    targets = ", ".join(f"{k} {v:.2f}" for k, v in t["targets"].items() if v is not None)
    return [
        f"### Time to the target accuracy ({targets})",
        "",
        *_table(
            [
                "seed/fold",
                f"{study['generalist']} s to target",
                "specialists s to target (sum)",
                f"{study['generalist']} training s",
                "specialists training s (sum)",
            ],
            rows,
        ),
        "",
        f"*Rule.* {t['rule']}",
        "",
    ]


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
