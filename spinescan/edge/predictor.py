"""The edge predictor: classify radiographs with exported ONNX models, without TensorFlow.

Part of the light "predictor island" (numpy, OpenCV, onnxruntime): importing or running it never
imports TensorFlow, so it runs on a clinic laptop or a Raspberry Pi. Everything a model needs
(classes in output order, input size, the exact preprocessing) is read from the ONNX file's
``metadata_props``, written by ``spinescan export``; nothing about a model is repeated here, so a
model file cannot be fed the wrong tensors. Images go through the same
:func:`spinescan.edge.preprocess.preprocess` and :func:`spinescan.edge.imageio.read_image` the trainer uses.

The export also writes ``exported/predict.py``: this module, ``imageio``, ``preprocess`` and
``errors`` inlined into one file that needs only onnxruntime, numpy and opencv-python-headless.
For that reason this module imports only light-island modules (``measure`` reads landmark models).

A model is refused (:class:`ModelRefusedError`) when its metadata is missing or malformed, or when
a ``manifest.json`` beside it records a different sha256: a swapped or corrupted file must not
silently classify patients.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spinescan.edge.imageio import MIN_SIDE, find_images, read_image
from spinescan.edge.measure import (
    measurements_json,
    points_json,
    read_landmarks,
    write_overlay,
)
from spinescan.edge.preprocess import Preprocessing, preprocess, preprocess_placed
from spinescan.errors import ImageReadError, SpineScanError

#: ``metadata_props`` keys written by the export. ``FORMAT_KEY`` marks a Spine Scan model.
FORMAT_KEY = "spinescan_format"
FORMAT_VERSION = "1"
REQUIRED_KEYS = (FORMAT_KEY, "model_name", "classes", "input_size", "preprocessing")
MANIFEST_NAME = "manifest.json"
DEFAULT_MODELS_DIR = "exported"
OUTPUT_NAME = "probabilities"
#: A landmark model's output (N, K, >= 3): normalised x, y and a visibility logit per point.
POINTS_OUTPUT = "points"
TASKS = ("classification", "landmarks")
#: Images per onnxruntime call when classifying many files. Only the small model-input tensors
#: are batched: each file is decoded, preprocessed for every model and dropped before the next
#: one is read, so peak memory is one decoded image plus CHUNK input tensors per model.
CHUNK = 16


class ModelRefusedError(SpineScanError):
    """An ONNX file that must not be used: unreadable, not ours, or not the file the manifest lists."""


# --- model files and their metadata ------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """What the predictor knows about one model, all of it read from the ONNX metadata."""

    name: str
    classes: tuple[str, ...]
    view: str
    input_size: tuple[int, int, int]
    preprocessing: Preprocessing
    metadata: dict[str, str]
    # ``classification`` (older files carry no task) or ``landmarks`` (points and measurements).
    task: str = "classification"
    landmarks: tuple[str, ...] = ()
    measurements: tuple[str, ...] = ()


def parse_metadata(meta: dict[str, str], source: str = "model") -> ModelInfo:
    """Rebuild :class:`ModelInfo` from ``metadata_props``; refuse anything missing or malformed."""
    missing = [key for key in REQUIRED_KEYS if not meta.get(key)]
    if missing:
        raise ModelRefusedError(
            f"{source}: missing Spine Scan metadata ({', '.join(missing)}); "
            "only files written by 'spinescan export --onnx' can be used"
        )
    if meta[FORMAT_KEY] != FORMAT_VERSION:
        raise ModelRefusedError(
            f"{source}: metadata format {meta[FORMAT_KEY]!r} is not supported (expected {FORMAT_VERSION})"
        )
    try:
        classes = tuple(str(c) for c in json.loads(meta["classes"]))
        input_size = tuple(int(v) for v in json.loads(meta["input_size"]))
        prep_dict = json.loads(meta["preprocessing"])
        unknown = sorted(set(prep_dict) - set(Preprocessing().to_dict()))
        if unknown:
            raise ModelRefusedError(
                f"{source}: preprocessing settings {unknown} are unknown to this predictor; "
                "use the predictor written by the same export (predict.py) or a newer spinescan"
            )
        prep = Preprocessing.from_dict(prep_dict)
        task = meta.get("task", "classification")
        landmarks = tuple(str(n) for n in json.loads(meta.get("landmarks", "[]")))
        measurements = tuple(str(n) for n in json.loads(meta.get("measurements", "[]")))
    except (ValueError, TypeError) as exc:
        raise ModelRefusedError(f"{source}: malformed metadata ({exc})") from None
    if len(classes) < 2 or len(input_size) != 3:
        raise ModelRefusedError(f"{source}: malformed metadata (classes {classes}, input size {input_size})")
    if task not in TASKS:
        raise ModelRefusedError(
            f"{source}: task {task!r} is unknown to this predictor (knows {', '.join(TASKS)})"
        )
    if task == "landmarks" and (
        not landmarks or not measurements or meta.get("view") not in ("ap", "lateral")
    ):
        raise ModelRefusedError(f"{source}: a landmark model needs landmark names, measurements and a view")
    return ModelInfo(
        name=meta["model_name"],
        classes=classes,
        view=meta.get("view", ""),
        input_size=(input_size[0], input_size[1], input_size[2]),
        preprocessing=prep,
        metadata=dict(meta),
        task=task,
        landmarks=landmarks,
        measurements=measurements,
    )


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(models_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``manifest.json`` of an export folder, or ``None`` when there is none."""
    path = Path(models_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelRefusedError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ModelRefusedError(f"{path}: not a Spine Scan export manifest")
    return data


def manifest_files(entry: dict[str, Any]) -> dict[str, str]:
    """``{file name: sha256}`` of every model file one manifest entry ships (fp32, int8 if shipped)."""
    files = {entry["file"]: entry["sha256"]} if entry.get("file") else {}
    int8 = entry.get("int8") or {}
    if int8.get("shipped") and int8.get("file"):
        files[int8["file"]] = int8["sha256"]
    return files


def verify_against_manifest(path: Path) -> None:
    """Refuse a model that the ``manifest.json`` beside it does not list with this exact sha256.

    A symlinked model (``exported/x.onnx -> current/x.onnx``, see the exporter) is checked against
    the manifest beside its target, so a switch to a new export between the two reads cannot pair
    one export's manifest with another's model.
    """
    path = Path(os.path.realpath(path))
    manifest = read_manifest(path.parent)
    if manifest is None:
        return
    expected = None
    for entry in manifest["models"].values():
        expected = manifest_files(entry).get(path.name, expected)
    if expected is None:
        raise ModelRefusedError(
            f"{path}: not listed in {path.parent / MANIFEST_NAME}; refusing a file the export did not write"
        )
    actual = sha256_file(path)
    if actual != expected:
        raise ModelRefusedError(
            f"{path}: sha256 {actual[:12]}... does not match the manifest ({expected[:12]}...); "
            "the file was changed or corrupted after export - export it again"
        )


class OnnxModel:
    """One exported model in an onnxruntime session: ``predict(batch) -> probabilities``."""

    def __init__(self, path: str | os.PathLike[str], verify: bool = True) -> None:
        import onnxruntime as ort  # noqa: PLC0415 - keeps `import spinescan.edge.predictor` cheap

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelRefusedError(f"{self.path}: model file not found")
        real = os.path.realpath(self.path)  # the file that is verified is the file that is loaded
        if verify:
            verify_against_manifest(Path(real))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(real, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for bad files
            raise ModelRefusedError(f"{self.path}: not a loadable ONNX model ({exc})") from None
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self.info = parse_metadata(meta, str(self.path))
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelRefusedError(f"{self.path}: expected one input, found {len(inputs)}")
        self.input_name = inputs[0].name
        dims = [d if isinstance(d, int) else None for d in inputs[0].shape]
        fixed = zip(dims[1:], self.info.input_size, strict=False)
        if len(dims) != 4 or any(d not in (None, e) for d, e in fixed):
            raise ModelRefusedError(
                f"{self.path}: input shape {inputs[0].shape} disagrees with metadata {self.info.input_size}"
            )
        outputs = {o.name: o for o in self.session.get_outputs()}
        wanted = POINTS_OUTPUT if self.info.task == "landmarks" else OUTPUT_NAME
        self.output_name = wanted if wanted in outputs else next(iter(outputs))
        shape = outputs[self.output_name].shape
        if self.info.task == "landmarks":
            if len(shape) != 3 or (
                shape[1] not in (None, len(self.info.landmarks)) and isinstance(shape[1], int)
            ):
                raise ModelRefusedError(
                    f"{self.path}: output shape {shape} disagrees with {len(self.info.landmarks)} landmarks"
                )
            return
        width = shape[-1]
        if isinstance(width, int) and width != len(self.info.classes):
            raise ModelRefusedError(
                f"{self.path}: {width} outputs but the metadata names {len(self.info.classes)} classes"
            )

    @property
    def name(self) -> str:
        return self.info.name

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, Any]:
        """The model's input tensor for one decoded image (the shared preprocessing), and what
        reading its output needs besides: nothing for a classifier; for a landmark model where
        the film went in the input (:class:`~spinescan.edge.preprocess.Placement`) and its size."""
        if self.info.task == "landmarks":
            x, placement = preprocess_placed(image, self.info.input_size, self.info.preprocessing)
            return x, (placement, tuple(image.shape[:2]))
        return preprocess(image, self.info.input_size, self.info.preprocessing), None

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (N, classes) for an (N, H, W, C) float32 batch."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def read(self, output: np.ndarray, context: Any) -> dict[str, Any]:
        """A landmark model's output for one film -> landmarks (film pixels), angles, label."""
        placement, image_hw = context
        return read_landmarks(output, placement, self.info.view, self.info.input_size[:2], image_hw)

    def result(
        self, output: np.ndarray, context: Any = None, reading: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The JSON entry of one film. A landmark model's: ``measurements`` (degrees, manifest
        names; ``null`` when not measurable, with the reason in ``reasons``), ``landmarks`` as
        ``[x, y]`` in the input image's pixels (``null`` for a point judged not visible; 68 corners
        T1..L5 TL, TR, BL, BR, then the S1 endplate's left and right ends), and the ``label`` that
        the angles imply (``null`` with ``label_reason`` when they imply none)."""
        if self.info.task == "landmarks":
            r = reading if reading is not None else self.read(output, context)
            m = measurements_json(r["angles"], self.info.measurements)
            out = {
                "model": self.name,
                "task": "landmarks",
                "label": r["label"],
                "measurements": m["measurements"],
                "reasons": m["missing"],
                "landmarks": points_json(r["landmarks"], r["sacrum"]),
            }
            if r["label_reason"]:
                out["label_reason"] = r["label_reason"]
            if m["notes"]:
                out["notes"] = m["notes"]
            return out
        probs = output
        probabilities = {c: float(p) for c, p in zip(self.info.classes, probs, strict=True)}
        return {
            "model": self.name,
            "label": self.info.classes[int(np.argmax(probs))],
            "probabilities": probabilities,
        }


# --- which models ------------------------------------------------------------------------------


def model_paths(models_dir: str | os.PathLike[str], int8: bool = False) -> list[Path]:
    """The model files of an export folder: those its manifest lists (the int8 file where one
    was shipped and ``int8`` is asked for), else every ``*.onnx`` that is not an int8 copy."""
    folder = Path(models_dir)
    if not folder.is_dir():
        raise ModelRefusedError(f"models folder not found: {folder}")
    # An export switched in one step (exported/manifest.json -> current/...): the manifest is read
    # from the version it points to; each model is then checked against its own version's manifest.
    manifest = read_manifest(Path(os.path.realpath(folder / MANIFEST_NAME)).parent)
    if manifest is None:
        paths = sorted(p for p in folder.glob("*.onnx") if not p.name.endswith(".int8.onnx"))
    else:
        paths = []
        for entry in manifest["models"].values():
            chosen = entry["file"]
            if int8 and (entry.get("int8") or {}).get("shipped"):
                chosen = entry["int8"]["file"]
            paths.append(folder / chosen)
    if not paths:
        raise ModelRefusedError(f"no ONNX models in {folder}")
    return paths


def resolve_model(model: str | os.PathLike[str], models_dir: str | os.PathLike[str] | None = None) -> Path:
    """A model given as a file path, or as a name looked up in ``models_dir`` (manifest first)."""
    as_path = Path(model)
    if as_path.suffix == ".onnx" or as_path.is_file():
        return as_path
    folder = Path(models_dir or DEFAULT_MODELS_DIR)
    manifest = read_manifest(folder)
    if manifest is not None:
        entry = manifest["models"].get(str(model))
        if entry is None:
            known = ", ".join(sorted(manifest["models"])) or "none"
            raise ModelRefusedError(f"no exported model {str(model)!r} in {folder} (exported: {known})")
        return folder / entry["file"]
    return folder / f"{model}.onnx"


_SESSIONS: dict[tuple[str, int, int], OnnxModel] = {}


def load_model(path: str | os.PathLike[str]) -> OnnxModel:
    """An :class:`OnnxModel`, cached by path, size and mtime (notebooks call in a loop)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        raise ModelRefusedError(f"{path}: model file not found") from None
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SESSIONS:
        _SESSIONS[key] = OnnxModel(path)
    return _SESSIONS[key]


def predict_image(
    path: str | os.PathLike[str], model: str = "generalist", models_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Classify one image: ``{"label", "probabilities": {class: p}, "model"}``; with a landmark
    model ``{"label", "measurements", "reasons", "landmarks", "model", "task"}`` (:meth:`OnnxModel.result`).

    ``model`` is an exported model's name (looked up in ``models_dir``, default ``exported/``) or
    a path to an ``.onnx`` file. Raises :class:`~spinescan.errors.ImageReadError` for a bad image
    and :class:`ModelRefusedError` for a bad model.
    """
    onnx_model = load_model(resolve_model(model, models_dir))
    x, context = onnx_model.prepare(read_image(path, min_side=MIN_SIDE))
    return onnx_model.result(onnx_model.predict(x[None])[0], context)


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
    paths: list[Path], models: list[OnnxModel], overlay_dir: Path | None = None
) -> Iterator[dict[str, Any]]:
    """:func:`classify_files`, one result at a time, in input order.

    Files are streamed: each is decoded, turned into every model's (small) input tensor and
    dropped before the next is read; the tensors go to onnxruntime CHUNK images at a time. Peak
    memory is therefore one decoded image (bounded by the reader's byte limit) plus CHUNK input
    tensors per model, whatever the folder holds. ``overlay_dir``: a landmark model's reading is
    drawn on the film (read again, only then) into ``overlay_dir/<image stem>.<model>.png``.
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
                    context = item[m][1]
                    reading = model.read(p, context) if model.info.task == "landmarks" else None
                    entry = {"image": str(path), **model.result(p, context, reading)}
                    if overlay_dir is not None and reading is not None:
                        entry["overlay"] = _overlay(path, model, reading, overlay_dir)
                    yield entry
        pending.clear()

    for path in paths:
        try:
            image = read_image(path, min_side=MIN_SIDE)  # a 1 x 1 film is refused, not classified
            tensors: list[np.ndarray] | str = [model.prepare(image) for model in models]
        except Exception as exc:  # noqa: BLE001 - one bad file is one error entry, never a crash
            tensors = _read_error(path, exc)
        image = None  # drop the decoded image before the next file is read
        pending.append((path, tensors))
        if len(pending) >= CHUNK:
            yield from flush()
    yield from flush()


def _overlay(path: Path, model: OnnxModel, reading: dict[str, Any], overlay_dir: Path) -> str:
    """Draw one reading on its film; the PNG's path (or why none was written, never a crash)."""
    target = Path(overlay_dir) / f"{path.stem}.{model.name}.png"
    try:
        write_overlay(read_image(path, min_side=MIN_SIDE), reading, target)
    except Exception as exc:  # noqa: BLE001 - a failed drawing must not lose the measurement
        return f"not written: {type(exc).__name__}: {exc}"
    return str(target)


def classify_files(
    paths: list[Path], models: list[OnnxModel], overlay_dir: Path | None = None
) -> list[dict[str, Any]]:
    """One result per (image, model), or one ``{"image", "error"}`` per image that cannot be read.

    Each image is decoded once; bad images are recorded and the rest are still classified.
    """
    return list(iter_results(paths, models, overlay_dir))


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
        "--view",
        choices=["lateral", "ap"],
        help="run only the models of this view (a lateral model says nothing useful about an AP film)",
    )
    parser.add_argument(
        "--overlay",
        metavar="DIR",
        help="write a PNG per film and landmark model with the landmarks, end-vertebra lines and angles",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """``spinescan-predict``: exit 0 when every image was classified, 1 when some failed."""
    args = _parser().parse_args(argv)
    if args.top is not None and args.top < 1:
        print("spinescan-predict: error: --top must be at least 1", file=sys.stderr)
        return 2
    try:
        if args.model:
            paths = [Path(args.model)]
        else:
            paths = model_paths(args.models or DEFAULT_MODELS_DIR, int8=args.int8)
        models = [OnnxModel(p) for p in paths]
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
    overlay_dir = None
    if args.overlay:
        overlay_dir = Path(args.overlay)
        try:
            overlay_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(
                f"spinescan-predict: error: --overlay {overlay_dir}: {exc.strerror or exc}", file=sys.stderr
            )
            return 2
        if not any(m.info.task == "landmarks" for m in models):
            print(
                "spinescan-predict: note: --overlay draws landmark models only; none is loaded",
                file=sys.stderr,
            )
    results = classify_files(images, models, overlay_dir)
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
