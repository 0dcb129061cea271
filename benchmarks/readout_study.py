"""Which AP read-out of a landmark model's corners measures Cobb angles most robustly? (issue 14)

    # 1. run each cobb model once over its phantom val+test films and the real AP dev films; cache
    nice -n 10 python benchmarks/readout_study.py cache --data /tmp/lm3/phantoms3 \
        --runs /tmp/lm3/runs3/cobb/20261201-182227-s0 /tmp/lm3/runs3/cobb/20261201-185005-s1 \
               /tmp/lm3/runs3/cobb/20261201-194230-s2 \
        --real /work/shared/data/real --cache /tmp/readout_cache
    # 2. score every candidate read-out from the cache (numpy only, seconds)
    nice -n 10 python benchmarks/readout_study.py score --cache /tmp/readout_cache \
        --out benchmarks/results/landmarks/readout_study.json

The cache holds, per film, the model's raw output (K x 4: normalised x, y, visibility logit,
heatmap spread in input px^2), the film's placement and size, and for phantoms the manifest's
corners and angles. ``score`` decodes the corners exactly as :func:`spinescan.radiograph.measure.
read_landmarks` does and reads them with each candidate, reporting per seed:

* phantom val and test: largest-Cobb MAE, PT/MT/TL MAE and the 10-degree label's accuracy;
* real AP dev films (labels only): AUC of ``cobb_deg`` for scoliosis vs healthy on the
  spine_crop subset, the 10-degree threshold's accuracy on spine_crop and on all films, and the
  median ``cobb_deg`` of healthy and of scoliosis films.

Selection discipline: a candidate is chosen on phantom *val* and on how it behaves on the real
films; any choice informed by the real dev films makes their figures optimistic.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable
from dataclasses import astuple
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = 1


# --- 1. cache ---------------------------------------------------------------------------------------


def cache(args: argparse.Namespace) -> int:
    from spinescan.radiograph.angles import manifest_angles
    from spinescan.radiograph.imageio import read_image
    from spinescan.radiograph.preprocess import preprocess_placed
    from spinescan.training import inference
    from spinescan.training.prepare import load_view_samples
    from spinescan.training.runs import RunDir, load_run
    from spinescan.training.tasks import manifest_points

    args.cache.mkdir(parents=True, exist_ok=True)
    real_root = None if args.real is None else args.real / "fraiwan-kauh-dev"
    real_rows: list[dict[str, str]] = []
    if real_root is not None:
        with open(real_root / "manifest.csv", newline="", encoding="utf-8") as fh:
            real_rows = list(csv.DictReader(fh))
    for run_dir in args.runs:
        t0 = time.perf_counter()
        rundir = RunDir(run_dir)
        run = load_run(run_dir)
        spec = run.spec
        split = rundir.read_split()
        _, view_samples = load_view_samples(args.data, spec)
        parts = split.assign(view_samples)
        model = inference.load_run_model(run_dir)
        blob: dict[str, Any] = {"input_hw": np.array(spec.input_size[:2])}
        meta: dict[str, Any] = {
            "schema": SCHEMA,
            "run": str(run_dir),
            "measurements": list(spec.measurements),
        }

        def run_films(
            images: list[np.ndarray], spec: Any = spec, model: Any = model
        ) -> tuple[np.ndarray, ...]:
            xs, pls, hws = [], [], []
            for img in images:
                x, pl = preprocess_placed(img, spec.input_size, spec.preprocessing)
                xs.append(x)
                pls.append(astuple(pl))
                hws.append(img.shape[:2])
            out = inference.predict_arrays(model, np.stack(xs), 32)
            return out, np.array(pls), np.array(hws)

        for part in ("val", "test"):
            samples = parts[part]
            out, pls, hws = run_films([read_image(s.path) for s in samples])
            truths = [manifest_points(s) for s in samples]
            true = [
                manifest_angles(spec.view, spec.measurements, s.extra, lm, sac, tuple(hw))
                for s, (lm, sac), hw in zip(samples, truths, hws, strict=True)
            ]
            blob[f"{part}_out"], blob[f"{part}_placement"], blob[f"{part}_hw"] = out, pls, hws
            blob[f"{part}_true_lm"] = np.stack([t[0] for t in truths])
            blob[f"{part}_true_angles"] = np.array(
                [[np.nan if a[n] is None else a[n] for n in spec.measurements] for a in true]
            )
            meta[f"{part}_files"] = [s.rel for s in samples]
            meta[f"{part}_labels"] = [s.label for s in samples]
            print(f"{run_dir.name} {part}: {len(samples)} films", flush=True)
        if real_rows:
            out, pls, hws = run_films([read_image(real_root / r["file"]) for r in real_rows])
            blob["real_out"], blob["real_placement"], blob["real_hw"] = out, pls, hws
            meta["real_files"] = [r["file"] for r in real_rows]
            meta["real_labels"] = [r["label"] for r in real_rows]
            meta["real_framing"] = [r.get("framing", "") for r in real_rows]
        name = run_dir.name
        np.savez_compressed(args.cache / f"{name}.npz", **blob)
        (args.cache / f"{name}.json").write_text(json.dumps(meta))
        print(f"{name}: cached in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


# --- 2. score ---------------------------------------------------------------------------------------
Tilts = Callable[[np.ndarray, np.ndarray, int, int], np.ndarray]


def decode_film(
    out: np.ndarray, placement: np.ndarray, input_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Corners in film pixels (68, 2; NaN where not visible), as ``read_landmarks`` decodes them,
    and each vertebra's mean heatmap spread (17,) in input px^2 (NaN where the model has none)."""
    from spinescan.radiograph.landmark_codec import N_POINTS
    from spinescan.radiograph.measure import decode_output
    from spinescan.radiograph.preprocess import Placement

    o = np.asarray(out, dtype=np.float64)
    k = o.shape[0]
    d = decode_output(o, Placement(*[int(v) for v in placement]), input_hw)
    spread = np.full(N_POINTS, np.nan)
    if o.shape[1] > 3:
        spread[:k] = o[:, 3]
    return d.landmarks, spread[:68].reshape(17, 4).mean(axis=1)


