"""A toy landmark model with one extra angle, for the model-document tests (no TensorFlow).

``TOY_ANGLE`` is a new ``endplates`` angle (T2 superior against T8 inferior endplate) that no code
in spinescan or web/src names. ``toy_spec()`` is a lateral landmark plugin's spec that measures
it besides the two built-in lateral angles, and ``write_toy_export`` writes an export folder (an
ONNX graph whose ``points`` output is a fixed synthetic spine, whatever the film; its document;
the manifest with the document's verbatim copy) that spinescan-predict, predict.py and the page
read. Used by tests/test_predictor.py (Python) and tests/test_web.py (the page).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from spinescan.edge.manifest import sha256_file
from spinescan.edge.modeldoc import MANIFEST_KEY, METADATA_KEY, ModelDocument, document_for
from spinescan.export.onnx_convert import set_metadata
from spinescan.radiograph.angle_defs import ANGLES, AngleDefinition, register_angle
from spinescan.radiograph.landmark_codec import POINT_NAMES
from spinescan.radiograph.thresholds import CLASSES
from spinescan.zoo.spec import ModelSpec

TOY_ANGLE = AngleDefinition(
    "toy_t2_t8_deg",
    "lateral",
    "T2-T8",
    "endplates",
    (("T2", "superior"), ("T8", "inferior")),
    colour="#ff00ff",
    description="a toy angle for the tests: T2 superior to T8 inferior endplate",
)
TOY_INPUT = (64, 64, 1)
#: The tilts (degrees) given to T2's and T8's corners in the fixed output: the toy angle is their
#: difference, about 12 deg.
T2_TILT, T8_TILT = -4.0, 8.0


def _no_build(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("the toy spec is never built: its ONNX graph is written by hand")


@contextlib.contextmanager
def toy_angle_registered() -> Iterator[AngleDefinition]:
    """The toy angle known to this process for the block (what a plugin module does on import),
    forgotten after it so that other tests see only the built-ins."""
    register_angle(TOY_ANGLE)
    try:
        yield TOY_ANGLE
    finally:
        ANGLES.pop(TOY_ANGLE.name, None)


def toy_spec() -> ModelSpec:
    """A lateral landmark spec measuring the toy angle after the built-in two (register it first:
    :func:`toy_angle_registered`)."""
    return ModelSpec(
        name="toyangle",
        description="lateral landmarks with a toy angle",
        view="lateral",
        classes=CLASSES["lateral"],
        build=_no_build,
        input_size=TOY_INPUT,
        task="landmarks",
        landmarks=POINT_NAMES,
        measurements=("thoracic_kyphosis_deg", "lumbar_lordosis_deg", TOY_ANGLE.name),
    )


def spine_output() -> np.ndarray:
    """(70, 4): a plausible lateral spine in normalised input coordinates (x, y, visibility logit,
    spread), with T2 and T8 tilted so that every angle is measured and the toy one is not zero."""
    out = np.zeros((len(POINT_NAMES), 4), dtype=np.float32)
    tilts = np.zeros(17)
    tilts[1], tilts[7] = np.radians(T2_TILT), np.radians(T8_TILT)
    tilts[3], tilts[11] = np.radians(-12.0), np.radians(14.0)  # T4, T12: a kyphosis of 26 deg
    for v in range(17):
        cx, cy = 0.5 + 0.04 * np.sin(v / 3.0), 0.1 + v * 0.045
        for k, (dx, dy) in enumerate(((-0.05, -0.015), (0.05, -0.015), (-0.05, 0.015), (0.05, 0.015))):
            c, s = np.cos(tilts[v]), np.sin(tilts[v])
            out[4 * v + k, :2] = (cx + dx * c - dy * s, cy + dx * s + dy * c)
    out[68, :2], out[69, :2] = (0.45, 0.92), (0.55, 0.8)  # S1 superior endplate: lordosis about 50 deg
    out[:, 2] = 6.0  # every point confidently visible
    out[:, 3] = 0.01
    return out


def toy_onnx(
    path: Path, document: ModelDocument, output: np.ndarray | None = None, embed: bool = True
) -> Path:
    """An ONNX model whose ``points`` output is ``output`` (default :func:`spine_output`) for every
    film (plus 0 x the film's mean, so the graph reads its input), with ``document`` embedded as
    the exporter embeds it (the one metadata key, and the loose keys old readers need); with
    ``embed=False`` the loose keys only, as an export older than the document."""
    fixed = (spine_output() if output is None else output)[None].astype(np.float32)
    h, w, c = document.input_size
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m4"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["m4", "shape"], ["m"]),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["z", "fixed"], ["points"]),
    ]
    graph = helper.make_graph(
        nodes,
        document.name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", h, w, c])],
        [helper.make_tensor_value_info("points", TensorProto.FLOAT, ["N", fixed.shape[1], 4])],
        [
            numpy_helper.from_array(np.array([-1, 1, 1], dtype=np.int64), "shape"),
            numpy_helper.from_array(np.zeros((1, 1, 1), dtype=np.float32), "zero"),
            numpy_helper.from_array(fixed, "fixed"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    set_metadata(
        model,
        {
            **({METADATA_KEY: document.dumps()} if embed else {}),
            "task": document.task,
            "landmarks": list(document.landmarks),
            "measurements": list(document.measurement_names),
            "model_name": document.name,
            "classes": list(document.classes),
            "view": document.view,
            "input_size": list(document.input_size),
            "preprocessing": document.preprocessing.to_json(),
        },
    )
    onnx.save(model, str(path))
    return path


def write_toy_export(folder: Path, document: ModelDocument | None = None, legacy: bool = False) -> Path:
    """``folder`` with the toy model and its manifest (the document copied verbatim, as the
    exporter copies it); returns ``folder``. ``legacy``: an export older than the document (the
    built-in angles only, no document in the file or the manifest)."""
    if document is None:
        with toy_angle_registered():
            document = document_for(toy_spec())
    if legacy:
        document = replace(document, measurements=document.measurements[:2])
    folder.mkdir(parents=True, exist_ok=True)
    path = toy_onnx(folder / f"{document.name}.onnx", document, embed=not legacy)
    entry = {
        "model": document.name,
        **({} if legacy else {MANIFEST_KEY: json.loads(document.dumps())}),
        "file": path.name,
        "sha256": sha256_file(path),
        "classes": list(document.classes),
        "task": document.task,
        "measurements": list(document.measurement_names),
        "view": document.view,
        "input_size": list(document.input_size),
        "preprocessing": document.preprocessing.to_dict(),
    }
    (folder / "manifest.json").write_text(json.dumps({"models": {document.name: entry}}), encoding="utf-8")
    return folder
