"""An exported model's metadata: what the predictor knows about a model, read from the ONNX file.

Light island (no TensorFlow). Everything a model needs (task, classes or landmark names in output
order, input size, the exact preprocessing) is read from the ONNX file's ``metadata_props``,
written by ``spinescan export``; nothing about a model is repeated here, so a model file cannot be
fed the wrong tensors. A file whose metadata is missing or malformed is refused
(:class:`~spinescan.errors.ModelRefusedError`, one line).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from spinescan.edge.modeldoc import METADATA_KEY, DocumentError, ModelDocument, parse_document
from spinescan.errors import ModelRefusedError
from spinescan.radiograph.preprocess import Preprocessing

#: ``metadata_props`` keys written by the export. ``FORMAT_KEY`` marks a Spine Scan model.
FORMAT_KEY = "spinescan_format"
FORMAT_VERSION = "1"
REQUIRED_KEYS = (FORMAT_KEY, "model_name", "classes", "input_size", "preprocessing")
TASKS = ("classification", "landmarks")
#: ``metadata_props`` key (and manifest entry key) of a model exported with ``--allow-weak``: the
#: gate's verdict, one line. Absent for a model that passed the gate.
WEAK_KEY = "weak"


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
