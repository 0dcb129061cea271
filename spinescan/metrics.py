"""Evaluation metrics in plain numpy, written out so that each formula can be checked by hand.

The benchmark has to convince a reviewer of a medical-imaging paper (CLAIM / TRIPOD-AI), so
everything a reviewer asks for lives here: the confusion matrix and the figures derived from it
(accuracy, balanced accuracy, macro-F1, per-class sensitivity and specificity), one-vs-rest ROC-AUC
(Mann-Whitney form, ties counted as one half), calibration (expected calibration error and the
reliability bins behind it), seeded percentile-bootstrap confidence intervals, a paired bootstrap
for the difference of two classifiers on the same images, and the exact McNemar test.

Conventions: labels are integer class indices ``0..K-1``; ``probs`` is an ``(N, K)`` array of
class probabilities; confusion matrices have true classes in rows and predictions in columns.
A metric that is undefined on the data (AUC with one class present, a class with no images) is
``nan`` rather than an exception, so that one empty subgroup does not sink a whole report.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Metric = Callable[..., float]


# -- confusion-matrix metrics --------------------------------------------------------------------
def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """Counts ``cm[t, p]`` of images of true class ``t`` predicted as ``p``."""
    t = np.asarray(y_true, dtype=int)
    p = np.asarray(y_pred, dtype=int)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape} vs {p.shape}")
    cm = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(cm, (t, p), 1)
    return cm


def accuracy_from_cm(cm: np.ndarray) -> float:
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def sensitivity_specificity(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class, one-vs-rest: sensitivity TP/(TP+FN) and specificity TN/(TN+FP).

    A class without positives (or without negatives) gets ``nan`` for the undefined figure.
    """
    cm = np.asarray(cm, dtype=float)
    total = cm.sum()
    tp = np.diag(cm)
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    tn = total - tp - fn - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        spec = np.where(tn + fp > 0, tn / (tn + fp), np.nan)
    return sens, spec


def balanced_accuracy_from_cm(cm: np.ndarray) -> float:
    """Mean per-class recall over the classes present (sklearn's definition)."""
    sens, _ = sensitivity_specificity(cm)
    present = ~np.isnan(sens)
    return float(sens[present].mean()) if present.any() else float("nan")


def macro_f1_from_cm(cm: np.ndarray) -> float:
    """Unweighted mean of per-class F1 = 2TP / (2TP + FP + FN) over classes seen in truth or output.

    A class that is neither present nor predicted is left out rather than counted as 0 or 1.
    """
    cm = np.asarray(cm, dtype=float)
    tp = np.diag(cm)
    fn = cm.sum(axis=1) - tp
    fp = cm.sum(axis=0) - tp
    denom = 2 * tp + fp + fn
    seen = denom > 0
    if not seen.any():
        return float("nan")
    return float((2 * tp[seen] / denom[seen]).mean())


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    return float((t == p).mean()) if t.size else float("nan")


