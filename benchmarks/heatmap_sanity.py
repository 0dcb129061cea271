"""Do the exported class activation maps pass basic sanity checks? Measured on phantoms.

Heatmaps are a quality check, not a localisation claim (Saporta et al., Nature Machine
Intelligence 2022); this script checks that they at least behave like one should:

1. **Mass on the spine.** For every test phantom of a run's split, the share of the predicted
   class's heatmap (ReLU CAM, placed on the film through the exact preprocessing geometry by
   ``spinescan.edge.overlay``) that falls inside the spine's box (the bounding box of the 68
   vertebra-corner landmarks in ``manifest.csv``), against the share a uniform map would put
   there (box area / area the model saw). Ratio > 1: the map prefers the spine.
2. **Model randomisation** (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).
   The maps of the trained model are compared, per image, with those of the same architecture
   whose weights were re-initialised: the dense head only, then cascading down from the top
   (head + the last conv blocks), then every layer. Spearman rank correlation of the raw CAM
   grids of the trained model's predicted class; a map that does not change (correlation near 1)
   would not depend on what the model learned.

The CAMs come from the same graph the export ships: ``keras_to_onnx`` run through onnxruntime.

Usage (from the repository root)::

    .venv/bin/python benchmarks/heatmap_sanity.py --run runs/generalist/<run-id> [--data DIR] [--n 150]

Writes ``<out>/heatmap_sanity.json`` and prints a summary.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _session(model: Any) -> Any:
    import onnxruntime as ort

    from spinescan.export.onnx_convert import keras_to_onnx

    proto = keras_to_onnx(model).proto
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _cams(session: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs, cams = [], []
    for i in range(0, len(x), 32):
        p, c = session.run(["probabilities", "cam"], {"image": x[i : i + 32]})
        probs.append(p)
        cams.append(c)
    return np.concatenate(probs), np.concatenate(cams)


def _landmarks(data: Path) -> dict[str, np.ndarray]:
    with open(data / "manifest.csv", newline="", encoding="utf-8") as fh:
        return {
            row["file"]: np.asarray(json.loads(row["landmarks"]), dtype=float) for row in csv.DictReader(fh)
        }


def _randomised(model: Any, spec: Any, backbone: str, layers: list[str] | None, seed: int) -> Any:
    """A copy of ``model`` with ``layers`` (all when ``None``) re-initialised from a fresh build."""
    import keras

    from spinescan.zoo.backbones import _walk_layers, build_classifier

    keras.utils.set_random_seed(seed)
    fresh = build_classifier(spec, backbone)
    if layers is None:
        return fresh
    fresh.set_weights(model.get_weights())
    source = {layer.name: layer for layer in _walk_layers(build_classifier(spec, backbone)) if layer.weights}
    for layer in _walk_layers(fresh):
        if layer.name in layers and layer.name in source:
            layer.set_weights(source[layer.name].get_weights())
    return fresh


def _cascade(model: Any) -> list[tuple[str, list[str] | None]]:
    """Adebayo's cascading randomisation, top down: head; head + last block; ...; everything."""
    from spinescan.zoo.backbones import _walk_layers

    weighted = [layer.name for layer in _walk_layers(model) if layer.weights]
    head = [n for n in weighted if n == "logits"]
    blocks: list[str] = []
    steps: list[tuple[str, list[str] | None]] = [("head (logits)", head)]
    for prefix in ("block4", "block3"):
        blocks += [n for n in weighted if n.startswith(prefix)]
        if blocks:
            steps.append(
                (f"head + {'..'.join(sorted({b[:6] for b in blocks}, reverse=True))}", head + blocks)
            )
    steps.append(("all layers", None))
    return steps


