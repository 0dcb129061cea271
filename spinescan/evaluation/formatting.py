"""How numbers look in reports and model cards: one formatter per kind of figure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


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

def run_label(run: dict[str, Any]) -> str:
    label = f"seed {run.get('seed')}"
    if run.get("fold") is not None:
        label += f" fold {run['fold'] + 1}"
    return label


# -- markdown ----------------------------------------------------------------------------------------
