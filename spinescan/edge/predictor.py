"""The edge predictor: classify and measure radiographs with exported ONNX models, without TensorFlow.

Part of the light "predictor island" (numpy, OpenCV, onnxruntime): importing or running it never
imports TensorFlow, so it runs on a clinic laptop or a Raspberry Pi. Models are loaded and checked
by :mod:`spinescan.edge.onnxmodel`; images go through the same
:func:`spinescan.edge.preprocess.preprocess` and :func:`spinescan.edge.imageio.read_image` the
trainer uses. This module runs films through them: one film (:func:`predict_image`), a stream of
files with bounded memory (:func:`iter_results`), heatmap and landmark overlays, and the
``spinescan-predict`` command.

The export also writes ``exported/predict.py``: the light-island modules inlined into one file that
needs only onnxruntime, numpy and opencv-python-headless. For that reason this module imports only
light-island modules.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from spinescan.edge.imageio import MIN_SIDE, find_images, read_image
from spinescan.edge.measure import write_overlay
from spinescan.edge.onnxmodel import (
    CAM_NAME,
    DEFAULT_MODELS_DIR,
    DEVICES,
    EXPORT_HINT,
    FORMAT_KEY,
    FORMAT_VERSION,
    MANIFEST_NAME,
    OUTPUT_NAME,
    POINTS_OUTPUT,
    ModelInfo,
    ModelRefusedError,
    OnnxModel,
    load_model,
    manifest_files,
    model_paths,
    parse_metadata,
    providers_for,
    read_manifest,
    resolve_model,
    sha256_file,
    verify_against_manifest,
)
from spinescan.errors import ImageReadError, SpineScanError

# Re-exported: callers (the exporter, tests, predict.py users) know them as predictor.X.
__all__ = [
    "CAM_NAME",
    "DEFAULT_MODELS_DIR",
    "EXPORT_HINT",
    "FORMAT_KEY",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "OUTPUT_NAME",
    "POINTS_OUTPUT",
    "ModelInfo",
    "ModelRefusedError",
    "OnnxModel",
    "classify_files",
    "iter_results",
    "load_model",
    "main",
    "manifest_files",
    "model_paths",
    "parse_metadata",
    "predict_image",
    "read_manifest",
    "resolve_model",
    "sha256_file",
    "verify_against_manifest",
]

#: Images per onnxruntime call when classifying many files. Only the small model-input tensors
#: are batched: each file is decoded, preprocessed for every model and dropped before the next
#: one is read, so peak memory is one decoded image plus CHUNK input tensors per model.
CHUNK = 16


def predict_image(
    path: str | os.PathLike[str],
    model: str = "generalist",
    models_dir: str | os.PathLike[str] | None = None,
    heatmap: bool = False,
) -> dict[str, Any]:
    """Classify one image: ``{"label", "probabilities": {class: p}, "model"}``.

    ``model`` is an exported model's name (looked up in ``models_dir``, default ``exported/``) or
    a path to an ``.onnx`` file. ``heatmap=True`` adds ``"heatmap"``: the predicted class's
    normalised CAM grid, its raw values and the crop/letterbox geometry that places it on the film.
    Raises :class:`~spinescan.errors.ImageReadError` for a bad image and
    :class:`ModelRefusedError` for a bad model.
    """
    onnx_model = load_model(resolve_model(model, models_dir))
    image = read_image(path, min_side=MIN_SIDE)
    x, context = onnx_model.prepare(image)
    if onnx_model.info.task == "landmarks":
        return onnx_model.result(onnx_model.predict(x[None])[0], context)
    probs, cam = onnx_model.predict_cam(x[None])
    result = onnx_model.result(probs[0])
    if heatmap:
        result["heatmap"] = onnx_model.heatmap(image, probs[0], None if cam is None else cam[0])
    return result


# --- many images -------------------------------------------------------------------------------


def _stderr_warning(message: str) -> None:
    print(f"spinescan-predict: warning: {message}", file=sys.stderr)


def expand_inputs(items: list[str], warn: Callable[[str], None] = _stderr_warning) -> list[Path]:
    """Files named on the command line, plus the images found (recursively) in named folders.

    A named file is always kept (so a bad one gets an error entry); in a folder only image
    candidates are, so a ``manifest.csv`` next to the films is not reported as a failure.
    Symlinked folders are followed; a symlink loop is reported through ``warn``, one line each.
    """
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            paths.extend(find_images(path, warn))
        else:
            paths.append(path)
    return paths


def _read_error(path: Path, exc: Exception) -> str:
    if isinstance(exc, ImageReadError):
        return str(exc)
    if isinstance(exc, SpineScanError):  # e.g. DICOM without pydicom installed
        return f"{path}: {exc}"
    first = (str(exc).strip().splitlines() or [""])[0]  # a decoder bug must not end the whole run
    return f"{path}: cannot read ({type(exc).__name__}: {first})"


def iter_results(
    paths: list[Path], models: list[OnnxModel], heatmap: bool = False, overlay_dir: Path | None = None
) -> Iterator[dict[str, Any]]:
    """:func:`classify_files`, one result at a time, in input order.

    Files are streamed: each is decoded, turned into every model's (small) input tensor and
    dropped before the next is read; the tensors go to onnxruntime CHUNK images at a time. Peak
    memory is therefore one decoded image (bounded by the reader's byte limit) plus CHUNK input
    tensors per model, whatever the folder holds.
    """
    pending: list[tuple[Path, list[tuple[np.ndarray, Any]] | str]] = []

    def flush() -> Iterator[dict[str, Any]]:
        ready = [i for i, (_p, item) in enumerate(pending) if not isinstance(item, str)]
        probs: dict[int, list[np.ndarray | str]] = {i: [] for i in ready}
        for m, model in enumerate(models):
            if not ready:
                break
            batch = np.stack([pending[i][1][m][0] for i in ready])  # type: ignore[index]
            try:
                out = model.predict(batch)
            except Exception as exc:  # noqa: BLE001 - onnxruntime errors: report, keep going
                out = [f"{model.name}: inference failed ({str(exc).strip().splitlines()[0]})"] * len(ready)
            for i, p in zip(ready, out, strict=True):
                probs[i].append(p)
        for i, (path, item) in enumerate(pending):
            if isinstance(item, str):
                yield {"image": str(path), "error": item}
                continue
            for m, (model, p) in enumerate(zip(models, probs[i], strict=True)):
                if isinstance(p, str):
                    yield {"image": str(path), "model": model.name, "error": f"{path}: {p}"}
                elif not np.all(np.isfinite(p)):
                    yield {
                        "image": str(path),
                        "model": model.name,
                        "error": f"{path}: {model.name} gave non-finite probabilities (a broken model)",
                    }
                else:
                    yield {"image": str(path), **model.result(p, item[m][1])}
        pending.clear()

    explain = heatmap or overlay_dir is not None
    written: set[str] = set()  # overlay names already used in this call (films may share a name)
    for path in paths:
        try:
            image = read_image(path, min_side=MIN_SIDE)  # a 1 x 1 film is refused, not classified
            tensors: list[Any] | str = [] if explain else [mo.prepare(image) for mo in models]
        except Exception as exc:  # noqa: BLE001 - one bad file is one error entry, never a crash
            image, tensors = None, _read_error(path, exc)
        if explain and image is not None:
            yield from flush()  # results stay in input order
            yield from _explain(path, image, models, heatmap, overlay_dir, written)
        else:
            pending.append((path, tensors))
        image = None  # drop the decoded image before the next file is read
        if len(pending) >= CHUNK:
            yield from flush()
    yield from flush()


def _explain(
    path: Path,
    image: np.ndarray,
    models: list[OnnxModel],
    heatmap: bool,
    overlay_dir: Path | None,
    written: set[str],
) -> Iterator[dict[str, Any]]:
    """One film through every model with what explains its answer: a classifier's class activation
    map, a landmark model's landmarks and angle lines. Heatmap entries and overlay PNGs need the
    decoded film, so this path runs film by film: memory stays one decoded image."""
    for model in models:
        if model.info.task == "landmarks":
            yield _explain_landmarks(path, image, model, overlay_dir, written)
            continue
        try:
            probs, cam = model.predict_cam(model.prepare(image)[0][None])
        except Exception as exc:  # noqa: BLE001 - onnxruntime errors: report, keep going
            first = (str(exc).strip().splitlines() or [""])[0]
            failed = f"{path}: {model.name}: inference failed ({first})"
            yield {"image": str(path), "model": model.name, "error": failed}
            continue
        if not np.all(np.isfinite(probs[0])):
            yield {
                "image": str(path),
                "model": model.name,
                "error": f"{path}: {model.name} gave non-finite probabilities (a broken model)",
            }
            continue
        result = {"image": str(path), **model.result(probs[0])}
        entry = model.heatmap(image, probs[0], None if cam is None else cam[0])
        if overlay_dir is not None:
            result["overlay"] = _write_overlay(overlay_dir, path, image, model, result, entry, written)
        if heatmap:
            result["heatmap"] = entry
        yield result


def _explain_landmarks(
    path: Path, image: np.ndarray, model: OnnxModel, overlay_dir: Path | None, written: set[str]
) -> dict[str, Any]:
    """A landmark model's entry for one film, with its overlay (landmarks, end-vertebra lines and
    angles drawn on the film) when ``overlay_dir`` is given."""
    try:
        x, context = model.prepare(image)
        out = model.predict(x[None])[0]
        reading = model.read(out, context)
    except Exception as exc:  # noqa: BLE001 - onnxruntime errors: report, keep going
        first = (str(exc).strip().splitlines() or [""])[0]
        failed = f"{path}: {model.name}: inference failed ({first})"
        return {"image": str(path), "model": model.name, "error": failed}
    result = {"image": str(path), **model.result(out, context, reading)}
    if overlay_dir is not None:
        target = overlay_dir / _overlay_name(path, model, written)
        try:
            result["overlay"] = str(write_overlay(image, reading, target))
        except OSError as exc:  # a failed drawing must not lose the measurement
            result["overlay_error"] = f"{target}: {exc}"
    return result


def _overlay_name(path: Path, model: OnnxModel, written: set[str]) -> str:
    """``<film stem>.<model>.png``, with ``-2``, ``-3``... when film names repeat in one call."""
    stem = path.stem if path.stem else "image"
    name, n = f"{stem}.{model.name}.png", 1
    while name in written:
        n += 1
        name = f"{stem}-{n}.{model.name}.png"
    written.add(name)
    return name


def classify_files(
    paths: list[Path], models: list[OnnxModel], heatmap: bool = False, overlay_dir: Path | None = None
) -> list[dict[str, Any]]:
    """One result per (image, model), or one ``{"image", "error"}`` per image that cannot be read.

    Each image is decoded once; bad images are recorded and the rest are still classified.
    ``heatmap`` adds each classifier result's heatmap entry; ``overlay_dir`` writes one PNG per
    image and model there (a classifier's predicted-class heatmap, a landmark model's landmarks and
    angle lines over the film) and records its path.
    """
    return list(iter_results(paths, models, heatmap, overlay_dir))


def _write_overlay(
    folder: Path,
    path: Path,
    image: np.ndarray,
    model: OnnxModel,
    result: dict[str, Any],
    entry: dict[str, Any],
    written: set[str],
) -> str | None:
    """``<folder>/<film stem>.<model>.png`` (``-2``, ``-3``... when stems repeat): the film with
    its predicted class's heatmap."""
    from spinescan.edge import overlay  # noqa: PLC0415

    caption = [f"{model.name}: {result['label']} p={result['probabilities'][result['label']]:.3f}"]
    heat = None
    if "grid" in entry:
        geom = overlay.geometry(image, model.info.input_size, model.info.preprocessing)
        heat = overlay.film_heatmap(np.asarray(entry["cam"], dtype=np.float32), geom)
        caption.append(f"{entry['class']} {overlay.DISCLAIMER}")
    else:
        caption.append(entry.get("error", "no heatmap"))
    target = folder / _overlay_name(path, model, written)
    try:
        overlay.write_png(target, overlay.render(image, heatmap=heat, caption=caption))
    except OSError as exc:
        result["overlay_error"] = f"{target}: {exc}"
        return None
    return str(target)


