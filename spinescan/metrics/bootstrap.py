"""Seeded percentile-bootstrap confidence intervals: of any metric (a loop over replicates), of the
difference of two classifiers on the same images (paired), and of the four headline figures of one
run, vectorised over replicates (:func:`single_run_cis`, the very resamples of the loop).

Why one module: every interval in the reports comes from the same resampling rule (stratified by
label, one generator per seed), so that the loop and the vectorised form agree to the last digit."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from spinescan.metrics.classification import (
    accuracy_from_cm,
    balanced_accuracy_from_cm,
    confusion_matrix,
    macro_f1_from_cm,
    ovr_auc,
)

Metric = Callable[..., float]


# -- bootstrap -------------------------------------------------------------------------------------
def _resample_indices(rng: np.random.Generator, n: int, strata: np.ndarray | None) -> np.ndarray:
    """Indices of one bootstrap replicate; with ``strata``, each stratum keeps its own size."""
    if strata is None:
        return rng.integers(0, n, size=n)
    parts = []
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        parts.append(members[rng.integers(0, len(members), size=len(members))])
    return np.concatenate(parts)


def percentile_ci(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap replicates, NaN ones (an undefined figure in that
    resample) left out; ``(nan, nan)`` when none is defined."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(values, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_ci(
    metric: Metric,
    *arrays: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    strata: Sequence[Any] | None = None,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``metric(*arrays)``, resampling rows of all arrays together.

    ``strata`` (usually the true labels) keeps each class's count fixed in every replicate, so a
    small test set never loses a class and per-class figures stay defined. Seeded: the same call
    gives the same interval.
    """
    return bootstrap_ci_multi(
        metric,
        [tuple(arrays)],
        n_boot=n_boot,
        seed=seed,
        strata=None if strata is None else [strata],
        level=level,
    )


