"""Exported ONNX models as the edge predictor reads them: metadata, manifest checks, sessions.

Light island (numpy, OpenCV, onnxruntime). Everything a model needs (task, classes or landmark
names in output order, input size, the exact preprocessing) is read from the ONNX file's
``metadata_props``, written by ``spinescan export``; nothing about a model is repeated here, so a
model file cannot be fed the wrong tensors. A model is refused (:class:`ModelRefusedError`) when its
metadata is missing or malformed, or when a ``manifest.json`` beside it records a different sha256:
a swapped or corrupted file must not silently classify patients.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spinescan.edge.measure import measurements_json, points_json, read_landmarks
from spinescan.edge.preprocess import Preprocessing, preprocess, preprocess_placed
from spinescan.errors import SpineScanError

#: ``metadata_props`` keys written by the export. ``FORMAT_KEY`` marks a Spine Scan model.
FORMAT_KEY = "spinescan_format"
FORMAT_VERSION = "1"
REQUIRED_KEYS = (FORMAT_KEY, "model_name", "classes", "input_size", "preprocessing")
MANIFEST_NAME = "manifest.json"
DEFAULT_MODELS_DIR = "exported"
OUTPUT_NAME = "probabilities"
#: Optional second output: one class activation map per class (see ``spinescan.export.onnx_convert``).
CAM_NAME = "cam"
#: A landmark model's output (N, K, >= 3): normalised x, y and a visibility logit per point.
POINTS_OUTPUT = "points"
TASKS = ("classification", "landmarks")
#: ``--device`` values of the predictor and ``spinescan val``: which onnxruntime execution provider runs.
DEVICES = ("cpu", "gpu", "auto")
_GPU_PROVIDER = "CUDAExecutionProvider"
_CPU_PROVIDER = "CPUExecutionProvider"

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


def providers_for(device: str = "cpu", available: list[str] | None = None) -> list[str]:
    """onnxruntime execution providers for ``--device cpu|gpu|auto``.

    ``gpu`` is a promise the user asked for: when this onnxruntime build has no CUDA provider
    (the ``onnxruntime`` wheel is CPU-only; ``onnxruntime-gpu`` has it) that is one clear
    :class:`~spinescan.errors.SpineScanError`, not a silent fall-back to the CPU. ``auto`` takes
    the GPU when there is one, else the CPU.
    """
    if device not in DEVICES:
        raise SpineScanError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")
    if available is None:
        import onnxruntime as ort  # noqa: PLC0415

        available = list(ort.get_available_providers())
    has_gpu = _GPU_PROVIDER in available
    if device == "gpu" and not has_gpu:
        raise SpineScanError(
            f"--device gpu: this onnxruntime has no {_GPU_PROVIDER} "
            f"(it has {', '.join(available) or 'none'}); "
            "install onnxruntime-gpu with a CUDA driver, or use --device cpu"
        )
    if device == "cpu" or not has_gpu:
        return [_CPU_PROVIDER]
    return [_GPU_PROVIDER, _CPU_PROVIDER]


class OnnxModel:
    """One exported model in an onnxruntime session: ``predict(batch) -> probabilities``."""

    def __init__(self, path: str | os.PathLike[str], verify: bool = True, device: str = "cpu") -> None:
        import onnxruntime as ort  # noqa: PLC0415 - keeps `import spinescan.edge.predictor` cheap

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelRefusedError(f"{self.path}: model file not found")
        real = os.path.realpath(self.path)  # the file that is verified is the file that is loaded
        if verify:
            verify_against_manifest(Path(real))
        providers = providers_for(device)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(real, options, providers=providers)
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
        self.cam_name = CAM_NAME if CAM_NAME in outputs and self.info.task == "classification" else None
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

    def predict_cam(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities and class activation maps (N, h, w, classes), or ``None`` without a CAM."""
        if self.cam_name is None:
            return self.predict(batch), None
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        probs, cam = self.session.run([self.output_name, self.cam_name], {self.input_name: batch})
        return probs, cam

    def heatmap(self, image: np.ndarray, probs: np.ndarray, cam: np.ndarray | None) -> dict[str, Any]:
        """The predicted class's heatmap entry for one image (``cam``: its (h, w, classes) maps)."""
        from spinescan.edge import overlay  # noqa: PLC0415

        label = int(np.argmax(probs))
        if cam is None:
            why = json.loads(self.info.metadata.get("cam", "{}") or "{}").get("reason", "no cam output")
            return {"class": self.info.classes[label], "error": f"{self.name} has no heatmap: {why}"}
        geom = overlay.geometry(image, self.info.input_size, self.info.preprocessing)
        return {
            "class": self.info.classes[label],
            "grid": np.round(overlay.normalise_cam(cam[..., label]).astype(float), 4).tolist(),
            "cam": np.round(cam[..., label].astype(float), 5).tolist(),
            "geometry": geom.to_dict(),
            "note": overlay.DISCLAIMER,
        }

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


# What to run when there is nothing to load yet (one line, said wherever models are missing).
EXPORT_HINT = "make them with `spinescan train generalist` then `spinescan export --onnx` (writes exported/)"


def model_paths(models_dir: str | os.PathLike[str], int8: bool = False) -> list[Path]:
    """The model files of an export folder: those its manifest lists (the int8 file where one
    was shipped and ``int8`` is asked for), else every ``*.onnx`` that is not an int8 copy."""
    folder = Path(models_dir)
    if not folder.is_dir():
        raise ModelRefusedError(f"models folder not found: {folder}; {EXPORT_HINT}")
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
