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

from spinescan.edge.modeldoc import METADATA_KEY, DocumentError, ModelDocument, parse_document
from spinescan.errors import SpineScanError
from spinescan.radiograph.measure import measurements_json, points_json, read_landmarks
from spinescan.radiograph.preprocess import Preprocessing, film_placement, preprocess, preprocess_placed

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
#: ``metadata_props`` key (and manifest entry key) of a model exported with ``--allow-weak``: the
#: gate's verdict, one line. Absent for a model that passed the gate.
WEAK_KEY = "weak"
#: The recorded parity sample: a seeded input whose output the export stored in the manifest, so a
#: shipped file can be re-checked anywhere without the training data (:func:`check_parity_sample`).
PARITY_SEED = 0
#: Largest |difference| accepted when re-running the parity sample: fp32 files are bit-stable on one
#: onnxruntime build and within float rounding across CPUs; int8 kernels differ more between CPUs.
PARITY_SAMPLE_TOLERANCE = {"fp32": 1e-4, "int8": 2e-2}
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
    # Why the weak-model gate refused this model, when it was exported anyway (``--allow-weak``);
    # ``None`` for a model that passed. Every result of a weak model carries the mark.
    weak: str | None = None
    # The model document (:mod:`spinescan.edge.modeldoc`) the fields above were read from;
    # ``None`` for an export that predates it (read from the loose keys).
    document: ModelDocument | None = None


def _from_document(meta: dict[str, str], source: str) -> ModelInfo:
    if meta.get(FORMAT_KEY, FORMAT_VERSION) != FORMAT_VERSION:
        raise ModelRefusedError(
            f"{source}: metadata format {meta[FORMAT_KEY]!r} is not supported (expected {FORMAT_VERSION})"
        )
    try:
        doc = parse_document(meta[METADATA_KEY], source)
    except DocumentError as exc:
        raise ModelRefusedError(str(exc)) from None
    return ModelInfo(
        name=doc.name,
        classes=doc.classes,
        view=doc.view,
        input_size=doc.input_size,
        preprocessing=doc.preprocessing,
        metadata=dict(meta),
        task=doc.task,
        landmarks=doc.landmarks,
        measurements=doc.measurement_names,
        weak=meta.get(WEAK_KEY) or None,
        document=doc,
    )


def parse_metadata(meta: dict[str, str], source: str = "model") -> ModelInfo:
    """Rebuild :class:`ModelInfo` from ``metadata_props``; refuse anything missing or malformed.

    The model document (:data:`~spinescan.edge.modeldoc.METADATA_KEY`) when the file has one;
    else, for an export that predates it, the loose keys."""
    if meta.get(METADATA_KEY):
        return _from_document(meta, source)
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
        weak=meta.get(WEAK_KEY) or None,
    )


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: The most bytes of ``manifest.json`` read (the exporter writes a few kB per model).
MANIFEST_MAX_BYTES = 16 << 20
_HEX = frozenset("0123456789abcdef")


