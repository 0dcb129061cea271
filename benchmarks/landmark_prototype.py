"""Landmark-model prototype: train on phantoms, measure landmark error and angle error on held-out ones.

Not wired into ``spinescan train`` yet (that follows the training-loop redesign); this script is the
measurement behind the method choice of issue 14. Train and test phantoms come from different
synth seeds, so the test films are new patients, new framings and new exposures.

    python benchmarks/landmark_prototype.py --view ap --train 2000 --test 300 --epochs 20 \
        --size 256x96 --out /tmp/lm/run_ap

Writes ``OUT/metrics.json`` (per-epoch seconds, landmark error as a fraction of film height, angle
MAE per angle, AASCE SMAPE, threshold-label accuracy), ``OUT/model.keras`` and
``OUT/test_predictions.csv``. ``--real DIR`` also applies an AP model to real films (labels only).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from spinescan.metrics import roc_auc
from spinescan.radiograph import angles as A
from spinescan.radiograph.imageio import read_image
from spinescan.radiograph.landmark_codec import N_POINTS, decode, encode
from spinescan.radiograph.preprocess import Placement, Preprocessing, preprocess_placed

CLASS_VIEWS = {"ap": ("healthy", "scoliosis"), "lateral": ("healthy", "kyphosis", "lordosis")}


def synth(out: Path, view: str, n: int, seed: int, size: int) -> Path:
    """Phantoms of one view, ``n`` in all (split evenly over its classes)."""
    from spinescan.synth import generate

    per_class = max(1, round(n / len(CLASS_VIEWS[view])))
    manifest = out / "manifest.csv"
    if not manifest.exists():
        generate(out, per_class=per_class, seed=seed, size=size, views=(view,), workers=2, progress=False)
    return manifest


def load(
    manifest: Path, view: str, input_size: tuple[int, int, int], prep: Preprocessing
) -> tuple[np.ndarray, np.ndarray, list[Placement], list[dict[str, str]]]:
    """Preprocessed images (uint8 to save memory), targets (N, 70, 3), placements and rows."""
    with open(manifest, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["view"] == view]
    xs = np.zeros((len(rows), *input_size), np.uint8)
    ys = np.zeros((len(rows), N_POINTS, 3), np.float32)
    places = []
    for i, r in enumerate(rows):
        img = read_image(manifest.parent / r["file"])
        x, pl = preprocess_placed(img, input_size, prep)
        xs[i] = np.round(x * 255.0).astype(np.uint8)
        sac = np.array(json.loads(r["sacrum"])) if r.get("sacrum") else None
        t = encode(np.array(json.loads(r["landmarks"])), sac, pl, input_size[:2])
        ys[i, :, :2], ys[i, :, 2] = t.coords, t.visible
        places.append(pl)
    return xs, ys, places, rows


def centreline_cobb(landmarks: np.ndarray, degree: int = 4) -> float | None:
    """Exploratory, not a manifest definition: the largest angle between tangents of the spine's
    centre line (a polynomial x(y) through the vertebral centres), which ignores each vertebra's
    own corners. A robustness check for films where corners are noisy (real films, zero-shot)."""
    c = np.asarray(landmarks, dtype=np.float64).reshape(17, 4, 2).mean(axis=1)
    ok = np.isfinite(c).all(axis=1)
    if ok.sum() < 6:
        return None
    y, x = c[ok, 1], c[ok, 0]
    span = float(y.max() - y.min()) or 1.0
    t = (y - y.mean()) / span
    coef = np.polyfit(t, x, min(degree, int(ok.sum()) - 2))
    tt = np.linspace(t.min(), t.max(), 200)
    slope = np.polyval(np.polyder(coef), tt) / span  # dx/dy in pixels
    ang = np.degrees(np.arctan(slope))
    return float(ang.max() - ang.min())


def smape(pred: np.ndarray, true: np.ndarray) -> float:
    """AASCE 2019 SMAPE (percent): per image sum|p - t| / sum(p + t) over its angles, averaged."""
    num = np.abs(pred - true).sum(axis=1)
    den = (pred + true).sum(axis=1)
    return float(100.0 * np.mean(num / np.maximum(den, 1e-9)))


def evaluate(
    model: Any, xs: np.ndarray, places: list[Placement], rows: list[dict[str, str]], view: str
) -> dict[str, Any]:
    """Landmark error (fraction of film height) and angle errors against the manifest."""
    h_in, w_in = xs.shape[1:3]
    t0 = time.perf_counter()
    out = model.predict(xs.astype(np.float32) / 255.0, batch_size=32, verbose=0)
    infer_s = (time.perf_counter() - t0) / len(xs)
    lm_err, per = [], []
    for o, pl, r in zip(out, places, rows, strict=True):
        d = decode(o[:, :2], o[:, 2], pl, (h_in, w_in))
        true = np.array(json.loads(r["landmarks"]))
        hgt = float(r["height"])
        pred = np.where(np.isfinite(d.landmarks), d.landmarks, np.nan)
        e = np.hypot(*(pred - true).T) / hgt
        lm_err.append(e)
        size = (int(r["height"]), int(r["width"]))
        if view == "ap":
            got = A.ap_angles(d.landmarks, image_size=size)
            rec = {k: got[k].value for k in A.AP_ANGLES}
            tru = A.ap_angles(true, image_size=size)
            rec.update({f"true_{k}": tru[k].value for k in A.AP_ANGLES})
            rec["true_cobb_deg"] = float(r["cobb_deg"])
            rec["centreline_cobb"] = centreline_cobb(d.landmarks)
        else:
            sac_true = np.array(json.loads(r["sacrum"]))
            got = A.lateral_angles(d.landmarks, d.sacrum, image_size=size)
            rec = {k: got[k].value for k in A.LATERAL_ANGLES}
            rec["true_thoracic_kyphosis_deg"] = float(r["thoracic_kyphosis_deg"])
            rec["true_lumbar_lordosis_deg"] = float(r["lumbar_lordosis_deg"])
            s_err = np.hypot(*(d.sacrum - sac_true).T) / hgt
            rec["sacrum_err"] = float(np.nanmean(s_err))
        label, _ = A.label_from_angles(view, got)
        rec.update(file=r["file"], label=r["label"], pred_label=label, lm_err=float(np.nanmean(e)))
        per.append(rec)
    lm = np.array(lm_err)
    res: dict[str, Any] = {
        "n": len(rows),
        "landmark_err_frac_mean": float(np.nanmean(lm)),
        "landmark_err_frac_median": float(np.nanmedian(lm)),
        "landmark_err_frac_p95": float(np.nanpercentile(lm, 95)),
        "landmarks_missing_frac": float(np.mean(~np.isfinite(lm))),
        "infer_ms_per_image": 1000 * infer_s,
        "label_accuracy": float(np.mean([p["pred_label"] == p["label"] for p in per])),
    }
    names = A.AP_ANGLES if view == "ap" else A.LATERAL_ANGLES
    for k in names:
        pairs = [(p[k], p[f"true_{k}"]) for p in per if p[k] is not None and p[f"true_{k}"] is not None]
        if pairs:
            a = np.array(pairs)
            res[f"mae_{k}"] = float(np.mean(np.abs(a[:, 0] - a[:, 1])))
            res[f"bias_{k}"] = float(np.mean(a[:, 0] - a[:, 1]))
            res[f"p90_abs_err_{k}"] = float(np.percentile(np.abs(a[:, 0] - a[:, 1]), 90))
        res[f"none_{k}"] = sum(p[k] is None for p in per)
    if view == "ap":
        cl = [(p["centreline_cobb"], p["true_cobb_deg"]) for p in per if p["centreline_cobb"] is not None]
        if cl:
            a = np.array(cl)
            res["mae_centreline_cobb_vs_cobb_deg"] = float(np.mean(np.abs(a[:, 0] - a[:, 1])))
        three = ("cobb_pt_deg", "cobb_mt_deg", "cobb_tl_deg")
        ok = [p for p in per if all(p[k] is not None and p[f"true_{k}"] is not None for k in three)]
        if ok:
            pr = np.array([[p[k] for k in three] for p in ok])
            tr = np.array([[p[f"true_{k}"] for k in three] for p in ok])
            res["smape_pt_mt_tl"] = smape(pr, tr)
    res["per_image"] = per
    return res


def real_films(
    model: Any, root: Path, input_size: tuple[int, int, int], prep: Preprocessing
) -> dict[str, Any]:
    """Zero-shot on real AP films (labels only): AUC of cobb_deg, 10-degree accuracy, by framing."""
    with open(root / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    recs = []
    for r in rows:
        img = read_image(root / r["file"])
        x, pl = preprocess_placed(img, input_size, prep)
        o = model.predict(x[None], verbose=0)[0]
        d = decode(o[:, :2], o[:, 2], pl, input_size[:2])
        got = A.ap_angles(d.landmarks, image_size=img.shape[:2])
        label, _ = A.label_from_angles("ap", got)
        recs.append(
            {
                "file": r["file"],
                "label": r["label"],
                "framing": r["framing"],
                **{k: got[k].value for k in A.AP_ANGLES},
                "centreline_cobb": centreline_cobb(d.landmarks),
                "pred_label": label,
                "landmarks": np.round(d.landmarks, 1).tolist(),
            }
        )
    res: dict[str, Any] = {}
    for subset in ("all", "spine_crop"):
        sel = [p for p in recs if subset == "all" or p["framing"] == subset]
        y = np.array([p["label"] == "scoliosis" for p in sel], dtype=int)
        s = np.array([p["cobb_deg"] if p["cobb_deg"] is not None else np.nan for p in sel])
        ok = np.isfinite(s)
        cl = np.array([p["centreline_cobb"] if p["centreline_cobb"] is not None else np.nan for p in sel])
        okc = np.isfinite(cl)
        res[subset + "_centreline"] = {
            "auc": float(roc_auc(y[okc].astype(bool), cl[okc])) if len(set(y[okc])) == 2 else None,
            "accuracy_10deg": float(np.mean((cl[okc] >= 10) == (y[okc] == 1))),
        }
        res[subset] = {
            "n": len(sel),
            "n_measured": int(ok.sum()),
            "auc_cobb": float(roc_auc(y[ok].astype(bool), s[ok])) if len(set(y[ok])) == 2 else None,
            "accuracy_10deg": float(np.mean([p["pred_label"] == p["label"] for p in sel])),
            "median_cobb_healthy": float(np.nanmedian(s[y == 0])) if (y == 0).any() else None,
            "median_cobb_scoliosis": float(np.nanmedian(s[y == 1])) if (y == 1).any() else None,
        }
    res["per_image"] = recs
    return res


class EpochTimer:
    """Keras callback recording wall seconds per epoch (the figure the 30-minute budget is about)."""

    def __init__(self) -> None:
        import keras

        class _CB(keras.callbacks.Callback):
            def __init__(self, outer: EpochTimer) -> None:
                super().__init__()
                self.outer = outer

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self.outer._t = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                dt = time.perf_counter() - self.outer._t
                self.outer.seconds.append(dt)
                logs = logs or {}
                msg = " ".join(f"{k}={v:.4f}" for k, v in logs.items() if isinstance(v, float))
                print(f"epoch {epoch + 1}: {dt:.1f}s {msg}", flush=True)

        self.seconds: list[float] = []
        self._t = 0.0
        self.callback = _CB(self)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--view", choices=("ap", "lateral"), default="ap")
    ap.add_argument("--train", type=int, default=2000, help="training phantoms (val is 10%% of them)")
    ap.add_argument("--test", type=int, default=300)
    ap.add_argument("--film", type=int, default=512, help="phantom height in pixels")
    ap.add_argument("--size", default="256x96", help="model input HxW")
    ap.add_argument("--resize", default="spine_crop", choices=("spine_crop", "spine_band", "letterbox"))
    ap.add_argument("--crop-aspect", type=float, default=None, help="default: input W/H")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--angle-weight", type=float, default=20.0)
    ap.add_argument("--spread-weight", type=float, default=0.01)
    ap.add_argument("--coords", action="store_true", help="CoordConv channels (untested: see report)")
    ap.add_argument("--widths", default="16,32,48,64,96")
    ap.add_argument("--decoder", type=int, default=48)
    ap.add_argument("--data", default="/tmp/lm/data", help="phantom cache folder")
    ap.add_argument("--real", default=None, help="real AP films folder (manifest.csv) for a zero-shot check")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    h, w = (int(v) for v in args.size.lower().split("x"))
    input_size = (h, w, 1)
    prep = Preprocessing(resize=args.resize, crop_aspect=args.crop_aspect or w / h)
    data = Path(args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tr_m = synth(data / f"{args.view}_train_{args.train}_{args.film}", args.view, args.train, 100, args.film)
    te_m = synth(data / f"{args.view}_test_{args.test}_{args.film}", args.view, args.test, 200, args.film)
    synth_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    xtr, ytr, _, _ = load(tr_m, args.view, input_size, prep)
    xte, _, pte, rte = load(te_m, args.view, input_size, prep)
    load_s = time.perf_counter() - t0
    vis_frac = float(ytr[..., 2][:, :68].mean())
    print(
        f"data: synth {synth_s:.0f}s, preprocess {load_s:.0f}s, train {len(xtr)}, test {len(xte)}, "
        f"train landmarks visible {vis_frac:.3f}",
        flush=True,
    )

    import keras

    from spinescan.landmark_net.model import HeatmapConfig, build_heatmap_model, make_loss

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    idx = rng.permutation(len(xtr))
    n_val = max(1, len(xtr) // 10)
    val, trn = idx[:n_val], idx[n_val:]
    cfg = HeatmapConfig(
        input_size=input_size,
        widths=tuple(int(v) for v in args.widths.split(",")),
        decoder_width=args.decoder,
        coords=args.coords,
    )
    model = build_heatmap_model(cfg)
    steps = int(np.ceil(len(trn) / args.batch)) * args.epochs
    sched = keras.optimizers.schedules.CosineDecay(args.lr, steps, warmup_target=None, alpha=0.02)
    model.compile(
        optimizer=keras.optimizers.Adam(sched),
        loss=make_loss((h, w), angle_weight=args.angle_weight, spread_weight=args.spread_weight),
    )
    timer = EpochTimer()
    x_tr = xtr[trn].astype(np.float32) / 255.0
    x_va = xtr[val].astype(np.float32) / 255.0
    t0 = time.perf_counter()
    model.fit(
        x_tr,
        ytr[trn],
        validation_data=(x_va, ytr[val]),
        epochs=args.epochs,
        batch_size=args.batch,
        verbose=0,
        callbacks=[timer.callback],
    )
    train_s = time.perf_counter() - t0
    model.save(out / "model.keras")
    res = evaluate(model, xte, pte, rte, args.view)
    per = res.pop("per_image")
    metrics = {
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "view": args.view,
        "config": cfg.to_dict(),
        "preprocessing": prep.to_dict(),
        "params": int(model.count_params()),
        "train_n": len(trn),
        "val_n": len(val),
        "epochs": args.epochs,
        "batch": args.batch,
        "lr": args.lr,
        "angle_weight": args.angle_weight,
        "spread_weight": args.spread_weight,
        "epoch_seconds": [round(s, 1) for s in timer.seconds],
        "train_seconds": round(train_s, 1),
        "synth_seconds": round(synth_s, 1),
        "preprocess_seconds": round(load_s, 1),
        "cpu_count": os.cpu_count(),
        "load_avg_after": os.getloadavg(),
        "test": res,
    }
    if args.real and args.view == "ap" and Path(args.real).exists():
        real = real_films(model, Path(args.real), input_size, prep)
        (out / "real.json").write_text(json.dumps(real, indent=1))
        metrics["real"] = {k: v for k, v in real.items() if k != "per_image"}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    with open(out / "test_predictions.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(per[0]))
        wr.writeheader()
        wr.writerows(per)
    print(json.dumps({k: v for k, v in metrics.items() if k != "config"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