def local_quadratic(
    t: np.ndarray, first: int, last: int, half: int = 2, w: np.ndarray | None = None
) -> np.ndarray:
    """At each vertebra of ``first..last``, a (weighted) least-squares quadratic over the ``2 half + 1``
    nearest vertebrae of the run (the end windows shifted inwards); ``half=2``, no weights is
    :func:`spinescan.radiograph.angles.smoothed_tilts`."""
    t = np.asarray(t, dtype=np.float64)
    out = t.copy()
    n = last - first + 1
    size = 2 * half + 1
    if n < size:
        return out
    ww = np.ones(len(out)) if w is None else np.asarray(w, dtype=np.float64)
    for i in range(first, last + 1):
        lo = min(max(i - half, first), last - size + 1)
        x = np.arange(lo, lo + size) - i
        a = np.stack([np.ones(size), x, x * x], axis=1)
        sw = np.sqrt(ww[lo : lo + size])
        coef = np.linalg.lstsq(a * sw[:, None], t[lo : lo + size] * sw, rcond=None)[0]
        out[i] = coef[0]
    return out


def bridge(t: np.ndarray, keep: np.ndarray, first: int, last: int) -> np.ndarray:
    """``t`` with the vertebrae not kept in ``first..last`` replaced by linear interpolation between
    the nearest kept ones (held constant beyond the end ones); unchanged if fewer than two kept."""
    out = np.asarray(t, dtype=np.float64).copy()
    idx = np.arange(first, last + 1)
    k = idx[keep[first : last + 1]]
    if len(k) < 2:
        return out
    out[first : last + 1] = np.interp(idx, k, out[k])
    return out


def midline_lengths(c: np.ndarray) -> np.ndarray:
    return np.hypot(*(((c[:, 1] + c[:, 3]) - (c[:, 0] + c[:, 2])) / 2.0).T)


def _mid(c: np.ndarray) -> np.ndarray:
    from spinescan.radiograph.vertebrae import midline_tilts

    return midline_tilts(c)


def t_raw(c, sp, fi, la):
    return _mid(c)


def t_sg(half: int) -> Tilts:
    return lambda c, sp, fi, la: local_quadratic(_mid(c), fi, la, half)


def t_short(frac: float) -> Tilts:
    def fn(c, sp, fi, la):
        ln = midline_lengths(c)
        keep = ln >= frac * np.median(ln[fi : la + 1])
        return local_quadratic(bridge(_mid(c), keep, fi, la), fi, la)

    return fn


