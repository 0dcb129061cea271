"""The edge predictor: classify radiographs with exported ONNX models, without TensorFlow.

Part of the light "predictor island" (numpy, OpenCV, onnxruntime): importing or running it never
imports TensorFlow, so it runs on a clinic laptop or a Raspberry Pi. Everything a model needs
(classes in output order, input size, the exact preprocessing) is read from the ONNX file's
``metadata_props``, written by ``spinescan export``; nothing about a model is repeated here, so a
model file cannot be fed the wrong tensors. Images go through the same
:func:`spinescan.edge.preprocess.preprocess` and :func:`spinescan.edge.imageio.read_image` the trainer uses.

The export also writes ``exported/predict.py``: this module, ``imageio``, ``preprocess`` and
``errors`` inlined into one file that needs only onnxruntime, numpy and opencv-python-headless.
For that reason this module imports nothing else from the package.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spinescan.edge.imageio import is_image_candidate, read_image
from spinescan.edge.preprocess import Preprocessing, preprocess
from spinescan.errors import ImageReadError, SpineScanError

#: ``metadata_props`` keys written by the export. ``FORMAT_KEY`` marks a Spine Scan model.
FORMAT_KEY = "spinescan_format"
FORMAT_VERSION = "1"
REQUIRED_KEYS = (FORMAT_KEY, "model_name", "classes", "input_size", "preprocessing")
MANIFEST_NAME = "manifest.json"
DEFAULT_MODELS_DIR = "exported"
OUTPUT_NAME = "probabilities"
#: Images per onnxruntime call when classifying many files (bounded memory, good throughput).
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
    except (ValueError, TypeError) as exc:
        raise ModelRefusedError(f"{source}: malformed metadata ({exc})") from None
    if len(classes) < 2 or len(input_size) != 3:
        raise ModelRefusedError(f"{source}: malformed metadata (classes {classes}, input size {input_size})")
    return ModelInfo(
        name=meta["model_name"],
        classes=classes,
        view=meta.get("view", ""),
        input_size=(input_size[0], input_size[1], input_size[2]),
        preprocessing=prep,
        metadata=dict(meta),
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
    """Refuse a model that the ``manifest.json`` beside it does not list with this exact sha256."""
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
        if verify:
            verify_against_manifest(self.path)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
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
        self.output_name = OUTPUT_NAME if OUTPUT_NAME in outputs else next(iter(outputs))
        width = outputs[self.output_name].shape[-1]
        if isinstance(width, int) and width != len(self.info.classes):
            raise ModelRefusedError(
                f"{self.path}: {width} outputs but the metadata names {len(self.info.classes)} classes"
            )

    @property
    def name(self) -> str:
        return self.info.name

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """The model's input tensor for one decoded image (the shared preprocessing)."""
        return preprocess(image, self.info.input_size, self.info.preprocessing)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (N, classes) for an (N, H, W, C) float32 batch."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def result(self, probs: np.ndarray) -> dict[str, Any]:
        probabilities = {c: float(p) for c, p in zip(self.info.classes, probs, strict=True)}
        return {
            "model": self.name,
            "label": self.info.classes[int(np.argmax(probs))],
            "probabilities": probabilities,
        }


# --- which models ------------------------------------------------------------------------------


# What to run when there is nothing to load yet (one line, said wherever models are missing).
EXPORT_HINT = "make them with `spinescan train generalist` then `spinescan export --onnx` (writes exported/)"


def model_paths(models_dir: str | os.PathLike[str], int8: bool = False) -> list[Path]:
    """The model files of an export folder: those its manifest lists (the int8 file where one
    was shipped and ``int8`` is asked for), else every ``*.onnx`` that is not an int8 copy."""
    folder = Path(models_dir)
    if not folder.is_dir():
        raise ModelRefusedError(f"models folder not found: {folder}; {EXPORT_HINT}")
    manifest = read_manifest(folder)
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
        raise ModelRefusedError(f"no ONNX models in {folder}; {EXPORT_HINT}")
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
    if not (folder / f"{model}.onnx").is_file():
        raise ModelRefusedError(
            f"no exported model {str(model)!r} in {folder}: train and export it first "
            f"(`spinescan train {model}` then `spinescan export --onnx --out {folder}`)"
        )
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
    """Classify one image: ``{"label", "probabilities": {class: p}, "model"}``.

    ``model`` is an exported model's name (looked up in ``models_dir``, default ``exported/``) or
    a path to an ``.onnx`` file. Raises :class:`~spinescan.errors.ImageReadError` for a bad image
    and :class:`ModelRefusedError` for a bad model.
    """
    onnx_model = load_model(resolve_model(model, models_dir))
    x = onnx_model.prepare(read_image(path))[None]
    return onnx_model.result(onnx_model.predict(x)[0])


# --- many images -------------------------------------------------------------------------------


def expand_inputs(items: list[str]) -> list[Path]:
    """Files named on the command line, plus the images found (recursively) in named folders.

    A named file is always kept (so a bad one gets an error entry); in a folder only image
    candidates are, so a ``manifest.csv`` next to the films is not reported as a failure.
    """
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            paths.extend(sorted(p for p in path.rglob("*") if p.is_file() and is_image_candidate(p)))
        else:
            paths.append(path)
    return paths


def classify_files(paths: list[Path], models: list[OnnxModel]) -> list[dict[str, Any]]:
    """One result per (image, model), or one ``{"image", "error"}`` per image that cannot be read.

    Each image is decoded once; bad images are recorded and the rest are still classified.
    """
    results: list[dict[str, Any]] = []
    for start in range(0, len(paths), CHUNK):
        chunk = paths[start : start + CHUNK]
        images: dict[int, np.ndarray] = {}
        errors: dict[int, str] = {}
        for i, path in enumerate(chunk):
            try:
                images[i] = read_image(path)
            except ImageReadError as exc:
                errors[i] = str(exc)
            except SpineScanError as exc:  # e.g. DICOM without pydicom installed
                errors[i] = f"{path}: {exc}"
        probs: dict[int, list[np.ndarray]] = {i: [] for i in images}
        for model in models:
            if images:
                batch = np.stack([model.prepare(images[i]) for i in images])
                for i, p in zip(images, model.predict(batch), strict=True):
                    probs[i].append(p)
        for i, path in enumerate(chunk):
            if i in errors:
                results.append({"image": str(path), "error": errors[i]})
                continue
            for model, p in zip(models, probs[i], strict=True):
                results.append({"image": str(path), **model.result(p)})
    return results


def format_table(results: list[dict[str, Any]], top: int | None = None) -> str:
    """A human-readable table: one line per image and model, classes by decreasing probability."""
    if not results:
        return "No images."
    image_w = min(60, max(len(r["image"]) for r in results))
    model_w = max([len(r.get("model", "")) for r in results] + [5])
    label_w = max([len(r.get("label", "")) for r in results] + [5])
    lines = [f"{'image':<{image_w}}  {'model':<{model_w}}  {'label':<{label_w}}  probabilities"]
    for r in results:
        if "error" in r:
            lines.append(f"{r['image']:<{image_w}}  ERROR  {r['error']}")
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
    results = classify_files(images, models)
    if args.top:
        _add_top(results, args.top)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(format_table(results, args.top))
    failed = sum(1 for r in results if "error" in r)
    if failed:
        print(f"{failed} of {len(images)} image(s) could not be classified", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
