"""Shortcut probes: how far does a trivial classifier get without looking at the spine?

With a few dozen films per class, a CNN can score well by reading how a film was framed (its
width, its padding, its exposure) instead of the curvature. On the real AP films every healthy
film is a narrow spine crop while most scoliosis films are full-frame, so film width/height alone
separates the classes (issue 7). A probe makes that floor visible: a cross-validated logistic
regression on image geometry and global intensity statistics, reported beside the CNN. A CNN
that does not clearly beat its probe has not shown that it reads the spine.

Two probes are run: ``geometry`` (width/height ratio, width, height) and ``geometry+intensity``
(those plus mean, SD and a 16-bin histogram of the grey levels). Intensities are scaled by the
dtype's range (8-bit / 16-bit), not per image, so a difference in bit depth or exposure between
sources counts as the shortcut it is. scikit-learn is imported lazily (training extra).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spinescan.radiograph.preprocess import to_grey

HIST_BINS = 16
GEOMETRY = ("aspect", "width", "height")
INTENSITY = ("mean", "std", *(f"hist_{i:02d}" for i in range(HIST_BINS)))
FEATURE_NAMES = (*GEOMETRY, *INTENSITY)
PROBES: dict[str, tuple[str, ...]] = {"geometry": GEOMETRY, "geometry+intensity": FEATURE_NAMES}


def image_features(image: np.ndarray) -> np.ndarray:
    """The probe's view of one decoded image: geometry then global intensity statistics."""
    grey = to_grey(np.asarray(image))
    height, width = grey.shape[:2]
    if np.issubdtype(grey.dtype, np.integer):
        scale = float(np.iinfo(grey.dtype).max)
    else:
        scale = 1.0
    x = np.clip(grey.astype(np.float32) / scale, 0.0, 1.0)
    hist, _ = np.histogram(x, bins=HIST_BINS, range=(0.0, 1.0))
    hist = hist / max(x.size, 1)
    return np.array([width / height, width, height, x.mean(), x.std(), *hist], dtype=np.float64)


def features_for(
    paths: Sequence[Any],
    reader: Callable[[Any], np.ndarray] | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Feature matrix ``(N, len(FEATURE_NAMES))`` for image files (read with ``imageio``)."""
    if reader is None:
        from spinescan.radiograph.imageio import read_image as reader
    rows = []
    for path in paths:
        rows.append(image_features(reader(path)))
        if progress:
            progress(1)
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))


def _cv_folds(
    x: np.ndarray, labels: np.ndarray, groups: np.ndarray | None, folds: int, seed: int
) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """Stratified folds; grouped by patient when some patient has several images."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    counts = np.bincount(labels)
    k = max(2, min(folds, int(counts[counts > 0].min())))
    if groups is not None and len(np.unique(groups)) < len(groups):
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        return list(splitter.split(x, labels, groups)), k
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(x, labels)), k


def cross_val_probs(
    features: np.ndarray,
    labels: Sequence[int],
    n_classes: int,
    *,
    folds: int = 5,
    seed: int = 0,
    groups: Sequence[str] | None = None,
) -> tuple[np.ndarray, int]:
    """Out-of-fold class probabilities of a standardised logistic regression.

    Every image is scored by a probe that never saw it (nor, with ``groups``, its patient), so
    the probe's accuracy is as honest as the CNN's test accuracy. Returns (probs, folds used).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(labels, dtype=int)
    x = np.asarray(features, dtype=np.float64)
    probs = np.full((len(y), n_classes), np.nan)
    counts = np.bincount(y)
    if (counts > 0).sum() < 2 or counts[counts > 0].min() < 2:
        return probs, 0  # nothing a cross-validated classifier can learn from
    g = None if groups is None else np.asarray(groups)
    splits, k = _cv_folds(x, y, g, folds, seed)
    for train_idx, test_idx in splits:
        if len(np.unique(y[train_idx])) < 2:
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
        model.fit(x[train_idx], y[train_idx])
        fold_probs = np.zeros((len(test_idx), n_classes))
        fold_probs[:, model.classes_] = model.predict_proba(x[test_idx])
        probs[test_idx] = fold_probs
    return probs, k


@dataclass
class ProbeResult:
    """Out-of-fold predictions of one probe over every image of a task."""

    name: str
    features: tuple[str, ...]
    classes: tuple[str, ...]
    files: list[str]
    labels: np.ndarray
    probs: np.ndarray
    folds: int
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {f: i for i, f in enumerate(self.files)}

    def subset(self, files: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Labels and probabilities for the given files (those the probe scored)."""
        rows = [self.index[f] for f in files if f in self.index]
        rows = [r for r in rows if not np.isnan(self.probs[r]).any()]
        return self.labels[rows], self.probs[rows]


def run_probes(
    files: Sequence[str],
    labels: Sequence[int],
    features: np.ndarray,
    classes: Sequence[str],
    *,
    folds: int = 5,
    seed: int = 0,
    groups: Sequence[str] | None = None,
) -> list[ProbeResult]:
    """Every probe in :data:`PROBES` on one task's images, given their feature matrix."""
    results = []
    y = np.asarray(labels, dtype=int)
    for name, names in PROBES.items():
        cols = [FEATURE_NAMES.index(n) for n in names]
        probs, k = cross_val_probs(features[:, cols], y, len(classes), folds=folds, seed=seed, groups=groups)
        results.append(ProbeResult(name, tuple(names), tuple(classes), list(files), y, probs, k))
    return results
