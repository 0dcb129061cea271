"""Figures over runs (mean, SD, worst and best over seeds or folds) and the exact McNemar test of two
classifiers on the same images."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


# -- McNemar ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test: ``b`` = only A right, ``c`` = only B right, two-sided ``p``."""

    b: int
    c: int
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return {"only_a_correct": self.b, "only_b_correct": self.c, "p_value": self.p_value}


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p: under H0 the discordant pairs split as Binomial(b + c, 1/2).

    p = min(1, 2 * P(X <= min(b, c))) with X ~ Binomial(b + c, 1/2); b = c = 0 gives p = 1.
    """
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return float(min(1.0, 2.0 * tail))


def mcnemar_exact(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> McNemar:
    """Exact McNemar test on two classifiers' per-image correctness over the same images."""
    a = np.asarray(correct_a, dtype=bool)
    bb = np.asarray(correct_b, dtype=bool)
    if a.shape != bb.shape:
        raise ValueError("paired outcomes must have the same length")
    b = int((a & ~bb).sum())
    c = int((~a & bb).sum())
    return McNemar(b, c, mcnemar_exact_p(b, c))


# -- aggregation -----------------------------------------------------------------------------------
def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample SD (ddof=1; 0 for a single value) ignoring ``nan``."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Mean, SD, worst (minimum) and best over runs, for higher-is-better metrics."""
    clean = [float(x) for x in values if x is not None and not math.isnan(x)]
    mean, sd = mean_sd(clean)
    return {
        "mean": mean,
        "sd": sd,
        "worst": min(clean) if clean else float("nan"),
        "best": max(clean) if clean else float("nan"),
        "n": len(clean),
    }