def t_spread(k: float) -> Tilts:
    def fn(c, sp, fi, la):
        if not np.isfinite(sp[fi : la + 1]).all():
            return local_quadratic(_mid(c), fi, la)
        keep = sp <= k * np.median(sp[fi : la + 1])
        return local_quadratic(bridge(_mid(c), keep, fi, la), fi, la)

    return fn


def t_robust(r: float, base: Tilts | None = None) -> Tilts:
    def fn(c, sp, fi, la):
        t = _mid(c)
        s = (base or t_sg(2))(c, sp, fi, la)
        keep = np.abs(t - s) <= r
        return local_quadratic(bridge(t, keep, fi, la), fi, la)

    return fn


def t_wlen(power: float = 2.0, spread: bool = False, half: int = 2) -> Tilts:
    """Weighted local quadratic: a mid-line counts by its length^power (a tilt's error from
    independent corner errors scales as 1/length), divided by the spread if asked."""

    def fn(c, sp, fi, la):
        w = midline_lengths(c) ** power
        if spread and np.isfinite(sp).all():
            w = w / np.maximum(sp, 1e-6)
        return local_quadratic(_mid(c), fi, la, half, w)

    return fn


CROSSFIT = "crossfit"


def read_crossfit(lm: np.ndarray, image_size: tuple[int, int]) -> dict[str, Any]:
    """Selection-bias removal: the largest angle's end vertebrae chosen on one half of the corners
    and measured on the other (superior endplates, smoothed, choose; inferior measure; and the
    reverse; the mean of the two). A search for the largest of many noisy angles reads a straight
    spine high; an angle measured on corners it was not chosen on does not. ``cobb_deg`` only, on
    whole-spine films; the regional angles and partial films are today's read-out."""
    from dataclasses import replace

    from spinescan.radiograph import angles as A
    from spinescan.radiograph import coronal, vertebrae

    out = A.ap_angles(lm, image_size=image_size, readout=coronal.PREDICTION_READOUT)
    c = vertebrae.as_corners(lm)
    if not vertebrae.visible_vertebrae(c, image_size).all():
        return out
    top = coronal.smoothed_tilts(vertebrae.edge_angle(c[:, 0], c[:, 1]))
    bottom = coronal.smoothed_tilts(vertebrae.edge_angle(c[:, 2], c[:, 3]))
    d_top = np.triu(vertebrae.line_angle_between(top[:, None], top[None, :]))
    d_bottom = np.triu(vertebrae.line_angle_between(bottom[:, None], bottom[None, :]))
    i1, j1 = np.unravel_index(int(np.argmax(d_top)), d_top.shape)
    i2, j2 = np.unravel_index(int(np.argmax(d_bottom)), d_bottom.shape)
    value = (float(d_bottom[i1, j1]) + float(d_top[i2, j2])) / 2.0
    out["cobb_deg"] = replace(out["cobb_deg"], value=value)
    return out


def read_ap(
    lm: np.ndarray, image_size: tuple[int, int], spread: np.ndarray, tilt_fn: Tilts | str
) -> dict[str, Any]:
    """:func:`spinescan.radiograph.angles.ap_angles` with the tilts given by ``tilt_fn`` (the same run
    of visible vertebrae, curve search, regions and notes); ``"endplates"`` is the manifest's."""
    from spinescan.radiograph import angles as A
    from spinescan.radiograph import coronal, vertebrae

    if tilt_fn == CROSSFIT:
        return read_crossfit(lm, image_size)
    if isinstance(tilt_fn, str):
        return A.ap_angles(lm, image_size=image_size, readout=tilt_fn)
    c = vertebrae.as_corners(lm)
    ok = vertebrae.visible_vertebrae(c, image_size)
    run = A._longest_run(ok)
    if run is None or run[1] - run[0] + 1 < A.MIN_RUN:
        return {n: A.Angle(n, None, "short") for n in A.AP_ANGLES}
    first, last = run
    safe = np.where(np.isfinite(c), c, 0.0)
    tilt = tilt_fn(safe, spread, first, last)
    diff = vertebrae.line_angle_between(tilt[:, None], tilt[None, :])
    centres = safe.mean(axis=1)

    def split(a: int, b: int) -> list[Any]:
        if b - a < 1:
            return []
        sub = np.triu(diff[a : b + 1, a : b + 1], k=1)
        if float(sub.max()) <= 0.0:
            return []
        i, j = np.unravel_index(int(np.argmax(sub)), sub.shape)
        i, j = int(i) + a, int(j) + a
        curve = coronal.Curve(i, j, coronal._apex(centres, i, j), float(diff[i, j]))
        return [*split(a, i), curve, *split(j, b)]

    curves = split(first, last)
    out: dict[str, Any] = {}
    note = None if ok.all() else "partial"
    best = max(curves, key=lambda k: k.angle) if curves else None
    out["cobb_deg"] = A.Angle("cobb_deg", best.angle if best else 0.0, note=note)
    for name, (lo, hi) in A.REGIONS.items():
        if not ok[lo : hi + 1].all() or lo < first or hi > last:
            out[name] = A.Angle(name, None, "not visible")
            continue
        mine = [k for k in curves if A._region_of(k.apex) == name]
        out[name] = A.Angle(name, max(k.angle for k in mine) if mine else 0.0)
    return out


