"""The model document: one typed, versioned description of an exported model (light island).

Generated from the :class:`~spinescan.zoo.spec.ModelSpec` at export (:func:`document_for`), it
says everything a reader needs to feed a model and read its output: task, view, classes or
landmark names, each measured angle with its unit, method, clinical thresholds and their sources
(:mod:`spinescan.radiograph.angle_defs`), the preprocessing, and the read-out constants. The
exporter embeds it once in the ONNX ``metadata_props`` (one key, :data:`METADATA_KEY`, JSON) and
copies it verbatim into the model's ``manifest.json`` entry (``document``); the Python predictor,
the standalone ``predict.py`` and the browser page all read that one document, through one parser
each (:func:`parse_document` here, ``parseDocument`` in ``web/src/landmarks.js``) that refuses a
malformed or unknown-version document in one line.

Why one document: before it, the exporter wrote the description twice (loose metadata keys and
the manifest), each reader read a different one, and the page hand-copied the thresholds; a
drift between them went unnoticed. Exports written before the document (the bundled models
among them) carry no :data:`METADATA_KEY`; their readers fall back to the loose keys
(:func:`spinescan.edge.model_metadata.parse_metadata`), and the page to the manifest's fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spinescan.errors import SpineScanError
from spinescan.radiograph.angle_defs import AngleDefinition, definitions, readout_constants
from spinescan.radiograph.preprocess import Preprocessing

if TYPE_CHECKING:
    from spinescan.zoo.spec import ModelSpec

#: The ``metadata_props`` key that holds the document (and the manifest entry key of its copy).
METADATA_KEY = "spinescan_model"
MANIFEST_KEY = "document"
SCHEMA = "spinescan.model"
SCHEMA_VERSION = 1
TASKS = ("classification", "landmarks")


class DocumentError(SpineScanError):
    """A model document that cannot be read: malformed, or of a version this reader does not know."""


@dataclass(frozen=True)
class ModelDocument:
    """What an exported model is (see the module docstring). ``measurements`` are the angles a
    landmark model reports, in report order; ``readout`` the read-out constants
    (:func:`~spinescan.radiograph.angle_defs.readout_constants`) as they stood at export."""

    name: str
    task: str
    view: str
    classes: tuple[str, ...]
    input_size: tuple[int, int, int]
    preprocessing: Preprocessing
    description: str = ""
    negative_class: str = "healthy"
    landmarks: tuple[str, ...] = ()
    measurements: tuple[AngleDefinition, ...] = ()
    readout: dict[str, Any] = field(default_factory=dict, compare=False)
    schema_version: int = SCHEMA_VERSION

    @property
    def measurement_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.measurements)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": self.schema_version,
            "name": self.name,
            "description": self.description,
            "task": self.task,
            "view": self.view,
            "classes": list(self.classes),
            "negative_class": self.negative_class,
            "input_size": list(self.input_size),
            "preprocessing": self.preprocessing.to_dict(),
            "landmarks": list(self.landmarks),
            "measurements": [m.to_json() for m in self.measurements],
            "readout": self.readout,
        }

    def dumps(self) -> str:
        """The document as the one JSON string stored in the ONNX metadata."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))


def document_for(spec: ModelSpec) -> ModelDocument:
    """The document of a model spec (at export: the spec of the run, input size included)."""
    landmarks = spec.task == "landmarks"
    return ModelDocument(
        name=spec.name,
        task=spec.task,
        view=spec.view,
        classes=tuple(spec.classes),
        input_size=(int(spec.input_size[0]), int(spec.input_size[1]), int(spec.input_size[2])),
        preprocessing=spec.preprocessing,
        description=spec.description,
        negative_class=spec.negative_class,
        landmarks=tuple(spec.landmarks),
        measurements=definitions(spec.measurements) if landmarks else (),
        # the angles are in ``measurements``: the read-out section keeps the rest
        readout={k: v for k, v in readout_constants().items() if k != "angles"} if landmarks else {},
    )


def parse_document(raw: str | dict[str, Any], source: str = "model") -> ModelDocument:
    """The one reader of a model document (a JSON string or its parsed object); raises
    :class:`DocumentError` (one line naming ``source``) when it is malformed or of another schema
    version."""
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise DocumentError(f"{source}: model document is not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise DocumentError(f"{source}: not a Spine Scan model document")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise DocumentError(
            f"{source}: model document version {version!r} is not supported (this reader knows "
            f"{SCHEMA_VERSION}); use the predictor written by the same export (predict.py) "
            "or a newer spinescan"
        )
    try:
        prep = data["preprocessing"]
        unknown = sorted(set(prep) - set(Preprocessing().to_dict()))
        if unknown:
            raise DocumentError(f"{source}: preprocessing settings {unknown} are unknown to this reader")
        size = [int(v) for v in data["input_size"]]
        if len(size) != 3 or min(size) < 1:
            raise DocumentError(f"{source}: malformed model document (input size {size})")
        doc = ModelDocument(
            name=str(data["name"]),
            task=str(data["task"]),
            view=str(data["view"]),
            classes=tuple(str(c) for c in data["classes"]),
            input_size=(size[0], size[1], size[2]),
            preprocessing=Preprocessing.from_dict(prep),
            description=str(data.get("description", "")),
            negative_class=str(data.get("negative_class", "healthy")),
            landmarks=tuple(str(n) for n in data.get("landmarks", [])),
            measurements=tuple(AngleDefinition.from_json(m) for m in data.get("measurements", [])),
            readout=dict(data.get("readout") or {}),
            schema_version=int(version),
        )
    except DocumentError:
        raise
    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise DocumentError(f"{source}: malformed model document ({what})") from None
    problems = []
    if len(doc.classes) < 2:
        problems.append(f"classes {list(doc.classes)}")
    if doc.task not in TASKS:
        problems.append(f"task {doc.task!r} (this reader knows {', '.join(TASKS)})")
    if doc.task == "landmarks" and (
        not doc.landmarks or not doc.measurements or doc.view not in ("ap", "lateral")
    ):
        problems.append("a landmark model needs landmark names, measurements and the view ap or lateral")
    if problems:
        raise DocumentError(f"{source}: malformed model document ({'; '.join(problems)})")
    return doc