def format_table(results: list[dict[str, Any]], top: int | None = None) -> str:
    """A human-readable table: one line per image and model, classes by decreasing probability."""
    if not results:
        return "No images."
    image_w = min(60, max(len(r["image"]) for r in results))
    model_w = max([len(r.get("model", "")) for r in results] + [5])
    label_w = max([len(r.get("label") or "") for r in results] + [5])
    kinds = ["measurements" in r for r in results if "error" not in r]
    what = "measurements (deg)" if kinds and all(kinds) else "probabilities"
    lines = [f"{'image':<{image_w}}  {'model':<{model_w}}  {'label':<{label_w}}  {what}"]
    for r in results:
        if "error" in r:
            lines.append(f"{r['image']:<{image_w}}  ERROR  {r['error']}")
            continue
        if "measurements" in r:
            probs = "  ".join(f"{k} {'-' if v is None else f'{v:.1f}'}" for k, v in r["measurements"].items())
            lines.append(
                f"{r['image']:<{image_w}}  {r['model']:<{model_w}}  {r['label'] or '-':<{label_w}}  {probs}"
            )
            continue
        ranked = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[: top or None]
        probs = "  ".join(f"{c} {p:.3f}" for c, p in ranked)
        lines.append(f"{r['image']:<{image_w}}  {r['model']:<{model_w}}  {r['label']:<{label_w}}  {probs}")
    return "\n".join(lines)


