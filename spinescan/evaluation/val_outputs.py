"""What ``spinescan val`` writes: ``val.json`` (schema ``spinescan.val/1``), ``films.csv`` and the
figures (a Bland-Altman plot and a predicted-vs-true scatter per landmark model, a reliability diagram
per classifier). Apart from :mod:`spinescan.evaluation.val` so that scoring never imports matplotlib."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from spinescan.atomic import atomic_write_text
from spinescan.evaluation.val import ValResult


def write_outputs(result: ValResult, out: Path, plots: bool = True) -> list[Path]:
    """``val.json`` (schema ``spinescan.val/1``), ``films.csv`` (one row per film and model) and,
    with ``plots``, the figures (matplotlib, imported only here). Every file is written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "val.json", out / "films.csv"]
    atomic_write_text(written[0], json.dumps(jsonable(result.to_dict()), indent=2, allow_nan=False) + "\n")
    fields: list[str] = []
    for r in result.rows:
        fields.extend(k for k in r if k not in fields)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(result.rows)
    atomic_write_text(written[1], buf.getvalue())
    if plots:
        written.extend(_plots(result, out))
    return written


def jsonable(value: Any) -> Any:
    """NaN (an undefined figure, e.g. the AUC of a single class) becomes null: valid JSON."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def _plots(result: ValResult, out: Path) -> list[Path]:
    """Per landmark model: a Bland-Altman plot and a predicted-vs-true scatter, one panel per angle;
    per classifier: its reliability diagram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for name, fig in result.models.items():
        if fig.get("task") == "landmarks" and fig.get("n"):
            pairs = {a: np.array(p, dtype=np.float64).reshape(-1, 2) for a, p in fig["pairs"].items()}
            for kind in ("bland_altman", "scatter"):
                f, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 4), squeeze=False)
                for ax, (angle, a) in zip(axes[0], pairs.items(), strict=True):
                    _panel(ax, kind, angle, a)
                f.suptitle(f"{name}: {'Bland-Altman' if kind == 'bland_altman' else 'predicted vs true'}")
                f.tight_layout()
                written.append(_save(f, out / f"{name}.{kind}.png", plt))
        elif fig.get("task") == "classification" and fig.get("n"):
            bins = [b for b in fig.get("reliability", []) if b.get("count")]
            f, ax = plt.subplots(figsize=(4.5, 4.5))
            ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
            ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-")
            ax.set(xlabel="confidence", ylabel="accuracy", title=f"{name}: calibration")
            ax.set(xlim=(0, 1), ylim=(0, 1))
            written.append(_save(f, out / f"{name}.calibration.png", plt))
    return written


def _panel(ax: Any, kind: str, angle: str, a: np.ndarray) -> None:
    ax.set_title(f"{angle} (n={len(a)})")
    if not len(a):
        return
    pred, true = a[:, 0], a[:, 1]
    if kind == "scatter":
        lo, hi = float(min(pred.min(), true.min())), float(max(pred.max(), true.max()))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--")
        ax.scatter(true, pred, s=10)
        ax.set(xlabel="true (deg)", ylabel="predicted (deg)")
        return
    mean, diff = (pred + true) / 2, pred - true
    bias, sd = float(diff.mean()), float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    ax.scatter(mean, diff, s=10)
    for y, style in ((bias, "-"), (bias + 1.96 * sd, "--"), (bias - 1.96 * sd, "--")):
        ax.axhline(y, color="grey", lw=1, ls=style)
    ax.set(xlabel="mean of predicted and true (deg)", ylabel="predicted - true (deg)")


def _save(fig: Any, path: Path, plt: Any) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    from spinescan.atomic import atomic_write_bytes

    atomic_write_bytes(path, buf.getvalue())
    return path
