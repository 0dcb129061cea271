"""Metrics against textbook answers on hand-made inputs (and scipy / scikit-learn where they agree)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spinescan import metrics as m


def test_confusion_matrix_and_derived_figures() -> None:
    y_true = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    y_pred = [0, 0, 0, 1, 1, 1, 2, 2, 2, 0]
    cm = m.confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[3, 1, 0], [0, 2, 1], [1, 0, 2]]
    assert m.accuracy_from_cm(cm) == pytest.approx(7 / 10)
    assert m.accuracy(y_true, y_pred) == pytest.approx(0.7)
    sens, spec = m.sensitivity_specificity(cm)
    np.testing.assert_allclose(sens, [3 / 4, 2 / 3, 2 / 3])
    # Specificity of class 0: TN = images of class 1/2 not called 0 = 5, FP = 1.
    np.testing.assert_allclose(spec, [5 / 6, 6 / 7, 6 / 7])
    assert m.balanced_accuracy_from_cm(cm) == pytest.approx((3 / 4 + 2 / 3 + 2 / 3) / 3)
    f1 = [2 * 3 / (6 + 1 + 1), 2 * 2 / (4 + 1 + 1), 2 * 2 / (4 + 1 + 1)]
    assert m.macro_f1_from_cm(cm) == pytest.approx(np.mean(f1))


def test_confusion_metrics_agree_with_sklearn() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 3, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 3, 200))
    assert m.balanced_accuracy(y_true, y_pred, 3) == pytest.approx(sk.balanced_accuracy_score(y_true, y_pred))
    assert m.macro_f1(y_true, y_pred, 3) == pytest.approx(sk.f1_score(y_true, y_pred, average="macro"))


def test_auc_by_hand_with_ties() -> None:
    # Positives 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8>0.4, 0.8>0.1, 0.4=0.4, 0.4>0.1) -> 3.5/4.
    assert m.roc_auc([1, 1, 0, 0], [0.8, 0.4, 0.4, 0.1]) == pytest.approx(0.875)
    assert m.roc_auc([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert m.roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert math.isnan(m.roc_auc([1, 1], [0.2, 0.3]))


def test_roc_curve_area_equals_auc() -> None:
    rng = np.random.default_rng(0)
    pos = rng.random(300) < 0.4
    scores = np.round(rng.random(300) + 0.6 * pos, 1)  # rounding makes many ties
    fpr, tpr = m.roc_curve(pos, scores)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(m.roc_auc(pos, scores))
    sk = pytest.importorskip("sklearn.metrics")
    assert m.roc_auc(pos, scores) == pytest.approx(sk.roc_auc_score(pos, scores))


def test_ovr_auc_three_classes_matches_sklearn() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 150)
    logits = rng.normal(size=(150, 3)) + 1.5 * np.eye(3)[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    macro, per_class = m.ovr_auc(y, probs)
    assert macro == pytest.approx(sk.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert len(per_class) == 3


def test_ece_by_hand() -> None:
    # Bin (0.5, 0.6]: 2 images, conf 0.55 and 0.55, 1 correct -> |0.5 - 0.55| = 0.05.
    # Bin (0.9, 1.0]: 2 images, conf 0.95 each, both correct -> |1 - 0.95| = 0.05.
    probs = np.array([[0.55, 0.45], [0.45, 0.55], [0.95, 0.05], [0.05, 0.95]])
    y = np.array([0, 0, 0, 1])
    ece, bins = m.calibration(y, probs, n_bins=10)
    assert ece == pytest.approx(0.5 * 0.05 + 0.5 * 0.05)
    assert sum(b.count for b in bins) == 4
    assert bins[5].count == 2 and bins[5].accuracy == pytest.approx(0.5)
    assert bins[9].count == 2 and bins[9].confidence == pytest.approx(0.95)
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert m.calibration([0, 1], perfect)[0] == 0.0


def test_mcnemar_exact_textbook_and_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    assert m.mcnemar_exact_p(1, 9) == pytest.approx(0.021484375)  # 2 * 11 / 1024
    assert round(m.mcnemar_exact_p(1, 9), 4) == 0.0215
    assert m.mcnemar_exact_p(0, 0) == 1.0
    assert m.mcnemar_exact_p(5, 5) == 1.0
    for b, c in [(1, 9), (3, 12), (7, 2), (0, 6), (20, 31)]:
        assert m.mcnemar_exact_p(b, c) == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue)
    a = [True] * 5 + [True] * 1 + [False] * 9 + [False] * 2
    bb = [True] * 5 + [False] * 1 + [True] * 9 + [False] * 2
    test = m.mcnemar_exact(a, bb)
    assert (test.b, test.c) == (1, 9) and test.p_value == pytest.approx(0.021484375)


def test_bootstrap_ci_of_a_proportion_is_near_the_normal_interval() -> None:
    correct = np.array([1] * 80 + [0] * 20, dtype=float)
    lo, hi = m.bootstrap_ci(lambda x: float(x.mean()), correct, n_boot=4000, seed=0)
    half = 1.96 * math.sqrt(0.8 * 0.2 / 100)  # Wald interval 0.8 +/- 0.078
    assert lo == pytest.approx(0.8 - half, abs=0.015)
    assert hi == pytest.approx(0.8 + half, abs=0.015)
    assert m.bootstrap_ci(lambda x: float(x.mean()), correct, n_boot=500, seed=7) == m.bootstrap_ci(
        lambda x: float(x.mean()), correct, n_boot=500, seed=7
    )


def test_stratified_bootstrap_keeps_classes_and_constant_metric_has_zero_width() -> None:
    y = np.array([0] * 3 + [1] * 50)
    scores = np.r_[np.linspace(0, 0.2, 3), np.linspace(0.5, 1, 50)]  # perfectly separated
    lo, hi = m.bootstrap_ci(lambda t, s: m.roc_auc(t == 1, s), y, scores, n_boot=300, strata=y)
    assert (lo, hi) == (1.0, 1.0)  # no replicate lost class 0, so AUC is always defined


def test_paired_bootstrap_diff() -> None:
    a = np.array([1] * 90 + [0] * 10, dtype=bool)
    b = a.copy()
    b[:20] = False  # B is wrong on 20 images A gets right
    diff, lo, hi = m.paired_bootstrap_diff(a, b, n_boot=2000, seed=0)
    assert diff == pytest.approx(0.2)
    assert 0.1 < lo < 0.2 < hi < 0.3
    same, lo0, hi0 = m.paired_bootstrap_diff(a, a, n_boot=200)
    assert (same, lo0, hi0) == (0.0, 0.0, 0.0)  # identical classifiers: no paired uncertainty


def test_multi_run_ci_contains_the_mean_and_shrinks_with_more_runs() -> None:
    rng = np.random.default_rng(0)
    runs = []
    for _ in range(4):
        y = rng.integers(0, 2, 60)
        p1 = np.clip(0.3 * y + 0.7 * rng.random(60), 0, 1)  # about 80% accurate
        runs.append((y, np.c_[1 - p1, p1]))
    one = m.metric_cis(runs[:1], 2, n_boot=300)
    four = m.metric_cis(runs, 2, n_boot=300)
    for name in m.CI_METRICS:
        assert one[name][0] <= one[name][1]
    assert (four["accuracy"][1] - four["accuracy"][0]) < (one["accuracy"][1] - one["accuracy"][0])
    mean_acc = np.mean([m.accuracy(y, p.argmax(1)) for y, p in runs])
    assert four["accuracy"][0] <= mean_acc <= four["accuracy"][1]


def test_classification_report_is_consistent_with_its_confusion_matrix() -> None:
    y = np.array([0, 0, 1, 1, 1, 2])
    probs = np.array(
        [[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]]
    )
    rep = m.classification_report(y, probs, ["healthy", "kyphosis", "lordosis"])
    cm = np.array(rep["confusion_matrix"])
    assert cm.sum() == rep["n"] == 6
    assert rep["accuracy"] == pytest.approx(np.trace(cm) / cm.sum()) == pytest.approx(4 / 6)
    assert rep["sensitivity"]["kyphosis"] == pytest.approx(2 / 3)
    assert rep["specificity"]["lordosis"] == pytest.approx(4 / 5)


def test_summarize_and_mean_sd() -> None:
    s = m.summarize([0.9, 0.8, 1.0, float("nan")])
    assert s["mean"] == pytest.approx(0.9) and s["worst"] == 0.8 and s["n"] == 3
    assert s["sd"] == pytest.approx(0.1)
    assert m.mean_sd([0.5]) == (0.5, 0.0)


def test_collapsed_corner_pairs_counts_corners_put_on_one_spot() -> None:
    # 17 upright vertebrae, 20 px wide and 10 px high, 15 px apart
    true = np.array([[(x, 15 * v + y) for y in (0, 10) for x in (0, 20)] for v in range(17)], float).reshape(
        68, 2
    )
    assert m.collapsed_corner_pairs(true, true) == (0, 68)
    pred = true.copy()
    pred[4 * 3 + 0] = pred[4 * 3 + 1] = (10.0, 45.0)  # T4's top corners on its endplate's middle
    assert m.collapsed_corner_pairs(pred, true) == (1, 68)
    pred[4 * 10 + 2] = pred[4 * 10 + 0] + (1.0, 3.0)  # T11's bottom-left 3 px under its top-left
    assert m.collapsed_corner_pairs(pred, true) == (2, 68)
    pred[5] = np.nan  # a point the model calls not visible: its two pairs are not counted
    assert m.collapsed_corner_pairs(pred, true) == (2, 66)
    # and the summary reports the share over every film
    summary = m.landmark_summary(
        [pred, true], [true, true], [100, 100], [{}, {}], [{}, {}], ["a", "a"], ["a", "a"]
    )
    assert summary["collapsed_pairs"] == pytest.approx(2 / (66 + 68))
