"""Classification figures from one set of predictions: the confusion matrix and what follows from it
(accuracy, balanced accuracy, macro-F1, per-class sensitivity and specificity), one-vs-rest ROC-AUC
(Mann-Whitney form, ties counted as one half) and calibration (ECE and its reliability bins).

Conventions: see :mod:`spinescan.metrics`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


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


