"""The edge predictor: classify and measure radiographs with exported ONNX models, without TensorFlow.

Part of the light "predictor island" (numpy, OpenCV, onnxruntime): importing or running it never
imports TensorFlow, so it runs on a clinic laptop or a Raspberry Pi. Models are loaded and checked
by :mod:`spinescan.edge.onnxmodel` (metadata: :mod:`~spinescan.edge.model_metadata`, manifest:
:mod:`~spinescan.edge.manifest`, which files: :mod:`~spinescan.edge.model_files`); images go through the same
:func:`spinescan.radiograph.preprocess.preprocess` and :func:`spinescan.radiograph.imageio.read_image` the
trainer uses. This module runs films through them: one film (:func:`predict_image`), a stream of
files with bounded memory (:func:`iter_results`), heatmap and landmark overlays, and the
``spinescan-predict`` command.

The export also writes ``exported/predict.py``: the light-island modules inlined into one file that
needs only onnxruntime, numpy and opencv-python-headless. For that reason this module imports only
light-island modules.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from spinescan.edge.explain import explain_film
from spinescan.edge.guard import (
    GUARD_VIEW,
    guard_entry,
    guard_verdict,
    is_guard,
    skip_reason,
    skipped_entry,
    split_guard,
)
from spinescan.edge.manifest import (
    MANIFEST_NAME,
    manifest_files,
    read_manifest,
    sha256_file,
    verify_against_manifest,
)
from spinescan.edge.model_files import (
    DEFAULT_MODELS_DIR,
    EXPORT_HINT,
    choose_models_dir,
    model_paths,
    resolve_model,
)
from spinescan.edge.model_metadata import FORMAT_KEY, FORMAT_VERSION, ModelInfo, parse_metadata
from spinescan.edge.onnxmodel import (
    CAM_NAME,
    OUTPUT_NAME,
    POINTS_OUTPUT,
    OnnxModel,
    load_model,
    providers_for,
)
from spinescan.edge.predict_args import build_parser
from spinescan.edge.results_table import add_top, format_table
from spinescan.errors import ImageReadError, ModelRefusedError, SpineScanError
from spinescan.radiograph.imageio import MIN_SIDE, find_images, read_image

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
    view: str | None = None,
) -> dict[str, Any]:
    """Classify one image: ``{"label", "probabilities": {class: p}, "model"}``.

    ``model`` is an exported model's name (looked up in ``models_dir``, default ``exported/``) or
    a path to an ``.onnx`` file. ``heatmap=True`` adds ``"heatmap"``: the predicted class's
    normalised CAM grid, its raw values and the crop/letterbox geometry that places it on the film.
    When the model's folder holds a view guard (:mod:`spinescan.edge.guard`) it runs first: a film
    of another view, or one it calls ``other``, gets ``{"model", "label": None, "skipped": reason,
    "view_guard": its entry}`` instead of a reading. ``view`` overrides the guard (it is not run);
    a model of another view is then skipped with that reason.
    Raises :class:`~spinescan.errors.ImageReadError` for a bad image and
    :class:`ModelRefusedError` for a bad model.
    """
    model_path = resolve_model(model, models_dir)
    onnx_model = load_model(model_path)
    image = read_image(path, min_side=MIN_SIDE)
    if view is not None and onnx_model.info.view != view and not is_guard(onnx_model.info):
        why = f"the film is {view} (given); {onnx_model.name} reads {onnx_model.info.view} films"
        return skipped_entry(onnx_model, why)
    guard = None if view is not None or is_guard(onnx_model.info) else _folder_guard(model_path.parent)
    if guard is not None:
        verdict = guard_verdict(guard, image)
        why = skip_reason(verdict, onnx_model)
        if why:
            return {**skipped_entry(onnx_model, why), "view_guard": guard_entry(guard, verdict)}
    x, context = onnx_model.prepare(image)
    if onnx_model.info.task == "landmarks":
        return onnx_model.result(onnx_model.predict(x[None])[0], context)
    probs, cam = onnx_model.predict_cam(x[None])
    result = onnx_model.result(probs[0])
    if heatmap:
        result["heatmap"] = onnx_model.heatmap(image, probs[0], None if cam is None else cam[0])
    return result


def _folder_guard(folder: Path) -> OnnxModel | None:
    """The view guard exported into ``folder`` (its manifest's model of view ``any``, or
    ``view.onnx`` beside models without a manifest), or ``None``."""
    manifest = read_manifest(folder)
    if manifest is not None:
        files = [
            e["file"] for e in manifest["models"].values() if e.get("view") == GUARD_VIEW and e.get("file")
        ]
    else:
        files = ["view.onnx"] if (folder / "view.onnx").is_file() else []
    for name in files:
        candidate = load_model(folder / name)
        if is_guard(candidate.info):
            return candidate
    return None


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


def _plan(
    guard: OnnxModel | None, models: list[OnnxModel], image: np.ndarray, path: Path
) -> tuple[list[dict[str, Any]], list[str | None]]:
    """The view guard's entry (none without a guard) and, per model, why it must not read this
    film (``None``: it may). See :mod:`spinescan.edge.guard`."""
    if guard is None:
        return [], [None] * len(models)
    try:
        verdict = guard_verdict(guard, image)
    except Exception as exc:  # onnxruntime errors: report, read nothing unguarded
        first = (str(exc).strip().splitlines() or [""])[0]
        failed = f"{path}: {guard.name}: inference failed ({first})"
        return [{"model": guard.name, "error": failed}], ["the view guard failed on this film"] * len(models)
    return [guard_entry(guard, verdict)], [skip_reason(verdict, m) for m in models]


def iter_results(
    paths: list[Path], models: list[OnnxModel], heatmap: bool = False, overlay_dir: Path | None = None
) -> Iterator[dict[str, Any]]:
    """:func:`classify_files`, one result at a time, in input order.

    Files are streamed: each is decoded, turned into every model's (small) input tensor and
    dropped before the next is read; the tensors go to onnxruntime CHUNK images at a time. Peak
    memory is therefore one decoded image (bounded by the reader's byte limit) plus CHUNK input
    tensors per model, whatever the folder holds. When ``models`` holds a view guard
    (:mod:`spinescan.edge.guard`) it runs first on each film: its entry comes first, and a model
    of another view (every model, for a film it calls ``other``) gets a ``skipped`` entry with the
    reason instead of a reading.
    """
    guard, models = split_guard(models)
    # (path, per model: (tensor, context) or the reason it is skipped; or the read error, entries first)
    pending: list[tuple[Path, list[Any] | str, list[dict[str, Any]]]] = []

    def flush() -> Iterator[dict[str, Any]]:
        ready = [i for i, (_p, item, _h) in enumerate(pending) if not isinstance(item, str)]
        outs: dict[tuple[int, int], np.ndarray | str] = {}
        for m, model in enumerate(models):
            run = [i for i in ready if not isinstance(pending[i][1][m], str)]
            if not run:
                continue
            batch = np.stack([pending[i][1][m][0] for i in run])  # type: ignore[index]
            try:
                out = model.predict(batch)
            except Exception as exc:  # onnxruntime errors: report, keep going
                out = [f"{model.name}: inference failed ({str(exc).strip().splitlines()[0]})"] * len(run)
            for i, p in zip(run, out, strict=True):
                outs[(i, m)] = p
        for i, (path, item, head) in enumerate(pending):
            if isinstance(item, str):
                yield {"image": str(path), "error": item}
                continue
            for entry in head:
                yield {"image": str(path), **entry}
            for m, model in enumerate(models):
                if isinstance(item[m], str):
                    yield {"image": str(path), **skipped_entry(model, item[m])}
                    continue
                p = outs[(i, m)]
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
        head: list[dict[str, Any]] = []
        try:
            image = read_image(path, min_side=MIN_SIDE)  # a 1 x 1 film is refused, not classified
            head, plan = _plan(guard, models, image, path)
            tensors: list[Any] | str = (
                list(plan)
                if explain
                else [r if r else mo.prepare(image) for mo, r in zip(models, plan, strict=True)]
            )
        except Exception as exc:  # one bad file is one error entry, never a crash
            image, tensors = None, _read_error(path, exc)
        if explain and image is not None:
            yield from flush()  # results stay in input order
            for entry in head:
                yield {"image": str(path), **entry}
            yield from explain_film(path, image, models, heatmap, overlay_dir, written, tensors)  # type: ignore[arg-type]
        else:
            pending.append((path, tensors, head))
        image = None  # drop the decoded image before the next file is read
        if len(pending) >= CHUNK:
            yield from flush()
    yield from flush()


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


def _of_view(models: list[OnnxModel], view: str) -> list[OnnxModel]:
    """The models trained on films of ``view``; none is a refusal, not an empty table."""
    kept = [m for m in models if m.info.view == view]
    if not kept:
        have = ", ".join(sorted({f"{m.info.name} ({m.info.view})" for m in models}))
        raise ModelRefusedError(f"no {view} model among {have}")
    return kept


def main(argv: list[str] | None = None) -> int:
    """``spinescan-predict``: exit 0 when every image was classified, 1 when some failed."""
    args = build_parser().parse_args(argv)
    if args.top is not None and args.top < 1:
        print("spinescan-predict: error: --top must be at least 1", file=sys.stderr)
        return 2
    try:
        providers_for(args.device)  # a GPU asked for and absent is said before any model is read
        if args.model:
            paths, source = [Path(args.model)], f"models: --model {args.model}"
        else:
            chosen = choose_models_dir(args.models)
            paths, source = model_paths(chosen.folder, int8=args.int8), chosen.describe()
        models = [OnnxModel(p, device=args.device) for p in paths]
        if args.view:
            models = _of_view(models, args.view)
    except SpineScanError as exc:
        print(f"spinescan-predict: error: {exc}", file=sys.stderr)
        return 2
    # Which set ran (the bundled one, ./exported or --models): on stderr, so --json stays parseable.
    note = (lambda _line: None) if args.quiet else (lambda line: print(line, file=sys.stderr))
    note(f"spinescan-predict: {source}")
    if args.verbose:
        for m in models:
            h, w = m.info.input_size[:2]
            note(
                f"spinescan-predict: model {m.info.name} ({m.info.view}, {m.info.task}, {h}x{w}): "
                f"{m.path} on {m.session.get_providers()[0]}"
            )
    views = sorted({m.info.view for m in models})
    if split_guard(models)[0] is not None:
        note(
            "spinescan-predict: note: the view guard runs first on each film and picks the models of "
            "its view (--view overrides)"
        )
    elif len(views) > 1:
        note(
            f"spinescan-predict: note: the models cover several views ({', '.join(views)}) and each "
            "image goes through all of them; pass --view to use only the models of the film's view"
        )
    images = expand_inputs(args.inputs)
    if not images:
        print("spinescan-predict: error: no images found in the given folders", file=sys.stderr)
        return 1
    if args.heatmap and not args.json:
        note("spinescan-predict: note: --heatmap adds the map to --json output only")
    overlay_dir = Path(args.overlay) if args.overlay else None
    if overlay_dir is not None and overlay_dir.exists() and not overlay_dir.is_dir():
        print(f"spinescan-predict: error: --overlay {overlay_dir} is a file, not a folder", file=sys.stderr)
        return 2
    results = classify_files(images, models, heatmap=args.heatmap, overlay_dir=overlay_dir)
    if args.top:
        add_top(results, args.top)
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
