"""The predictor's results as the table ``spinescan-predict`` prints: one row per film and model,
the angles of landmark models, skipped and failed films, and the weak-model verdicts under it."""

from __future__ import annotations

from typing import Any


def _model_cell(r: dict[str, Any]) -> str:
    """The model column: its name, with WEAK when it was exported past the weak-model gate."""
    return r.get("model", "") + (" WEAK" if r.get("weak") else "")


def _why_missing(r: dict[str, Any]) -> str:
    """A landmark result's reasons for every missing angle and for a missing label, one cell, after
    the implausibility flag (spinescan.radiograph.plausibility) when the reading raised one."""
    plausibility = r.get("plausibility") or {}
    why = []
    if plausibility.get("severity", "ok") != "ok":
        why.append(f"[{plausibility['severity']}: {'; '.join(plausibility.get('reasons') or [])}]")
    why += [f"{name}: {reason}" for name, reason in (r.get("reasons") or {}).items()]
    if r.get("label") is None:
        why.append(f"label: {r.get('label_reason') or 'the angles imply none'}")
    elif r.get("label_reason"):  # a named finding beside the label (flat back, ...): never dropped
        why.append(r["label_reason"])
    return "; ".join(why)


def format_table(results: list[dict[str, Any]], top: int | None = None) -> str:
    """A human-readable table: one line per image and model.

    Classifiers and landmark models answer different questions, so each gets its own block whose
    last column says what it holds: ``probabilities`` (classes by decreasing probability) or
    ``angles (deg)`` with a ``why missing`` column (the reason for every missing angle and label).
    Paths are padded to the longest, so columns line up whatever the folder depth; a model exported
    past the weak-model gate shows as ``NAME WEAK`` with the gate's verdict under the table.
    """
    if not results:
        return "No images."
    image_w = max(len("image"), *(len(r["image"]) for r in results))
    model_w = max([len(_model_cell(r)) for r in results] + [5])
    label_w = max([len(r.get("label") or "-") for r in results if "error" not in r] + [5])

    def row(r: dict[str, Any], rest: str) -> str:
        label = r.get("label") or "-"
        return f"{r['image']:<{image_w}}  {_model_cell(r):<{model_w}}  {label:<{label_w}}  {rest}"

    def head(last: str) -> str:
        return f"{'image':<{image_w}}  {'model':<{model_w}}  {'label':<{label_w}}  {last}"

    blocks: list[list[str]] = []
    classified = [r for r in results if "error" not in r and "skipped" not in r and "probabilities" in r]
    if classified:
        lines = [head("probabilities")]
        for r in classified:
            ranked = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[: top or None]
            lines.append(row(r, "  ".join(f"{c} {p:.3f}" for c, p in ranked)).rstrip())
        blocks.append(lines)
    measured = [r for r in results if "error" not in r and "skipped" not in r and "measurements" in r]
    if measured:
        cells = [
            "  ".join(f"{k} {'-' if v is None else f'{v:.1f}'}" for k, v in r["measurements"].items())
            for r in measured
        ]
        angle_w = max(len("angles (deg)"), *(len(c) for c in cells))
        lines = [head(f"{'angles (deg)':<{angle_w}}  why missing")]
        for r, cell in zip(measured, cells, strict=True):
            lines.append(row(r, f"{cell:<{angle_w}}  {_why_missing(r) or '-'}").rstrip())
        blocks.append(lines)
    skipped = [r for r in results if "skipped" in r]  # the view guard kept these models off the film
    if skipped:
        blocks.append(
            [
                f"{r['image']:<{image_w}}  {_model_cell(r):<{model_w}}  skipped: {r['skipped']}"
                for r in skipped
            ]
        )
    errors = [f"{r['image']:<{image_w}}  ERROR  {r['error']}" for r in results if "error" in r]
    if errors:
        blocks.append(errors)
    weak = {r["model"]: r["weak"] for r in results if r.get("weak")}
    if weak:
        blocks.append([f"WEAK {name}: {why}" for name, why in weak.items()])
    return "\n\n".join("\n".join(lines) for lines in blocks)


def add_top(results: list[dict[str, Any]], top: int) -> None:
    for r in results:
        if "probabilities" in r:
            ranked = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:top]
            r["top"] = [{"label": c, "probability": p} for c, p in ranked]