def main(argv: list[str] | None = None) -> int:
    from scipy.stats import spearmanr

    from spinescan.edge import overlay
    from spinescan.export.parity import load_images, split_samples
    from spinescan.radiograph.preprocess import film_placement
    from spinescan.training import inference, runs

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--run", required=True, help="a finished run trained on phantoms (manifest with landmarks)"
    )
    parser.add_argument("--data", help="the run's dataset, if it moved")
    parser.add_argument("--n", type=int, default=150, help="test images (default 150)")
    parser.add_argument("--out", default="reports/heatmap-sanity")
    parser.add_argument("--seeds", type=int, default=2, help="re-initialisations per randomisation step")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    run = runs.load_run(args.run)
    spec = run.spec
    backbone = str((run.metrics or {}).get("backbone") or "compact")
    data = Path(args.data or run.config.dataset.root)
    samples = split_samples(run, data)["test"][: args.n]
    images = load_images(samples, spec, "test")
    marks = _landmarks(data)
    model = inference.load_run_model(args.run)
    probs, cams = _cams(_session(model), images.x)
    labels = probs.argmax(axis=1)

    shares, uniform = [], []
    from spinescan.radiograph.imageio import read_image

    by_rel = {s.rel: s for s in samples}
    for k, rel in enumerate(images.files):
        film = read_image(by_rel[rel].path)
        placement = film_placement(film, spec.input_size, spec.preprocessing)
        heat = overlay.film_heatmap(cams[k, ..., labels[k]], placement, film.shape[:2], spec.input_size[:2])
        seen = np.isfinite(heat)
        heat = np.nan_to_num(heat)
        pts = marks[rel]
        x0, y0 = np.floor(pts.min(axis=0)).astype(int)
        x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
        box = np.zeros_like(seen)
        box[max(0, y0) : y1 + 1, max(0, x0) : x1 + 1] = True
        total = float(heat.sum())
        if total <= 0:
            continue
        shares.append(float(heat[box].sum()) / total)
        uniform.append(float((box & seen).sum()) / float(seen.sum()))
    shares_a, uniform_a = np.asarray(shares), np.asarray(uniform)
    ratio = shares_a / uniform_a

    randomisation = []
    for step, layers in _cascade(model):
        rhos = []
        for seed in range(args.seeds):
            _, rcams = _cams(_session(_randomised(model, spec, backbone, layers, seed + 100)), images.x)
            for k in range(len(images.x)):
                a, b = cams[k, ..., labels[k]].ravel(), rcams[k, ..., labels[k]].ravel()
                rho = spearmanr(a, b).statistic
                rhos.append(0.0 if np.isnan(rho) else float(rho))
        r = np.asarray(rhos)
        randomisation.append(
            {
                "randomised": step,
                "spearman_mean": float(r.mean()),
                "spearman_sd": float(r.std()),
                "spearman_abs_mean": float(np.abs(r).mean()),
                "share_above_0.5": float((r > 0.5).mean()),
            }
        )

    result = {
        "run": str(args.run),
        "model": spec.name,
        "images": len(images.x),
        "grid": list(cams.shape[1:3]),
        "accuracy_on_these_images": float((labels == images.y).mean()),
        "mass_in_spine_box": {
            "images": len(shares),
            "heatmap_share_mean": float(shares_a.mean()),
            "heatmap_share_sd": float(shares_a.std()),
            "uniform_share_mean": float(uniform_a.mean()),
            "ratio_mean": float(ratio.mean()),
            "ratio_median": float(np.median(ratio)),
            "images_above_uniform": float((shares_a > uniform_a).mean()),
        },
        "randomisation": randomisation,
        "seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "heatmap_sanity.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    m = result["mass_in_spine_box"]
    accuracy = result["accuracy_on_these_images"]
    print(f"{spec.name}: {len(images.x)} test phantoms, CAM grid {result['grid']}, accuracy {accuracy:.3f}")
    print(
        f"heatmap mass in the spine box {m['heatmap_share_mean']:.3f} ± {m['heatmap_share_sd']:.3f} "
        f"vs uniform {m['uniform_share_mean']:.3f} (ratio mean {m['ratio_mean']:.2f}, "
        f"median {m['ratio_median']:.2f}; above uniform on {m['images_above_uniform']:.0%} of images)"
    )
    for r in randomisation:
        rho = f"{r['spearman_mean']:+.3f} ± {r['spearman_sd']:.3f}"
        print(f"randomised {r['randomised']:<22} Spearman rho {rho}")
    print(f"written {out / 'heatmap_sanity.json'} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