def is_plain_name(name: object) -> bool:
    """Whether ``name`` is one file name inside the export version: no folder part, no ``..``,
    not absolute. A manifest entry naming ``/tmp/other.onnx`` or ``../x.onnx`` would load a file
    the export never wrote (and that the sha256 check of the folder's own manifest never sees)."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(c in name for c in "/\\\0")
        and name == name.strip()
        and not (len(name) > 1 and name[1] == ":")  # C:x.onnx on Windows
    )


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _check_file(where: str, entry: dict[str, Any], key: str = "file") -> None:
    name = entry.get(key)
    if not isinstance(name, str) or not name:
        raise ModelRefusedError(f"{where}: {key!r} must be a file name, got {name!r}")
    if not is_plain_name(name):
        raise ModelRefusedError(
            f"{where}: {key} {name!r} leaves the export folder; a manifest may only name files beside it"
        )


def validate_manifest(data: Any, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check a parsed ``manifest.json`` where it is read, so that no caller meets a ``KeyError`` or
    ``TypeError`` later: ``models`` maps names to objects whose ``file`` is a plain file name with
    a sha256, ``int8`` is absent, ``null`` or an object (a shipped one has its own file and sha256),
    ``card`` and ``predictor`` are plain file names. Raises :class:`ModelRefusedError`, one line."""
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ModelRefusedError(f"{path}: not a Spine Scan export manifest")
    predictor = data.get("predictor")
    if predictor is not None and not is_plain_name(predictor):
        raise ModelRefusedError(f"{path}: predictor {predictor!r} is not a file name beside the manifest")
    for name, entry in data["models"].items():
        where = f"{path}: model {name!r}"
        if not isinstance(entry, dict):
            raise ModelRefusedError(f"{where}: expected an object, got {type(entry).__name__}")
        _check_file(where, entry)
        if not _is_sha256(entry.get("sha256")):
            raise ModelRefusedError(f"{where}: 'sha256' must be 64 hex digits, got {entry.get('sha256')!r}")
        card = entry.get("card")
        if card is not None and not is_plain_name(card):
            raise ModelRefusedError(f"{where}: card {card!r} is not a file name beside the manifest")
        int8 = entry.get("int8")
        if int8 is None:
            continue
        if not isinstance(int8, dict):
            raise ModelRefusedError(f"{where}: 'int8' must be an object or null, got {int8!r}")
        shipped = int8.get("shipped", False)
        if not isinstance(shipped, bool):
            raise ModelRefusedError(f"{where}: int8 'shipped' must be true or false, got {shipped!r}")
        if shipped or int8.get("file") is not None:
            _check_file(f"{where} int8", int8)
        if shipped and not _is_sha256(int8.get("sha256")):
            got = int8.get("sha256")
            raise ModelRefusedError(f"{where}: int8 'sha256' must be 64 hex digits, got {got!r}")
    return data