def bootstrap_ci_multi(
    metric: Metric,
    groups: Sequence[tuple[np.ndarray, ...]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    strata: Sequence[Sequence[Any]] | None = None,
    level: float = 0.95,
) -> tuple[float, float]:
    """CI of the mean of ``metric`` over several independent test sets (seeds or folds).

    Each replicate resamples every group (run) on its own and averages the metric across groups,
    so the interval describes the test-sampling uncertainty of the mean-over-runs figure that the
    leaderboard reports; the spread between runs is reported separately as an SD.
    """
    stats = bootstrap_stats(metric, groups, n_boot=n_boot, seed=seed, strata=strata)
    return percentile_ci(stats[:, 0], level)


def bootstrap_stats(
    metric: Callable[..., float | Sequence[float]],
    groups: Sequence[tuple[np.ndarray, ...]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    strata: Sequence[Sequence[Any]] | None = None,
) -> np.ndarray:
    """``(n_boot, n_stats)`` replicates of ``metric`` (a scalar or a vector of statistics),
    averaged over groups; one resample serves every statistic the metric returns."""
    rng = np.random.default_rng(seed)
    groups = [tuple(np.asarray(a) for a in g) for g in groups]
    strata_arrays = [None if strata is None else np.asarray(s) for s in (strata or [None] * len(groups))]
    rows = []
    for _ in range(n_boot):
        values = []
        for arrays, st in zip(groups, strata_arrays, strict=True):
            idx = _resample_indices(rng, len(arrays[0]), st)
            values.append(np.atleast_1d(np.asarray(metric(*(a[idx] for a in arrays)), dtype=float)))
        block = np.vstack(values)
        defined = ~np.isnan(block)
        with np.errstate(invalid="ignore"):
            rows.append(np.where(defined.any(axis=0), np.nansum(block, axis=0) / defined.sum(axis=0), np.nan))
    return np.array(rows, dtype=float).reshape(n_boot, -1)


def paired_bootstrap_diff(
    correct_a: Sequence[bool],
    correct_b: Sequence[bool],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    strata: Sequence[Any] | None = None,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """Accuracy difference ``acc(a) - acc(b)`` on the same images, with a paired bootstrap CI.

    Resampling images (not models) keeps each image's pair of outcomes together, which is what
    makes the interval narrower than two independent CIs when the models agree on most images.
    """
    a = np.asarray(correct_a, dtype=float)
    b = np.asarray(correct_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError("paired outcomes must have the same length")
    diff = float(a.mean() - b.mean()) if a.size else float("nan")
    lo, hi = bootstrap_ci(
        lambda x, y: float(x.mean() - y.mean()), a, b, n_boot=n_boot, seed=seed, strata=strata, level=level
    )
    return diff, lo, hi



CI_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auc")


def metric_cis(
    runs: Sequence[tuple[np.ndarray, np.ndarray]],
    n_classes: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Stratified bootstrap CIs of accuracy, balanced accuracy, macro-F1 and AUC.

    ``runs`` is a list of ``(y_true, probs)``, one per seed or fold; with one run this is the
    ordinary stratified percentile bootstrap on its test set.
    """
    groups = [(np.asarray(t, dtype=int), np.asarray(p, dtype=float)) for t, p in runs]

    def all_four(t: np.ndarray, p: np.ndarray) -> list[float]:
        cm = confusion_matrix(t, p.argmax(axis=1), n_classes)
        return [accuracy_from_cm(cm), balanced_accuracy_from_cm(cm), macro_f1_from_cm(cm), ovr_auc(t, p)[0]]

    stats = bootstrap_stats(all_four, groups, n_boot=n_boot, seed=seed, strata=[g[0] for g in groups])
    return {name: percentile_ci(stats[:, i], level) for i, name in enumerate(CI_METRICS)}


# -- the same bootstrap, vectorised ------------------------------------------------------------------
#: Replicates computed at once by the vectorised bootstrap (memory: a few (block, n) arrays).
BOOT_BLOCK = 128


def bootstrap_indices(
    n: int, n_boot: int = 1000, seed: int = 0, strata: Sequence[Any] | None = None
) -> np.ndarray:
    """``(n_boot, n)``: the very resamples :func:`bootstrap_stats` draws for one group with this seed
    and these strata (same generator, same order), so figures computed on them vectorised equal
    the loop's."""
    rng = np.random.default_rng(seed)
    if not n_boot:
        return np.zeros((0, n), dtype=int)
    if strata is None:
        return np.stack([rng.integers(0, n, size=n) for _ in range(n_boot)])
    # _resample_indices, with each stratum's members found once instead of once per replicate
    st = np.asarray(strata)
    groups = [np.flatnonzero(st == value) for value in np.unique(st)]
    out = np.empty((n_boot, n), dtype=int)
    for b in range(n_boot):
        at = 0
        for members in groups:
            out[b, at : at + len(members)] = members[rng.integers(0, len(members), size=len(members))]
            at += len(members)
    return out


def _batched_cms(t: np.ndarray, p: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``(B, rows, cols)`` confusion matrices of B resampled (true, predicted) rows."""
    b = t.shape[0]
    flat = (np.arange(b)[:, None] * rows + t) * cols + p
    return np.bincount(flat.ravel(), minlength=b * rows * cols).reshape(b, rows, cols).astype(float)


def _batched_rates(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per replicate and class (rows of ``cm``): sensitivity and specificity; NaN where undefined.
    Columns past the rows (e.g. "no label") are predictions that are no class."""
    k = cm.shape[1]
    total = cm.sum(axis=(1, 2))[:, None]
    tp = np.diagonal(cm[:, :, :k], axis1=1, axis2=2)
    fn = cm.sum(axis=2) - tp
    fp = cm[:, :, :k].sum(axis=1) - tp
    tn = total - tp - fn - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tp + fn > 0, tp / (tp + fn), np.nan), np.where(tn + fp > 0, tn / (tn + fp), np.nan)


def _batched_midranks(s: np.ndarray) -> np.ndarray:
    """:func:`_midranks` of every row of ``s`` at once."""
    b, n = s.shape
    order = np.argsort(s, axis=1, kind="stable")
    ss = np.take_along_axis(s, order, axis=1)
    pos = np.broadcast_to(np.arange(n), (b, n))
    differs = ss[:, 1:] != ss[:, :-1]
    starts = np.ones((b, n), dtype=bool)
    starts[:, 1:] = differs
    ends = np.ones((b, n), dtype=bool)
    ends[:, :-1] = differs
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, pos, n)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty((b, n))
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=1)
    return ranks


def _batched_auc(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """:func:`roc_auc` of every row at once (NaN where a row has no positive or no negative)."""
    n_pos = positive.sum(axis=1).astype(float)
    n_neg = positive.shape[1] - n_pos
    u = (_batched_midranks(scores) * positive).sum(axis=1) - n_pos * (n_pos + 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def single_run_cis(
    y_true: Sequence[int],
    probs: np.ndarray,
    n_classes: int,
    *,
    y_pred: Sequence[int] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """:func:`metric_cis` of one run (equal to it: the same resamples), vectorised, plus the CIs
    of each class's sensitivity and specificity (``sensitivity``, ``specificity``: one interval
    per class).

    Why: the loop bootstrap costs seconds per thousand replicates, more than running a model on a
    hundred films; ``spinescan val`` must not take longer to score than to predict. ``y_pred``
    (default: the argmax) may hold ``n_classes`` for "no label" (wrong for every class);
    ``probs`` may be ``None`` when only the rates are wanted (the AUC is then NaN).
    """
    t = np.asarray(y_true, dtype=int)
    p = None if probs is None else np.asarray(probs, dtype=float)
    pred = np.asarray(p.argmax(axis=1) if y_pred is None else y_pred, dtype=int)
    cols = max(n_classes, int(pred.max()) + 1 if pred.size else n_classes)
    idx = bootstrap_indices(len(t), n_boot, seed, strata=t)
    stats: list[np.ndarray] = []
    for start in range(0, len(idx), BOOT_BLOCK):
        block = idx[start : start + BOOT_BLOCK]
        tb, pb = t[block], pred[block]
        cm = _batched_cms(tb, pb, n_classes, cols)
        sens, spec = _batched_rates(cm)
        acc = np.trace(cm[:, :, :n_classes], axis1=1, axis2=2) / cm.sum(axis=(1, 2))
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: an undefined figure
            bal = np.nanmean(sens, axis=1)
            tp = np.diagonal(cm[:, :, :n_classes], axis1=1, axis2=2)
            denom = 2 * tp + (cm[:, :, :n_classes].sum(axis=1) - tp) + (cm.sum(axis=2) - tp)
            f1 = np.nanmean(np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), np.nan), axis=1)
            if p is None:
                auc = np.full(len(block), np.nan)
            else:
                per_class = np.stack([_batched_auc(tb == c, p[block, c]) for c in range(p.shape[1])], axis=1)
                auc = np.nanmean(per_class, axis=1)
        stats.append(np.column_stack([acc, bal, f1, auc, sens, spec]))
    reps = np.vstack(stats) if stats else np.zeros((0, 4 + 2 * n_classes))
    out: dict[str, Any] = {name: percentile_ci(reps[:, i], level) for i, name in enumerate(CI_METRICS)}
    out["sensitivity"] = [percentile_ci(reps[:, 4 + c], level) for c in range(n_classes)]
    out["specificity"] = [percentile_ci(reps[:, 4 + n_classes + c], level) for c in range(n_classes)]
    return out