def _add_top(results: list[dict[str, Any]], top: int) -> None:
    for r in results:
        if "probabilities" in r:
            ranked = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:top]
            r["top"] = [{"label": c, "probability": p} for c, p in ranked]


def _of_view(models: list[OnnxModel], view: str) -> list[OnnxModel]:
    """The models trained on films of ``view``; none is a refusal, not an empty table."""
    kept = [m for m in models if m.info.view == view]
    if not kept:
        have = ", ".join(sorted({f"{m.info.name} ({m.info.view})" for m in models}))
        raise ModelRefusedError(f"no {view} model among {have}")
    return kept


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spinescan-predict",
        description="Classify spine radiographs with exported ONNX models (no TensorFlow needed).",
        epilog="Exit status: 0 all images classified, 1 some images could not be read, "
        "2 bad arguments or a refused model.",
    )
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files or folders")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="one exported .onnx file")
    source.add_argument(
        "--models", help=f"a folder of exported models, used side by side (default: {DEFAULT_MODELS_DIR}/)"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    parser.add_argument("--top", type=int, metavar="K", help="show only the K most probable classes")
    parser.add_argument("--int8", action="store_true", help="use the int8 model where one was shipped")
    parser.add_argument(
        "--overlay",
        metavar="DIR",
        help="write one PNG per image and model into DIR: a classifier's predicted-class heatmap over "
        "the film (a quality check, not a localisation claim); a landmark model's landmarks, "
        "end-vertebra lines and angles",
    )
    parser.add_argument(
        "--heatmap", action="store_true", help="with --json: include each result's heatmap grid and geometry"
    )
    parser.add_argument(
        "--view",
        choices=["lateral", "ap"],
        help="run only the models of this view (a lateral model says nothing useful about an AP film)",
    )
    parser.add_argument(
        "--device",
        choices=list(DEVICES),
        default=os.environ.get("SPINESCAN_DEVICE") or "cpu",
        help="onnxruntime execution provider: cpu, gpu (CUDA; an error when absent) or auto (GPU when "
        "present); default $SPINESCAN_DEVICE or cpu",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """``spinescan-predict``: exit 0 when every image was classified, 1 when some failed."""
    args = _parser().parse_args(argv)
    if args.top is not None and args.top < 1:
        print("spinescan-predict: error: --top must be at least 1", file=sys.stderr)
        return 2
    try:
        providers_for(args.device)  # a GPU asked for and absent is said before any model is read
        if args.model:
            paths = [Path(args.model)]
        else:
            paths = model_paths(args.models or DEFAULT_MODELS_DIR, int8=args.int8)
        models = [OnnxModel(p, device=args.device) for p in paths]
        if args.view:
            models = _of_view(models, args.view)
    except SpineScanError as exc:
        print(f"spinescan-predict: error: {exc}", file=sys.stderr)
        return 2
    views = sorted({m.info.view for m in models})
    if len(views) > 1:
        print(
            f"spinescan-predict: note: the models cover several views ({', '.join(views)}) and each "
            "image goes through all of them; pass --view to use only the models of the film's view",
            file=sys.stderr,
        )
    images = expand_inputs(args.inputs)
    if not images:
        print("spinescan-predict: error: no images found in the given folders", file=sys.stderr)
        return 1
    if args.heatmap and not args.json:
        print("spinescan-predict: note: --heatmap adds the map to --json output only", file=sys.stderr)
    overlay_dir = Path(args.overlay) if args.overlay else None
    if overlay_dir is not None and overlay_dir.exists() and not overlay_dir.is_dir():
        print(f"spinescan-predict: error: --overlay {overlay_dir} is a file, not a folder", file=sys.stderr)
        return 2
    results = classify_files(images, models, heatmap=args.heatmap, overlay_dir=overlay_dir)
    if args.top:
        _add_top(results, args.top)
    if args.json:
        print(json.dumps(results, indent=2, allow_nan=False))  # NaN would not be valid JSON
    else:
        print(format_table(results, args.top))
    failed = len({r["image"] for r in results if "error" in r})
    if failed:
        print(f"{failed} of {len(images)} image(s) could not be classified", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
