"""Issue 22, part 2: the view guard (``view`` model: ap / lateral / other), built and measured.

Two commands:

* ``build``: the one command that rebuilds the model that ships. Renders phantoms of both views
  (``spinescan synth``), writes a ``manifest.csv`` dataset (view ``any``, label = the film's view)
  of the phantoms, every real film found under ``--real`` (Fraiwan AP, AASCE AP, the lateral
  sample: linked, never copied) and generated non-spine images for ``other`` (:func:`make_others`),
  trains ``view`` on it through the shared loop and exports it to ``--out``::

      .venv/bin/python benchmarks/view_guard.py build --real ../shared/data/real --out exported-view

* ``study``: the honest figures. Held out by source: fold A trains on the phantoms, AASCE and
  others drawn from those films, and is tested on the Fraiwan films, the lateral sample and
  freshly generated others (new seed, and rotated / upside-down / inverted copies of the held-out
  films); fold B swaps the two AP sources. The single real lateral film is never trained on in
  the study (it is test-only in both folds), so the shipped model (trained on it) is not the one
  measured on it. Writes ``benchmarks/results/view-guard/view_guard.json``::

      .venv/bin/python benchmarks/view_guard.py study --real ../shared/data/real

Non-spine images (``other``): blank, noise, gradients, stripes, shapes, chest-like and hand-like
drawings, "photos of nothing" (colour fields), and spine films rotated 90 / 180 / 270 deg, flipped
upside down or inverted: a film that lies like that must never be read as it lies.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("ap", "lateral", "other")
KINDS = ("blank", "noise", "gradient", "stripes", "shapes", "chest", "hand", "photo")
TRANSFORMS = ("rot90", "rot180", "rot270", "upside_down", "inverted")
RESULTS = REPO / "benchmarks" / "results" / "view-guard"


# --- non-spine images --------------------------------------------------------------------------


def _size(rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(160, 720)), int(rng.integers(140, 720))


def _blank(rng: np.random.Generator) -> np.ndarray:
    h, w = _size(rng)
    img = np.full((h, w), int(rng.integers(0, 256)), np.uint8)
    if rng.random() < 0.5:  # a faint border, as a scanned empty cassette has
        cv2.rectangle(img, (0, 0), (w - 1, h - 1), int(rng.integers(0, 256)), int(rng.integers(1, 12)))
    return img


def _noise(rng: np.random.Generator) -> np.ndarray:
    h, w = _size(rng)
    kind = rng.integers(0, 3)
    if kind == 0:
        img = rng.integers(0, 256, (h, w))
    elif kind == 1:
        img = rng.normal(rng.uniform(60, 200), rng.uniform(10, 80), (h, w))
    else:  # blobby noise
        small = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16))).astype(np.float32)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(img, 0, 255).astype(np.uint8)


def _gradient(rng: np.random.Generator) -> np.ndarray:
    h, w = _size(rng)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.6:
        a = rng.uniform(0, 2 * np.pi)
        g = x * np.cos(a) + y * np.sin(a)
    else:
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        g = np.hypot(y - cy, x - cx)
    g = (g - g.min()) / max(float(np.ptp(g)), 1e-6)
    return (255 * g).astype(np.uint8)


def _stripes(rng: np.random.Generator) -> np.ndarray:
    h, w = _size(rng)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.choice([0.0, np.pi / 2, rng.uniform(0, np.pi)])
    period = rng.uniform(6, 80)
    s = np.sin(2 * np.pi * (x * np.cos(a) + y * np.sin(a)) / period)
    s = s > 0 if rng.random() < 0.5 else (s + 1) / 2
    return (255 * s).astype(np.uint8)


def _shapes(rng: np.random.Generator) -> np.ndarray:
    h, w = _size(rng)
    img = np.full((h, w), int(rng.integers(0, 256)), np.uint8)
    for _ in range(int(rng.integers(2, 14))):
        colour = int(rng.integers(0, 256))
        p = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        r = int(rng.integers(5, max(6, min(h, w) // 3)))
        k = rng.integers(0, 3)
        if k == 0:
            cv2.circle(img, p, r, colour, -1 if rng.random() < 0.5 else 3)
        elif k == 1:
            cv2.rectangle(img, p, (p[0] + r, p[1] + 2 * r), colour, -1 if rng.random() < 0.5 else 3)
        else:
            cv2.line(
                img, p, (int(rng.integers(0, w)), int(rng.integers(0, h))), colour, int(rng.integers(1, 8))
            )
    return img


def _chest(rng: np.random.Generator) -> np.ndarray:
    """A chest-film-like drawing: two dark lung fields with rib arcs, a heart shadow, clavicles."""
    h = int(rng.integers(300, 700))
    w = int(h * rng.uniform(0.9, 1.3))
    img = np.full((h, w), int(rng.integers(150, 220)), np.uint8)
    cx = w // 2
    lung = int(rng.integers(20, 70))
    for side in (-1, 1):
        centre = (cx + side * int(w * 0.22), int(h * 0.5))
        axes = (int(w * rng.uniform(0.14, 0.2)), int(h * rng.uniform(0.3, 0.38)))
        cv2.ellipse(img, centre, axes, 0, 0, 360, lung, -1)
        for k in range(int(rng.integers(6, 11))):  # rib arcs over the lung
            yy = int(h * 0.2 + k * h * 0.06)
            cv2.ellipse(img, (cx + side * int(w * 0.1), yy), (int(w * 0.25), int(h * 0.05)), 0,
                        180 if side < 0 else 270, 270 if side < 0 else 360, 200, 3)  # fmt: skip
        cv2.line(img, (cx, int(h * 0.15)), (cx + side * int(w * 0.35), int(h * 0.12)), 230, 6)  # clavicle
    cv2.ellipse(img, (cx + int(w * 0.05), int(h * 0.62)), (int(w * 0.16), int(h * 0.15)), 0, 0, 360, 205, -1)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(1, 4))
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def _hand(rng: np.random.Generator) -> np.ndarray:
    """A hand-radiograph-like drawing: a palm of metacarpals and five fingers of phalanges."""
    h = int(rng.integers(300, 700))
    w = int(h * rng.uniform(0.6, 0.9))
    img = np.full((h, w), int(rng.integers(0, 50)), np.uint8)
    soft, bone = int(rng.integers(60, 110)), int(rng.integers(170, 245))
    base = (w // 2, int(h * 0.85))
    cv2.ellipse(img, (w // 2, int(h * 0.7)), (int(w * 0.28), int(h * 0.2)), 0, 0, 360, soft, -1)
    for f in range(5):
        a = np.radians(-60 + 30 * f + rng.normal(0, 5)) if f else np.radians(-75)
        length = h * (0.35 if f else 0.25) * rng.uniform(0.9, 1.1)
        x0, y0 = base[0] + (f - 2) * w * 0.09, base[1] - h * 0.2
        tip = (int(x0 + length * np.sin(a + np.pi / 2 * 0 + 0)), int(y0 - length * np.cos(a * 0.5)))
        cv2.line(img, (int(x0), int(y0)), tip, soft, int(w * 0.07))
        for s in range(3):  # phalanges
            t0, t1 = s / 3 + 0.03, (s + 1) / 3 - 0.03
            p0 = (int(x0 + (tip[0] - x0) * t0), int(y0 + (tip[1] - y0) * t0))
            p1 = (int(x0 + (tip[0] - x0) * t1), int(y0 + (tip[1] - y0) * t1))
            cv2.line(img, p0, p1, bone, int(w * 0.035))
        cv2.line(img, (int(x0), int(y0)), (int(x0 + (base[0] - x0) * 0.3), base[1]), bone, int(w * 0.03))
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(1, 3))
    return np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)


def _photo(rng: np.random.Generator) -> np.ndarray:
    """A colour "photo of nothing": smooth colour fields, a horizon, texture."""
    h, w = _size(rng)
    small = rng.integers(0, 256, (int(rng.integers(2, 8)), int(rng.integers(2, 8)), 3)).astype(np.float32)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.5:
        img[int(h * rng.uniform(0.3, 0.7)) :] *= rng.uniform(0.3, 0.8)
    img += rng.normal(0, rng.uniform(2, 20), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


MAKERS = {
    "blank": _blank,
    "noise": _noise,
    "gradient": _gradient,
    "stripes": _stripes,
    "shapes": _shapes,
    "chest": _chest,
    "hand": _hand,
    "photo": _photo,
}


def transform(image: np.ndarray, how: str) -> np.ndarray:
    """A spine film as it must never be read: rotated, upside down (flipped top to bottom), inverted."""
    if how == "rot90":
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if how == "rot180":
        return cv2.rotate(image, cv2.ROTATE_180)
    if how == "rot270":
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    if how == "upside_down":
        return cv2.flip(image, 0)
    if how == "inverted":
        top = 65535 if image.dtype == np.uint16 else 255
        if image.ndim == 2:
            return top - image
        out = image.copy()
        out[..., :3] = top - image[..., :3]  # colour inverted, alpha kept
        return out
    raise ValueError(how)


# --- datasets ----------------------------------------------------------------------------------


def _films(root: Path, pattern: str) -> list[Path]:
    """Image files under ``root`` (``pattern`` ``*``: every JPEG and PNG; one Fraiwan film is a PNG)."""
    suffixes = {".jpg", ".jpeg", ".png"} if pattern == "*" else {pattern.lstrip("*")}
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def spine_sources(real: Path | None, phantoms: Path) -> dict[str, list[tuple[Path, str]]]:
    """``{source: [(film, view)]}``: the phantoms and every real film set found."""
    out: dict[str, list[tuple[Path, str]]] = {
        "phantoms": [(p, "ap") for p in _films(phantoms / "ap", "*.png")]
        + [(p, "lateral") for p in _films(phantoms / "lateral", "*.png")]
    }
    if real is not None:
        for name, folder, pattern, view in (
            ("fraiwan", "fraiwan-kauh-dev", "*", "ap"),
            ("aasce", "aasce-train", "*", "ap"),
            ("lateral_sample", "lateral-sample", "*", "lateral"),
        ):
            films = _films(real / folder, pattern) if (real / folder).is_dir() else []
            if films:
                out[name] = [(p, view) for p in films]
    return out


def read_film(path: Path) -> np.ndarray:
    from spinescan.radiograph.imageio import read_image

    return read_image(path)


def write_dataset(
    root: Path,
    spines: list[tuple[Path, str, str]],
    n_per_kind: int,
    seed: int,
    transformed_share: float = 0.5,
) -> Counter:
    """``root/manifest.csv`` (view ``any``): spine films linked by absolute path from ``root/links``,
    ``n_per_kind`` generated images of each kind and a transformed copy of ``transformed_share``
    of the spine films (each with a random transform), all labelled ``other``."""
    rng = np.random.default_rng(seed)
    (root / "links").mkdir(parents=True, exist_ok=True)
    (root / "other").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (path, view, source) in enumerate(spines):
        link = root / "links" / f"{source}-{i:05d}{path.suffix.lower()}"
        if not link.exists():
            os.symlink(path.resolve(), link)
        rows.append({"file": str(link.relative_to(root)), "label": view, "view": "any", "source": source})
    for kind in KINDS:
        for i in range(n_per_kind):
            name = f"other/{kind}-{seed}-{i:04d}.png"
            cv2.imwrite(str(root / name), MAKERS[kind](rng))
            rows.append({"file": name, "label": "other", "view": "any", "source": kind})
    for i, (path, _view, source) in enumerate(spines):
        if rng.random() >= transformed_share:
            continue
        how = TRANSFORMS[int(rng.integers(0, len(TRANSFORMS)))]
        name = f"other/{source}-{how}-{i:05d}.png"
        cv2.imwrite(str(root / name), transform(read_film(path), how))
        rows.append({"file": name, "label": "other", "view": "any", "source": f"{source}:{how}"})
    with open(root / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "label", "view", "source"])
        writer.writeheader()
        writer.writerows(rows)
    return Counter(r["label"] for r in rows)


def synth(out: Path, per_class: int, seed: int) -> Path:
    """``spinescan synth OUT --per-class N --seed S`` (reused when OUT already holds it)."""
    from spinescan.synth import generate

    if not (out / "manifest.csv").is_file():
        generate(out, per_class=per_class, seed=seed, workers=2, progress=False)
    return out


def train_and_export(
    data: Path, runs: Path, out: Path, seed: int = 0, epochs: int | None = None, image_size: int | None = None
) -> Path:
    """``spinescan train view`` on ``data`` through the shared loop, exported to ``out``."""
    from spinescan.export.exporter import export_runs
    from spinescan.training.loop import TrainConfig, train
    from spinescan.training.settings import RunSettings

    hparams = {"epochs": epochs} if epochs else {}
    config = TrainConfig(
        model="view",
        data=data,
        runs_dir=runs,
        settings=RunSettings(seed=seed, image_size=image_size),
        hparams=hparams,
    )
    result = train(config)
    export_runs([result.run_dir], out).raise_for_failures()
    return out / "view.onnx"


# --- measuring ---------------------------------------------------------------------------------


def classify(model_path: Path, items: list[tuple[np.ndarray | Path, str, str]]) -> list[dict[str, Any]]:
    """Each ``(film or image, truth, source)`` through the exported guard as the predictor runs it."""
    from spinescan.edge.guard import guard_verdict
    from spinescan.edge.onnxmodel import OnnxModel

    model = OnnxModel(model_path)
    rows = []
    for item, truth, source in items:
        image = read_film(item) if isinstance(item, Path) else item
        verdict = guard_verdict(model, image)
        rows.append(
            {"truth": truth, "pred": verdict.view, "p": round(verdict.probability, 4), "source": source}
        )
    return rows


def confusion(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    return {
        t: {p: sum(1 for r in rows if r["truth"] == t and r["pred"] == p) for p in CLASSES} for t in CLASSES
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_source: dict[str, dict[str, Any]] = {}
    for r in rows:
        key = r["source"].split(":")[0] if r["truth"] != "other" else r["source"]
        s = by_source.setdefault(key, {"n": 0, "correct": 0, "wrong": []})
        s["n"] += 1
        s["correct"] += r["truth"] == r["pred"]
    for r in rows:
        if r["truth"] != r["pred"]:
            key = r["source"].split(":")[0] if r["truth"] != "other" else r["source"]
            by_source[key]["wrong"].append(f"{r['truth']}->{r['pred']} p={r['p']}")
    spine = [r for r in rows if r["truth"] != "other"]
    other = [r for r in rows if r["truth"] == "other"]
    return {
        "n": len(rows),
        "spine_films": len(spine),
        "spine_correct": sum(r["truth"] == r["pred"] for r in spine),
        "spine_accuracy": round(sum(r["truth"] == r["pred"] for r in spine) / max(1, len(spine)), 4),
        "other_images": len(other),
        "other_called_other": sum(r["pred"] == "other" for r in other),
        "confusion": confusion(rows),
        "by_source": by_source,
    }


def test_items(
    spines: list[tuple[Path, str, str]], n_per_kind: int, seed: int
) -> list[tuple[np.ndarray | Path, str, str]]:
    """The held-out spine films as they are, every transform of each, and fresh generated images."""
    rng = np.random.default_rng(seed)
    items: list[tuple[np.ndarray | Path, str, str]] = []
    for path, view, source in spines:
        items.append((path, view, source))
        film = read_film(path)
        items.extend((transform(film, how), "other", f"{source}:{how}") for how in TRANSFORMS)
    for kind in KINDS:
        items.extend((MAKERS[kind](rng), "other", kind) for _ in range(n_per_kind))
    return items


def study(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    phantoms = synth(work / "phantoms", args.per_class, 0)
    test_phantoms = synth(work / "phantoms-test", max(10, args.per_class // 5), 1)
    sources = spine_sources(Path(args.real), phantoms)
    held_phantoms = [(p, v, "phantoms") for p, v in spine_sources(None, test_phantoms)["phantoms"]]
    missing = {"fraiwan", "aasce"} - set(sources)
    if missing:
        raise SystemExit(f"the study needs both real AP sets under {args.real}; missing {sorted(missing)}")
    lateral = [(p, v, "lateral_sample") for p, v in sources.get("lateral_sample", [])]
    result: dict[str, Any] = {"folds": {}}
    for fold, (train_src, test_src) in {"A": ("aasce", "fraiwan"), "B": ("fraiwan", "aasce")}.items():
        t0 = time.perf_counter()
        train_spines = [(p, v, "phantoms") for p, v in sources["phantoms"]]
        train_spines += [(p, v, train_src) for p, v in sources[train_src]]
        data = work / f"fold-{fold}"
        model = work / f"exported-{fold}" / "view.onnx"
        if args.reuse and model.is_file():  # measure an already trained fold again
            with open(data / "manifest.csv", newline="") as fh:
                counts = Counter(r["label"] for r in csv.DictReader(fh))
        else:
            counts = write_dataset(data, train_spines, args.per_kind, seed=10 + ord(fold))
            model = train_and_export(data, work / f"runs-{fold}", model.parent, epochs=args.epochs)
        t1 = time.perf_counter()
        held = [(p, v, test_src) for p, v in sources[test_src]] + lateral + held_phantoms
        rows = classify(model, test_items(held, args.test_per_kind, seed=100 + ord(fold)))
        result["folds"][fold] = {
            "train": {"sources": ["phantoms", train_src], "counts": dict(counts)},
            "test_sources": [test_src, "lateral_sample", "phantoms (seed 1)", "generated (new seed)"],
            "train_seconds": round(t1 - t0, 1),
            **summary(rows),
        }
        print(json.dumps({k: v for k, v in result["folds"][fold].items() if k != "by_source"}, indent=1))
    rows_all = [r for f in result["folds"].values() for r in [f]]
    result["spine_correct"] = sum(f["spine_correct"] for f in rows_all)
    result["spine_films"] = sum(f["spine_films"] for f in rows_all)
    result["other_called_other"] = sum(f["other_called_other"] for f in rows_all)
    result["other_images"] = sum(f["other_images"] for f in rows_all)
    result["command"] = " ".join(["benchmarks/view_guard.py", *sys.argv[1:]])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "view_guard.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def build(args: argparse.Namespace) -> Path:
    """The shipped model: phantoms and every real film available, all sources in training."""
    work = Path(args.work)
    phantoms = synth(work / "phantoms", args.per_class, 0)
    sources = spine_sources(Path(args.real) if args.real else None, phantoms)
    spines = [(p, v, s) for s, films in sources.items() for p, v in films]
    counts = write_dataset(work / "build", spines, args.per_kind, seed=7)
    print(f"dataset {work / 'build'}: {dict(counts)} from {sorted(sources)}")
    model = train_and_export(work / "build", work / "runs-build", Path(args.out), epochs=args.epochs)
    print(f"exported {model}")
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["build", "study"])
    parser.add_argument("--real", default=str(REPO.parent.parent / "shared" / "data" / "real"))
    parser.add_argument("--work", default="/tmp/view-guard", help="scratch folder (datasets, runs)")
    parser.add_argument("--out", default="exported-view", help="build: where the model is exported")
    parser.add_argument("--per-class", type=int, default=100, help="phantoms per class and view")
    parser.add_argument("--per-kind", type=int, default=60, help="generated training images per kind")
    parser.add_argument("--test-per-kind", type=int, default=30, help="study: generated test images per kind")
    parser.add_argument("--epochs", type=int, default=None, help="default: the plugin's")
    parser.add_argument("--reuse", action="store_true", help="study: measure folds already trained in --work")
    args = parser.parse_args(argv)
    if args.command == "build":
        build(args)
    else:
        study(args)


if __name__ == "__main__":
    main()