def _crosses(p1: np.ndarray, p2: np.ndarray, p3: np.ndarray, p4: np.ndarray) -> bool:
    """Whether segments p1-p2 and p3-p4 cross (proper intersection)."""

    def side(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
        return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    return side(p1, p2, p3) * side(p1, p2, p4) < 0 and side(p3, p4, p1) * side(p3, p4, p2) < 0


def implausible(c: np.ndarray, fi: int, la: int, bowtie: bool) -> np.ndarray:
    """Vertebrae of ``fi..la`` whose predicted outline cannot be a vertebra: top corners not above
    the bottom ones on both sides, centre out of order between its neighbours', height or spacing
    to a neighbour outside 0.5-2 x the film's median, and (``bowtie``) a self-intersecting outline
    (TL-TR-BR-BL)."""
    bad = np.zeros(len(c), dtype=bool)
    ctr = c.mean(axis=1)
    height = ((c[:, 2, 1] - c[:, 0, 1]) + (c[:, 3, 1] - c[:, 1, 1])) / 2.0
    gap = np.diff(ctr[:, 1])
    h_med = np.median(height[fi : la + 1])
    g_med = np.median(gap[fi:la]) if la > fi else 1.0
    for i in range(fi, la + 1):
        q = c[i]
        b = not (q[0, 1] < q[2, 1] and q[1, 1] < q[3, 1])
        b |= not (0.5 * h_med <= height[i] <= 2.0 * h_med)
        if i > fi:
            b |= not (0.5 * g_med <= gap[i - 1] <= 2.0 * g_med)
        if i < la:
            b |= not (0.5 * g_med <= gap[i] <= 2.0 * g_med)
        if bowtie:
            b |= _crosses(q[0], q[1], q[3], q[2]) or _crosses(q[1], q[3], q[2], q[0])
        bad[i] = b
    return bad


def t_plausible(bowtie: bool) -> Tilts:
    """Drop implausible outlines (:func:`implausible`), bridge their tilts, smooth over five."""

    def fn(c, sp, fi, la):
        keep = ~implausible(c, fi, la, bowtie)
        return local_quadratic(bridge(_mid(c), keep, fi, la), fi, la)

    return fn


def t_median3(c, sp, fi, la):
    """A running median of three (ends kept) before the five-vertebra quadratic: isolated spikes out."""
    t = _mid(c)
    m = t.copy()
    for i in range(fi + 1, la):
        m[i] = float(np.median(t[i - 1 : i + 2]))
    return local_quadratic(m, fi, la)


def noise_sd(t: np.ndarray, fi: int, la: int) -> float:
    """Robust SD (degrees) of the tilts about their five-vertebra quadratic: the film's tilt noise."""
    from spinescan.radiograph.coronal import smoothed_tilts

    r = t[fi : la + 1] - smoothed_tilts(t, fi, la)[fi : la + 1]
    return float(1.4826 * np.median(np.abs(r)))


def t_adaptive(steps: tuple[float, ...]) -> Tilts:
    """Half-window 2 + the number of ``steps`` (degrees) the film's tilt noise exceeds."""

    def fn(c, sp, fi, la):
        t = _mid(c)
        h = 2 + sum(noise_sd(t, fi, la) > s for s in steps)
        return local_quadratic(t, fi, la, h)

    return fn


def t_whittaker(lam: float, order: int = 2, adapt: bool = False) -> Tilts:
    """Whittaker smoother: min |t - z|^2 + lam |D^order z|^2 (lam scaled by the noise variance if adapt)."""

    def fn(c, sp, fi, la):
        t = _mid(c)
        out = t.copy()
        n = la - fi + 1
        if n < order + 2:
            return out
        d = np.diff(np.eye(n), order, axis=0)
        lm = lam * (max(noise_sd(t, fi, la), 0.5) ** 2 if adapt else 1.0)
        out[fi : la + 1] = np.linalg.solve(np.eye(n) + lm * d.T @ d, t[fi : la + 1])
        return out

    return fn


CANDIDATES: dict[str, Tilts | str] = {
    "sg5 (today)": t_sg(2),
    "median3+sg5": t_median3,
    "adaptive1-2": t_adaptive((1.0, 2.0)),
    "adaptive0.8-1.6-2.4": t_adaptive((0.8, 1.6, 2.4)),
    "adaptive1.5": t_adaptive((1.5,)),
    "whit2_1": t_whittaker(1.0),
    "whit2_3": t_whittaker(3.0),
    "whit3_3": t_whittaker(3.0, 3),
    "whit3_10": t_whittaker(10.0, 3),
    "whit3_30": t_whittaker(30.0, 3),
    "whit3_adapt3": t_whittaker(3.0, 3, True),
    "whit3_adapt10": t_whittaker(10.0, 3, True),
    "endplates": "endplates",
    "midlines_raw": t_raw,
    "sg7": t_sg(3),
    "sg9": t_sg(4),
    "short0.25": t_short(0.25),
    "short0.35": t_short(0.35),
    "short0.5": t_short(0.5),
    "spread1.5": t_spread(1.5),
    "spread2": t_spread(2.0),
    "spread3": t_spread(3.0),
    "robust4": t_robust(4.0),
    "robust6": t_robust(6.0),
    "robust8": t_robust(8.0),
    "wlen1": t_wlen(1.0),
    "wlen2": t_wlen(2.0),
    "wlen2_sg7": t_wlen(2.0, half=3),
    "wlen2_spread": t_wlen(2.0, spread=True),
    "short0.35+robust6": t_robust(6.0, t_short(0.35)),
    "wlen2+robust6": t_robust(6.0, t_wlen(2.0)),
    CROSSFIT: CROSSFIT,
    "plausible": t_plausible(False),
    "plausible+bowtie": t_plausible(True),
}
BASELINE = "sg5 (today)"
NAMES = ("cobb_deg", "cobb_pt_deg", "cobb_mt_deg", "cobb_tl_deg")


def _median(v: list[float]) -> float | None:
    v = [x for x in v if x is not None and np.isfinite(x)]
    return float(np.median(v)) if v else None


def phantom_figures(readings: list[dict[str, Any]], true: np.ndarray, labels: list[str]) -> dict[str, Any]:
    from spinescan.radiograph.angles import label_from_angles

    fig: dict[str, Any] = {}
    for k, n in enumerate(NAMES):
        pairs = [
            (r[n].value, t[k])
            for r, t in zip(readings, true, strict=True)
            if r[n].value is not None and np.isfinite(t[k])
        ]
        a = np.array(pairs, dtype=np.float64).reshape(-1, 2)
        fig[f"{n}_mae"] = float(np.mean(np.abs(a[:, 0] - a[:, 1]))) if len(a) else None
    fig["cobb_deg_bias"] = float(
        np.mean([r["cobb_deg"].value - t[0] for r, t in zip(readings, true, strict=True)])
    )
    said = [label_from_angles("ap", r)[0] for r in readings]
    fig["label_accuracy"] = float(np.mean([s == lab for s, lab in zip(said, labels, strict=True)]))
    healthy = [r["cobb_deg"].value for r, lab in zip(readings, labels, strict=True) if lab == "healthy"]
    fig["healthy_median_cobb"] = _median(healthy)
    return fig


def real_figures(readings: list[dict[str, Any]], labels: list[str], framing: list[str]) -> dict[str, Any]:
    from spinescan import metrics as m
    from spinescan.radiograph.angles import label_from_angles

    cobb = np.array([np.nan if r["cobb_deg"].value is None else r["cobb_deg"].value for r in readings])
    said = [label_from_angles("ap", r)[0] for r in readings]
    y = np.array([lab == "scoliosis" for lab in labels])
    crop = np.array([f == "spine_crop" for f in framing])
    fig: dict[str, Any] = {}
    for name, sel in (("spine_crop", crop), ("all", np.ones_like(crop))):
        ok = sel & np.isfinite(cobb)
        fig[f"auc_{name}"] = float(m.roc_auc(y[ok], cobb[ok]))
        fig[f"acc10_{name}"] = float(
            np.mean([s == lab for s, lab, q in zip(said, labels, sel, strict=True) if q])
        )
    fig["healthy_median"] = _median(cobb[~y].tolist())
    fig["scoliosis_median_spine_crop"] = _median(cobb[y & crop].tolist())
    fig["scoliosis_median_all"] = _median(cobb[y].tolist())
    fig["healthy_under10"] = float(np.mean(cobb[~y] < 10.0))
    return fig


def diagnostics(
    films: dict[str, list[tuple[np.ndarray, tuple[int, int], np.ndarray]]],
    truths: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Why a read-out can or cannot help, per film set (whole-spine films only):

    * ``collapsed``: per vertebra (T1..L5), share of films whose mid-line is shorter than 0.35 x the
      film's median (left and right corners predicted on top of each other);
    * ``tilt_noise_sd``: robust SD (deg) of the raw mid-line tilts' second differences / sqrt(6), an
      estimate of per-vertebra tilt noise (a smooth curve adds little to it);
    * ``residual_high_spread`` / ``residual_rest``: median |tilt - five-vertebra quadratic| (deg) of
      the vertebrae in the top decile of spread relative to their film's median, and of the rest;
    * with the manifest's corners (``truths[part]``, phantoms): for the vertebrae collapsed in most
      films, ``collapsed_offset_px`` (median over films of the largest distance in x of a predicted
      corner from the true centre) beside ``collapsed_true_width_px`` (where the corners should be:
      half of it either side).
    """
    from spinescan.radiograph.coronal import smoothed_tilts
    from spinescan.radiograph.vertebrae import LEVELS, as_corners, midline_tilts

    out: dict[str, Any] = {}
    for part, rows in films.items():
        short, d2, res, rel, offset, width = [], [], [], [], [], []
        true = None if truths is None else truths.get(part)
        for k, (lm, _hw, sp) in enumerate(rows):
            c = as_corners(lm)
            if not np.isfinite(c).all():
                continue
            if true is not None:
                tc = as_corners(true[k])
                offset.append(np.abs(c[:, :, 0] - tc[:, :, 0].mean(axis=1, keepdims=True)).max(axis=1))
                width.append(((tc[:, 1, 0] - tc[:, 0, 0]) + (tc[:, 3, 0] - tc[:, 2, 0])) / 2.0)
            ln = midline_lengths(c)
            short.append(ln < 0.35 * np.median(ln))
            t = midline_tilts(c)
            d2.append((t[:-2] - 2 * t[1:-1] + t[2:]) / np.sqrt(6.0))
            res.append(np.abs(t - smoothed_tilts(t)))
            rel.append(sp / np.median(sp))
        r, q = np.concatenate(res), np.concatenate(rel)
        top = q > np.nanquantile(q, 0.9)
        out[part] = {
            "n_films": len(short),
            "collapsed": np.round(np.mean(short, axis=0), 3).tolist(),
            "tilt_noise_sd": float(1.4826 * np.median(np.abs(np.concatenate(d2)))),
            "residual_high_spread": float(np.median(r[top])),
            "residual_rest": float(np.median(r[~top])),
        }
        most = np.flatnonzero(np.mean(short, axis=0) > 0.5)
        if offset and len(most):
            out[part]["collapsed_vertebrae"] = [LEVELS[v] for v in most]
            out[part]["collapsed_offset_px"] = np.round(
                np.nanmedian(np.array(offset)[:, most], 0), 2
            ).tolist()
            out[part]["collapsed_true_width_px"] = np.round(
                np.nanmedian(np.array(width)[:, most], 0), 2
            ).tolist()
    return out


def self_check(films: dict[str, list[tuple[np.ndarray, tuple[int, int], np.ndarray]]]) -> float:
    """Largest difference (deg) between this study's baseline and the shipped read-out
    (``ap_angles(readout=PREDICTION_READOUT)``) over every cached film: the study measures what
    ships, or it raises."""
    from spinescan.radiograph.angles import ap_angles
    from spinescan.radiograph.coronal import PREDICTION_READOUT

    worst = 0.0
    for rows in films.values():
        for lm, hw, sp in rows:
            mine, ship = (
                read_ap(lm, hw, sp, CANDIDATES[BASELINE]),
                ap_angles(lm, hw, readout=PREDICTION_READOUT),
            )
            for n in NAMES:
                a, b = mine[n].value, ship[n].value
                if (a is None) != (b is None):
                    raise AssertionError(f"{n}: study {a} vs shipped {b}")
                if a is not None:
                    worst = max(worst, abs(a - b))
    if worst > 1e-6:
        raise AssertionError(f"the study's baseline differs from the shipped read-out by {worst} deg")
    return worst


def score(args: argparse.Namespace) -> int:
    names = [a for a in args.only.split(",")] if args.only else list(CANDIDATES)
    report: dict[str, Any] = {"schema": SCHEMA, "command": "python " + " ".join(sys.argv), "runs": {}}
    for npz in sorted(args.cache.glob("*.npz")):
        b = np.load(npz)
        meta = json.loads(npz.with_suffix(".json").read_text())
        hw_in = tuple(int(v) for v in b["input_hw"])
        films: dict[str, list[tuple[np.ndarray, tuple[int, int], np.ndarray]]] = {}
        for part in ("val", "test", "real"):
            if f"{part}_out" not in b:
                continue
            films[part] = []
            for o, pl, hw in zip(b[f"{part}_out"], b[f"{part}_placement"], b[f"{part}_hw"], strict=True):
                lm, sp = decode_film(o, pl, hw_in)
                films[part].append((lm, (int(hw[0]), int(hw[1])), sp))
        entry: dict[str, Any] = {
            "self_check_max_diff_deg": self_check(films),
            "diagnostics": diagnostics(films, {p: b[f"{p}_true_lm"] for p in ("val", "test")}),
        }
        entry["candidates"] = cands = {}
        for cand in names:
            fn = CANDIDATES[cand]
            e: dict[str, Any] = {}
            for part, rows in films.items():
                readings = [read_ap(lm, hw, sp, fn) for lm, hw, sp in rows]
                if part == "real":
                    e[part] = real_figures(readings, meta["real_labels"], meta["real_framing"])
                else:
                    e[part] = phantom_figures(readings, b[f"{part}_true_angles"], meta[f"{part}_labels"])
            cands[cand] = e
            print(f"{npz.stem}: {cand}", flush=True)
        report["runs"][meta["run"]] = entry
    if args.out is not None:
        from spinescan.atomic import atomic_write_text

        atomic_write_text(args.out, json.dumps(report, indent=1))
    print(table(report))
    return 0


COLUMNS = (
    ("val", "cobb_deg_mae", "val MAE"),
    ("test", "cobb_deg_mae", "test MAE"),
    ("test", "cobb_pt_deg_mae", "PT"),
    ("test", "cobb_mt_deg_mae", "MT"),
    ("test", "cobb_tl_deg_mae", "TL"),
    ("test", "label_accuracy", "test acc"),
    ("real", "auc_spine_crop", "real AUC crop"),
    ("real", "acc10_spine_crop", "acc10 crop"),
    ("real", "acc10_all", "acc10 all"),
    ("real", "healthy_median", "healthy med"),
    ("real", "scoliosis_median_spine_crop", "scol med crop"),
)


def table(report: dict[str, Any]) -> str:
    """One markdown table per run: every candidate's figures (phantom val/test, real films)."""
    lines = []
    for run, entry in report["runs"].items():
        lines += [f"\n{Path(run).name}", "| read-out | " + " | ".join(c[2] for c in COLUMNS) + " |"]
        lines.append("|---" * (len(COLUMNS) + 1) + "|")
        for cand, fig in entry["candidates"].items():
            cells = [fig.get(p, {}).get(k) for p, k, _ in COLUMNS]
            lines.append(f"| {cand} | " + " | ".join("" if v is None else f"{v:.3g}" for v in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache", help="run each model once, cache raw outputs")
    c.add_argument("--data", type=Path, required=True)
    c.add_argument("--runs", type=Path, nargs="+", required=True)
    c.add_argument("--real", type=Path, default=None)
    c.add_argument("--cache", type=Path, required=True)
    s = sub.add_parser("score", help="score candidate read-outs from the cache (numpy only)")
    s.add_argument("--cache", type=Path, required=True)
    s.add_argument("--out", type=Path, default=None)
    s.add_argument("--only", default="", help="comma list of candidates (default: all)")
    args = ap.parse_args(argv)
    if args.cmd == "cache":
        return cache(args)
    return score(args)


if __name__ == "__main__":
    sys.exit(main())
