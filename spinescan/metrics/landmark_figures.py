"""A landmark model's figures: the AASCE 2019 SMAPE, corner errors, the largest Cobb angle's error and
the scoliosis call it implies, their patient-cluster bootstrap, collapsed corner pairs, and the
summary training, ``val`` and the landmark study report."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spinescan.metrics.bootstrap import percentile_ci


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
    return [percentile_ci(stats[:, k], level) for k in range(stats.shape[1])]


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