def read_manifest(models_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``manifest.json`` of an export folder, validated (:func:`validate_manifest`), or ``None``
    when there is none."""
    path = Path(models_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MANIFEST_MAX_BYTES + 1)
        if len(raw) > MANIFEST_MAX_BYTES:
            raise ValueError(f"larger than {MANIFEST_MAX_BYTES >> 20} MB")
        data = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ModelRefusedError(f"{path}: unreadable manifest ({' '.join(str(exc).split())[:200]})") from None
    return validate_manifest(data, path)


def manifest_files(entry: dict[str, Any]) -> dict[str, str]:
    """``{file name: sha256}`` of every model file one (validated) manifest entry ships (fp32,
    int8 if shipped)."""
    files = {entry["file"]: entry["sha256"]} if entry.get("file") else {}
    int8 = entry.get("int8") or {}
    if int8.get("shipped") and int8.get("file"):
        files[int8["file"]] = int8["sha256"]
    return files


def export_version(models_dir: str | os.PathLike[str]) -> Path:
    """The one folder a call reads an export from: where ``models_dir/manifest.json`` resolves to
    now (``exported/current -> .v-<id>`` for a published export, ``models_dir`` itself for a plain
    folder). Resolved once per call, so a publish switching ``current`` in the middle of a call
    cannot pair one version's manifest with another's models."""
    folder = Path(models_dir)
    manifest = folder / MANIFEST_NAME
    if manifest.is_symlink() or manifest.exists():
        return Path(os.path.realpath(manifest)).parent
    return folder


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
        import onnxruntime as ort

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
        import onnxruntime as ort  # keeps `import spinescan.edge.predictor` cheap

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
        except Exception as exc:  # onnxruntime raises its own types for bad files
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
        the film went in the input (:class:`~spinescan.radiograph.preprocess.Placement`) and its size."""
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
        from spinescan.edge import overlay

        label = int(np.argmax(probs))
        if cam is None:
            why = json.loads(self.info.metadata.get("cam", "{}") or "{}").get("reason", "no cam output")
            return {"class": self.info.classes[label], "error": f"{self.name} has no heatmap: {why}"}
        placement = film_placement(image, self.info.input_size, self.info.preprocessing)
        return {
            "class": self.info.classes[label],
            "grid": np.round(overlay.normalise_cam(cam[..., label]).astype(float), 4).tolist(),
            "cam": np.round(cam[..., label].astype(float), 5).tolist(),
            "geometry": placement.to_geometry(image.shape[:2], self.info.input_size[:2]),
            "note": overlay.DISCLAIMER,
        }

    def read(self, output: np.ndarray, context: Any) -> dict[str, Any]:
        """A landmark model's output for one film -> landmarks (film pixels), angles, label."""
        placement, image_hw = context
        extra = self.info.document.measurements if self.info.document is not None else ()
        return read_landmarks(output, placement, self.info.view, self.info.input_size[:2], image_hw, extra)

    def result(
        self, output: np.ndarray, context: Any = None, reading: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The JSON entry of one film. A landmark model's: ``measurements`` (degrees, manifest
        names; ``null`` when not measurable, with the reason in ``reasons``), ``landmarks`` as
        ``[x, y]`` in the input image's pixels (``null`` for a point judged not visible; 68 corners
        T1..L5 TL, TR, BL, BR, then the S1 endplate's left and right ends), and the ``label`` that
        the angles imply (``null`` with ``label_reason`` when they imply none); ``plausibility``
        (``{"severity": "ok" | "warning" | "severe", "reasons": [...]}``): whether the points can be
        a spine (severe: every angle and the label are ``null``, the reasons in ``reasons``)."""
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
                "plausibility": r["plausibility"].to_json(),
            }
            if r["label_reason"]:
                out["label_reason"] = r["label_reason"]
            if m["notes"]:
                out["notes"] = m["notes"]
            return self._marked(out)
        probs = output
        probabilities = {c: float(p) for c, p in zip(self.info.classes, probs, strict=True)}
        return self._marked(
            {
                "model": self.name,
                "label": self.info.classes[int(np.argmax(probs))],
                "probabilities": probabilities,
            }
        )

    def _marked(self, result: dict[str, Any]) -> dict[str, Any]:
        """``result`` with ``"weak": <the gate's verdict>`` when this model was exported weak, so no
        reading of a model that has not shown it reads the spine travels without the mark."""
        if self.info.weak:
            result[WEAK_KEY] = self.info.weak
        return result


# --- which models ------------------------------------------------------------------------------


# What to run when there is nothing to load yet (one line, said wherever models are missing).
EXPORT_HINT = "make them with `spinescan train generalist` then `spinescan export --onnx` (writes exported/)"


def model_paths(models_dir: str | os.PathLike[str], int8: bool = False) -> list[Path]:
    """The model files of an export folder: those its manifest lists (the int8 file where one
    was shipped and ``int8`` is asked for), else every ``*.onnx`` that is not an int8 copy.

    The paths are inside the one export version resolved here (:func:`export_version`), not
    through ``current``: a publish switching ``current`` after this call cannot make a listed file
    vanish or be paired with the other version's manifest."""
    folder = Path(models_dir)
    if not folder.is_dir():
        raise ModelRefusedError(f"models folder not found: {folder}; {EXPORT_HINT}")
    version = export_version(folder)
    manifest = read_manifest(version)
    if manifest is None:
        paths = sorted(p for p in folder.glob("*.onnx") if not p.name.endswith(".int8.onnx"))
    else:
        paths = []
        for entry in manifest["models"].values():
            chosen = entry["file"]
            if int8 and (entry.get("int8") or {}).get("shipped"):
                chosen = entry["int8"]["file"]
            paths.append(version / chosen)
    if not paths:
        raise ModelRefusedError(f"no ONNX models in {folder}; {EXPORT_HINT}")
    return paths


def resolve_model(model: str | os.PathLike[str], models_dir: str | os.PathLike[str] | None = None) -> Path:
    """A model given as a file path, or as a name looked up in ``models_dir`` (manifest first)."""
    as_path = Path(model)
    if as_path.suffix == ".onnx" or as_path.is_file():
        return as_path
    folder = Path(models_dir) if models_dir else choose_models_dir().folder
    version = export_version(folder)  # once: the manifest and the model come from one version
    manifest = read_manifest(version)
    if manifest is not None:
        entry = manifest["models"].get(str(model))
        if entry is None:
            known = ", ".join(sorted(manifest["models"])) or "none"
            raise ModelRefusedError(f"no exported model {str(model)!r} in {folder} (exported: {known})")
        return version / entry["file"]
    if not (folder / f"{model}.onnx").is_file():
        raise ModelRefusedError(
            f"no exported model {str(model)!r} in {folder}: train and export it first "
            f"(`spinescan train {model}` then `spinescan export --onnx --out {folder}`)"
        )
    return folder / f"{model}.onnx"


#: The export set installed with the package (``spinescan/pretrained/``: manifest, ONNX files, cards),
#: used when neither ``--models`` nor ``./exported/`` gives models. Rebuilt by ``make models``.
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "pretrained"


def has_models(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds an export (a manifest or ONNX files), not just a README."""
    folder = Path(folder)
    return folder.is_dir() and ((folder / MANIFEST_NAME).exists() or any(folder.glob("*.onnx")))


@dataclass(frozen=True)
class ModelSource:
    """Which export folder a predictor call uses, and how to name it to the user."""

    folder: Path
    label: str  # "--models DIR" | "./exported" | "bundled set"

    def describe(self) -> str:
        where = "" if self.label.startswith("--models") else f" ({self.folder})"
        return f"models: {self.label}{where}"


def choose_models_dir(models_dir: str | os.PathLike[str] | None = None) -> ModelSource:
    """``models_dir`` when given; else ``./exported/`` when it holds an export; else the bundled set.

    What the user exported always wins over what was installed; the bundled set is the fallback
    that makes ``spinescan-predict film.png`` work on a fresh install with no training.
    """
    if models_dir is not None:
        return ModelSource(Path(models_dir), f"--models {models_dir}")
    if has_models(DEFAULT_MODELS_DIR) or not has_models(BUNDLED_DIR):
        return ModelSource(Path(DEFAULT_MODELS_DIR), f"./{DEFAULT_MODELS_DIR}")
    return ModelSource(BUNDLED_DIR, "bundled set")


def parity_input(input_size: tuple[int, ...] | list[int], seed: int = PARITY_SEED) -> np.ndarray:
    """The recorded parity sample's input: a (1, H, W, C) float32 batch in [0, 1] from ``seed``.

    Regenerated, never stored: the manifest keeps only the seed and the expected output."""
    h, w, c = (int(v) for v in input_size)
    return np.random.default_rng(seed).random((1, h, w, c), dtype=np.float32)


def record_parity_sample(model: OnnxModel, kind: str = "fp32") -> dict[str, Any]:
    """What the export stores for one file: the seed, the output on :func:`parity_input`, the
    tolerance a re-run must meet (see :data:`PARITY_SAMPLE_TOLERANCE`)."""
    out = model.predict(parity_input(model.info.input_size))[0]
    return {
        "seed": PARITY_SEED,
        "output": np.round(out.astype(np.float64), 7).tolist(),
        "tolerance": PARITY_SAMPLE_TOLERANCE[kind],
    }


def check_parity_sample(model: OnnxModel, sample: dict[str, Any]) -> float:
    """Re-run a recorded parity sample; the largest |difference|, or :class:`ModelRefusedError`
    when it exceeds the recorded tolerance (a file that no longer computes what was exported)."""
    out = model.predict(parity_input(model.info.input_size, int(sample["seed"])))[0]
    expected = np.asarray(sample["output"], dtype=np.float64)
    if expected.shape != out.shape:
        raise ModelRefusedError(
            f"{model.path}: parity sample shape {expected.shape}, model gives {out.shape}"
        )
    diff = float(np.max(np.abs(out.astype(np.float64) - expected))) if out.size else 0.0
    if not diff <= float(sample["tolerance"]):
        raise ModelRefusedError(
            f"{model.path}: output on the recorded parity sample differs by {diff:.2e} "
            f"(tolerance {sample['tolerance']:.0e})"
        )
    return diff


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