def balanced_accuracy(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> float:
    return balanced_accuracy_from_cm(confusion_matrix(y_true, y_pred, n_classes))


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> float:
    return macro_f1_from_cm(confusion_matrix(y_true, y_pred, n_classes))


# -- ROC ---------------------------------------------------------------------------------------------
def roc_auc(positive: Sequence[bool], scores: Sequence[float]) -> float:
    """Binary ROC-AUC as the Mann-Whitney probability P(score_pos > score_neg), ties = 1/2.

    Computed from mid-ranks, which is exactly the trapezoid area under the ROC curve.
    """
    pos = np.asarray(positive, dtype=bool)
    s = np.asarray(scores, dtype=float)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _midranks(s)
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks where tied values share the mean of their ranks."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts + 1  # rank of the first member of each tie group
    return (first + (counts - 1) / 2.0)[inverse]


def roc_curve(positive: Sequence[bool], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """ROC points (fpr, tpr) from (0, 0) to (1, 1), one step per distinct score threshold."""
    pos = np.asarray(positive, dtype=bool)
    s = np.asarray(scores, dtype=float)
    n_pos, n_neg = max(int(pos.sum()), 1), max(int((~pos).sum()), 1)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, pos_sorted = s[order], pos[order]
    tps = np.cumsum(pos_sorted)
    fps = np.cumsum(~pos_sorted)
    # Keep the last point of each run of tied scores: a threshold admits all ties at once.
    last = np.r_[np.diff(s_sorted) != 0, True] if len(s_sorted) else np.zeros(0, dtype=bool)
    fpr = np.r_[0.0, fps[last] / n_neg]
    tpr = np.r_[0.0, tps[last] / n_pos]
    return fpr, tpr


def ovr_auc(y_true: Sequence[int], probs: np.ndarray) -> tuple[float, list[float]]:
    """One-vs-rest AUC per class and their unweighted mean (over classes where it is defined).

    For two classes this is the ordinary AUC of the positive (second) class for every entry.
    """
    t = np.asarray(y_true, dtype=int)
    p = np.asarray(probs, dtype=float)
    per_class = [roc_auc(t == k, p[:, k]) for k in range(p.shape[1])]
    defined = [a for a in per_class if not math.isnan(a)]
    return (float(np.mean(defined)) if defined else float("nan")), per_class


# -- calibration -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    count: int
    confidence: float  # mean top-class probability in the bin (nan when empty)
    accuracy: float  # fraction correct in the bin (nan when empty)


def calibration(
    y_true: Sequence[int], probs: np.ndarray, n_bins: int = 10
) -> tuple[float, list[ReliabilityBin]]:
    """Expected calibration error of the top-class confidence, and its reliability bins.

    ECE = sum_b (n_b / N) * |accuracy_b - confidence_b| over equal-width bins of confidence
    (Guo et al. 2017). Bins are right-closed, ``(lo, hi]``, the first also includes 0.
    """
    t = np.asarray(y_true, dtype=int)
    p = np.asarray(probs, dtype=float)
    if t.size == 0:
        return float("nan"), []
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == t).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    bins: list[ReliabilityBin] = []
    ece = 0.0
    for b in range(n_bins):
        mask = idx == b
        n = int(mask.sum())
        if n:
            acc_b, conf_b = float(correct[mask].mean()), float(conf[mask].mean())
            ece += n / t.size * abs(acc_b - conf_b)
        else:
            acc_b = conf_b = float("nan")
        bins.append(ReliabilityBin(float(edges[b]), float(edges[b + 1]), n, conf_b, acc_b))
    return float(ece), bins


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


def _percentile_ci(values: np.ndarray, level: float) -> tuple[float, float]:
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
    return _percentile_ci(stats[:, 0], level)


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


# -- everything at once ----------------------------------------------------------------------------
def classification_report(
    y_true: Sequence[int], probs: np.ndarray, classes: Sequence[str], n_bins: int = 10
) -> dict[str, Any]:
    """All point metrics for one set of predictions (argmax decision), JSON-ready.

    The figures are computed from the confusion matrix reported beside them, so a reader (or a
    test) can recompute accuracy, sensitivity and specificity from ``confusion_matrix``.
    """
    t = np.asarray(y_true, dtype=int)
    p = np.asarray(probs, dtype=float)
    k = len(classes)
    cm = confusion_matrix(t, p.argmax(axis=1) if len(p) else np.zeros(0, int), k)
    sens, spec = sensitivity_specificity(cm)
    auc, auc_per_class = ovr_auc(t, p) if len(p) else (float("nan"), [float("nan")] * k)
    ece, bins = calibration(t, p, n_bins)
    return {
        "n": int(t.size),
        "accuracy": accuracy_from_cm(cm),
        "balanced_accuracy": balanced_accuracy_from_cm(cm),
        "macro_f1": macro_f1_from_cm(cm),
        "auc": auc,
        "ece": ece,
        "sensitivity": {c: float(s) for c, s in zip(classes, sens, strict=True)},
        "specificity": {c: float(s) for c, s in zip(classes, spec, strict=True)},
        "auc_per_class": {c: float(a) for c, a in zip(classes, auc_per_class, strict=True)},
        "confusion_matrix": cm.tolist(),
        "reliability": [b.__dict__ for b in bins],
    }


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
    return {name: _percentile_ci(stats[:, i], level) for i, name in enumerate(CI_METRICS)}


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
    out: dict[str, Any] = {name: _percentile_ci(reps[:, i], level) for i, name in enumerate(CI_METRICS)}
    out["sensitivity"] = [_percentile_ci(reps[:, 4 + c], level) for c in range(n_classes)]
    out["specificity"] = [_percentile_ci(reps[:, 4 + n_classes + c], level) for c in range(n_classes)]
    return out


# -- landmark models ------------------------------------------------------------------------------


def film_smape(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per film, the AASCE 2019 symmetric error in percent: ``100 * sum|p - t| / sum(p + t)`` over
    its angles (rows). A predicted angle that is missing (NaN) counts as 0, as the challenge scores
    a method that gives no angle; a film with a missing *true* angle is NaN (not scored); a film
    whose angles are all 0 and predicted 0 has no error."""
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    p = np.where(np.isnan(p), 0.0, p)
    num = np.abs(p - t).sum(axis=1)
    den = (p + t).sum(axis=1)
    out = np.where(den > 0, num / np.maximum(den, 1e-12), 0.0) * 100.0
    return np.where(np.isnan(t).any(axis=1), np.nan, out)


def smape(pred: np.ndarray, true: np.ndarray) -> float:
    """AASCE 2019 SMAPE in percent: :func:`film_smape` averaged over the films it scores."""
    per_film = film_smape(pred, true)
    return float(np.nanmean(per_film)) if np.isfinite(per_film).any() else float("nan")


#: A corner farther than this fraction of the film height from the expert's counts as off: the
#: literature's "more than 20 px" on the challenge's ~1000 px films.
FAR_CORNER = 0.02
#: Largest coronal Cobb angle at which scoliosis begins (SRS; spinescan.radiograph.thresholds, which the
#: foundation cannot import, holds the same figure).
COBB_CUT_DEG = 10.0


def corner_figures(pred: np.ndarray, true: np.ndarray, height: float) -> tuple[float, int, int]:
    """One film's ``(mean corner error / film height, corners off, corners known)``.

    The error is over the corners both know (NaN when none); a corner the expert placed and the
    model did not (NaN) counts as off, so that calling points not visible never looks better."""
    p = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    t = np.asarray(true, dtype=np.float64).reshape(-1, 2)
    n = min(len(p), len(t))
    p, t = p[:n], t[:n]
    known = np.isfinite(t).all(axis=1)
    seen = known & np.isfinite(p).all(axis=1)
    d = np.hypot(*(p[seen] - t[seen]).T) / float(height)
    err = float(d.mean()) if len(d) else float("nan")
    return err, int((d > FAR_CORNER).sum() + (known & ~seen).sum()), int(known.sum())


@dataclass(frozen=True)
class FilmFigures:
    """Per-film figures of a landmark model on a set of AP films (arrays of one length), from which
    :func:`aasce_figures` computes the summary and any bootstrap replicate."""

    smape: np.ndarray  # per film, over the challenge's three angles (NaN: true angles unknown)
    pred_largest: np.ndarray  # predicted largest Cobb angle, 0 where the model gave none
    true_largest: np.ndarray
    landmark_error: np.ndarray  # mean corner error / film height (NaN: no corner in common)
    corners_far: np.ndarray  # corners more than FAR_CORNER x height off (or missing)
    corners_known: np.ndarray


def film_figures(
    pred_angles: np.ndarray,
    true_angles: np.ndarray,
    pred_largest: Sequence[float | None],
    true_largest: Sequence[float | None],
    pred_landmarks: Sequence[np.ndarray],
    true_landmarks: Sequence[np.ndarray],
    heights: Sequence[float],
) -> FilmFigures:
    """:class:`FilmFigures` from ``(N, 3)`` angle arrays (NaN = missing) and the films' corners."""
    films = zip(pred_landmarks, true_landmarks, heights, strict=True)
    corners = [corner_figures(p, t, h) for p, t, h in films]
    return FilmFigures(
        smape=film_smape(pred_angles, true_angles),
        pred_largest=np.array([0.0 if v is None else float(v) for v in pred_largest]),
        true_largest=np.array([np.nan if v is None else float(v) for v in true_largest]),
        landmark_error=np.array([c[0] for c in corners], dtype=np.float64),
        corners_far=np.array([c[1] for c in corners], dtype=np.float64),
        corners_known=np.array([c[2] for c in corners], dtype=np.float64),
    )


AASCE_FIGURES = ("smape", "largest_cobb_mae", "landmark_error", "corners_far", "sensitivity", "specificity")


def aasce_figures(f: FilmFigures, idx: np.ndarray | None = None, cut: float = COBB_CUT_DEG) -> list[float]:
    """The :data:`AASCE_FIGURES` of films ``idx`` (all by default; repeats allowed, for bootstrap
    replicates): mean SMAPE, largest-Cobb MAE (a missing prediction counts as 0 deg, as in SMAPE),
    mean landmark error (fraction of film height), share of corners off, and sensitivity /
    specificity of "largest Cobb >= ``cut``" (NaN where undefined)."""
    i = np.arange(len(f.smape)) if idx is None else np.asarray(idx, dtype=int)
    sm, pl, tl = f.smape[i], f.pred_largest[i], f.true_largest[i]
    le, far, known = f.landmark_error[i], f.corners_far[i], f.corners_known[i]
    has = ~np.isnan(tl)
    pos, neg = has & (tl >= cut), has & (tl < cut)

    def mean(x: np.ndarray) -> float:
        x = x[~np.isnan(x)]
        return float(x.mean()) if len(x) else float("nan")

    return [
        mean(sm),
        mean(np.abs(pl[has] - tl[has])),
        mean(le),
        float(far.sum() / known.sum()) if known.sum() else float("nan"),
        float((pl[pos] >= cut).mean()) if pos.any() else float("nan"),
        float((pl[neg] < cut).mean()) if neg.any() else float("nan"),
    ]


def cluster_bootstrap(
    metric: Callable[[np.ndarray], Sequence[float]],
    clusters: Sequence[Any],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[tuple[float, float]]:
    """Percentile CIs of each statistic ``metric(indices)`` returns, resampling whole clusters
    (patients: one patient's films are not independent) with replacement. Seeded."""
    labels = np.asarray(list(clusters))
    _, inverse = np.unique(labels, return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(int(inverse.max()) + 1)] if len(labels) else []
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(members), size=len(members)) if members else np.zeros(0, dtype=int)
        idx = np.concatenate([members[k] for k in pick]) if len(pick) else np.zeros(0, dtype=int)
        rows.append(np.asarray(metric(idx), dtype=np.float64))
    stats = np.array(rows, dtype=np.float64).reshape(n_boot, -1)
    return [_percentile_ci(stats[:, k], level) for k in range(stats.shape[1])]


#: A vertebra's corner pairs: its two endplates (0-1, 2-3) and its two sides (0-2, 1-3), AASCE order.
CORNER_PAIRS = ((0, 1), (2, 3), (0, 2), (1, 3))


def collapsed_corner_pairs(pred: np.ndarray, true: np.ndarray) -> tuple[int, int]:
    """How many of a film's vertebral corner pairs the model collapsed (predicted less than half as
    far apart as they are), out of the pairs both know; ``pred`` and ``true`` are (>=68, 2).

    Why count it: a heatmap landmark model can put two corners of one vertebra on the same spot
    (a heatmap with a mode on each side reads out as their mean). The corner error barely shows it
    (half a vertebra's width on two points) and the mid-line read-out hides it, but the endplate
    it leaves has no direction, so it is the first thing to look at when a run's angles are off.
    """
    p = np.asarray(pred, dtype=np.float64).reshape(-1, 2)[:68].reshape(17, 4, 2)
    t = np.asarray(true, dtype=np.float64).reshape(-1, 2)[:68].reshape(17, 4, 2)
    collapsed = known = 0
    for a, b in CORNER_PAIRS:
        dp = np.hypot(*(p[:, a] - p[:, b]).T)
        dt = np.hypot(*(t[:, a] - t[:, b]).T)
        ok = np.isfinite(dp) & np.isfinite(dt) & (dt > 0)
        known += int(ok.sum())
        collapsed += int((dp[ok] < 0.5 * dt[ok]).sum())
    return collapsed, known


def landmark_summary(
    pred_landmarks: Sequence[np.ndarray],
    true_landmarks: Sequence[np.ndarray],
    heights: Sequence[int],
    pred_angles: Sequence[dict[str, float | None]],
    true_angles: Sequence[dict[str, float | None]],
    labels: Sequence[str],
    pred_labels: Sequence[str | None],
    smape_angles: Sequence[str] | None = None,
    largest: str | None = None,
) -> dict[str, Any]:
    """A landmark model's figures on one set of films.

    * ``landmark_error``: mean distance between predicted and true corners as a fraction of the
      film's height, over the points both know (a point the model calls not visible is counted in
      ``landmarks_missing``, not in the error); ``corners_far``: the share of known corners more
      than :data:`FAR_CORNER` of the film height off, a missing one counting as off;
    * per angle: mean absolute error (``mae``), bias and how many films had no measurement;
    * ``smape``: the AASCE metric over ``smape_angles`` (default: every angle; for AP models the
      challenge's three), over the films whose true angles are known, a missing predicted angle
      counting as 0 (:func:`film_smape`);
    * with ``largest`` (the name of the largest Cobb angle, AP): ``largest_cobb_mae`` (a missing
      prediction counts as 0 deg) and ``sensitivity`` / ``specificity`` of ``largest >= 10 deg``;
    * ``label_accuracy``: the label that follows from the measured angles against the true label
      (a film without a label, e.g. an angle not measured, counts as wrong);
    * ``collapsed_pairs``: the share of vertebral corner pairs the model collapsed
      (:func:`collapsed_corner_pairs`), over every film.
    """
    errs, missing = [], []
    n_collapsed = n_pairs = 0
    for p, t, h in zip(pred_landmarks, true_landmarks, heights, strict=True):
        c, k = collapsed_corner_pairs(p, t)
        n_collapsed, n_pairs = n_collapsed + c, n_pairs + k
        p, t = np.asarray(p, dtype=np.float64).reshape(-1, 2), np.asarray(t, dtype=np.float64).reshape(-1, 2)
        known = np.isfinite(t).all(axis=1)
        seen = known & np.isfinite(p).all(axis=1)
        missing.append(float((known & ~seen).sum()) / max(1, int(known.sum())))
        if seen.any():
            errs.append(float(np.mean(np.hypot(*(p[seen] - t[seen]).T)) / float(h)))
    names = list(pred_angles[0]) if pred_angles else []
    angles: dict[str, Any] = {}
    for n in names:
        pairs = [(p[n], t[n]) for p, t in zip(pred_angles, true_angles, strict=True)
                 if p[n] is not None and t[n] is not None]  # fmt: skip
        a = np.array(pairs, dtype=np.float64).reshape(-1, 2)
        angles[n] = {
            "mae": float(np.mean(np.abs(a[:, 0] - a[:, 1]))) if len(a) else None,
            "bias": float(np.mean(a[:, 0] - a[:, 1])) if len(a) else None,
            "n": len(a),
            "not_measured": sum(p[n] is None for p in pred_angles),
        }
    use = list(smape_angles) if smape_angles else names

    def table(rows: Sequence[dict[str, float | None]]) -> np.ndarray:
        cells = [[np.nan if r.get(n) is None else r[n] for n in use] for r in rows]
        return np.array(cells, dtype=np.float64).reshape(len(rows), len(use))

    films = film_figures(
        table(pred_angles),
        table(true_angles),
        [p.get(largest) if largest else None for p in pred_angles],
        [t.get(largest) if largest else None for t in true_angles],
        pred_landmarks,
        true_landmarks,
        heights,
    )
    figures = dict(zip(AASCE_FIGURES, aasce_figures(films), strict=True))
    scored = np.isfinite(films.smape)
    correct = [p is not None and p == t for p, t in zip(pred_labels, labels, strict=True)]

    def num(key: str) -> float | None:
        return None if math.isnan(figures[key]) else figures[key]

    out = {
        "n": len(labels),
        "landmark_error": float(np.mean(errs)) if errs else None,
        "landmark_error_median": float(np.median(errs)) if errs else None,
        "landmarks_missing": float(np.mean(missing)) if missing else None,
        "corners_far": num("corners_far"),
        "angles": angles,
        "smape": num("smape") if use and scored.any() else None,
        "smape_angles": use,
        "smape_films": int(scored.sum()),
        "label_accuracy": float(np.mean(correct)) if correct else None,
        "collapsed_pairs": n_collapsed / n_pairs if n_pairs else None,
        "unlabelled": sum(p is None for p in pred_labels),
    }
    if largest:
        out.update({k: num(k) for k in ("largest_cobb_mae", "sensitivity", "specificity")})
    return out
