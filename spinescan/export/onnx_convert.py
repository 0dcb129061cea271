"""Keras model -> ONNX graph, with the repairs this TensorFlow / tf2onnx pair needs.

Conversion goes through ``tf2onnx.convert.from_function`` with an explicit input signature
(``from_keras`` is broken on TF >= 2.16, tf2onnx #2348) and a dynamic batch dimension. Two problems
seen with TF 2.21 / tf2onnx 1.17 are handled here rather than left to the user:

* EfficientNetB0's ``Normalization`` layer keeps its mean/variance as tensors captured by the
  ``tf.function``; tf2onnx turns those captures into extra graph *inputs*
  (``.../normalization/Sub/y:0``) and onnxruntime then refuses to run without them. They are
  constants, so :func:`fold_captured_inputs` moves their values into initializers.
* Random augmentation layers have no ONNX equivalent (keras #21346, tf2onnx #2395); they are
  refused up front with a message rather than failing deep inside tf2onnx.

Every classifier whose head is global average pooling -> (dropout) -> dense -> softmax also gets
a second output, ``cam``: the class activation map of every class (Zhou et al., CVPR 2016), built
from the trained layers by :func:`with_cam` (see :data:`CAM_DEFINITION`). Input ``image`` and
output ``probabilities`` are unchanged, so existing consumers see the same model. A head that is
not linear in the feature map (``resnet50_frozen``: pool -> dense(relu) -> dense) gets no ``cam``
output and its metadata says why (:func:`cam_head` returns the reason).

tf2onnx's own warnings (MobileNetV3Small's ``optimize_transpose ... max() arg is an empty
sequence``, which leaves Transpose nodes behind but a correct graph) are collected and returned,
so the export report shows them without a page of traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spinescan.edge.predictor import CAM_NAME, FORMAT_KEY, FORMAT_VERSION, OUTPUT_NAME
from spinescan.errors import SpineScanError, require_tensorflow

if TYPE_CHECKING:
    import keras
    import onnx

INPUT_NAME = "image"
DEFAULT_OPSET = 17


class ExportError(SpineScanError):
    """The model cannot be exported, or the export is not faithful; nothing was written."""


@dataclass
class Conversion:
    """A converted graph and what happened on the way."""

    proto: onnx.ModelProto
    warnings: list[str] = field(default_factory=list)
    folded_inputs: list[str] = field(default_factory=list)
    no_cam: str | None = None  # why the graph has no ``cam`` output; None when it has one

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.proto.graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
        return counts


def _walk(model: Any) -> Iterator[Any]:
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _walk(layer)


def check_convertible(model: keras.Model) -> None:
    """Refuse models holding random augmentation layers (``RandomFlip``, ``RandomRotation``...)."""
    random_layers = sorted(
        {type(layer).__name__ for layer in _walk(model) if type(layer).__name__.startswith("Random")}
    )
    if random_layers:
        raise ExportError(
            f"model {model.name!r} contains random augmentation layers ({', '.join(random_layers)}), which "
            "cannot be converted to ONNX; augmentation belongs in the input pipeline, not in the model"
        )


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage().strip().splitlines()[0] if record.getMessage().strip() else ""
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            message = f"{message}: {type(exc).__name__}: {exc}"
        if message and message not in self.messages:
            self.messages.append(message)


@contextmanager
def _quiet_tf2onnx() -> Iterator[_Collect]:
    """Route tf2onnx's warnings (and their tracebacks) into a list instead of the terminal."""
    logger = logging.getLogger("tf2onnx")
    collect = _Collect()
    saved = (logger.handlers[:], logger.propagate, logger.level)
    logger.handlers = [collect]
    logger.propagate = False
    logger.setLevel(logging.WARNING)
    try:
        yield collect
    finally:
        logger.handlers, logger.propagate, logger.level = saved


def fold_captured_inputs(proto: onnx.ModelProto, constants: dict[str, Any]) -> list[str]:
    """Remove graph inputs that are really captured constants (in place).

    An extra input that no node reads is dropped; one that is read becomes an initializer holding
    the captured value. Returns the names handled; raises :class:`ExportError` for an extra input
    that is read but has no known value.
    """
    from onnx import numpy_helper

    read = {name for node in proto.graph.node for name in node.input}
    extra = [i for i in proto.graph.input if i.name != INPUT_NAME]
    unknown = [i.name for i in extra if i.name in read and i.name not in constants]
    if unknown:
        raise ExportError(
            f"the converted graph has unexpected inputs {unknown}; only {INPUT_NAME!r} is allowed"
        )
    for graph_input in extra:
        if graph_input.name in read:
            value = constants[graph_input.name]
            proto.graph.initializer.append(numpy_helper.from_array(value, graph_input.name))
        proto.graph.input.remove(graph_input)
    return [i.name for i in extra]


#: What the ``cam`` output is; written into the metadata (key ``cam``) of every model that has one.
CAM_DEFINITION = (
    "class activation map (Zhou et al. 2016) of every class: cam[n, i, j, c] = sum_k "
    "features[n, i, j, k] * W[k, c], features = the last feature map (input of the global average "
    "pooling), W = the dense head's kernel. mean over (i, j) of cam[..., c] + bias[c] = logit of "
    "class c, so for this head ReLU(cam[..., c]) / (h * w) is exactly Grad-CAM (Selvaraju et al. "
    "2017). Grid cell (i, j) covers the model input's rows i*H/h..(i+1)*H/h and columns likewise."
)


def _producer(tensor: Any) -> Any:
    """The layer (operation) that produced a symbolic Keras tensor, or ``None`` for an input."""
    history = getattr(tensor, "_keras_history", None)
    return history[0] if history else None


def cam_head(model: keras.Model) -> tuple[Any, Any] | str:
    """``(feature map tensor, dense layer)`` when ``model`` ends in GAP -> [Dropout] -> Dense ->
    softmax (an exact CAM exists), else a one-line reason why it has no CAM."""
    import keras

    layers = keras.layers
    last = _producer(model.outputs[0]) if len(model.outputs) == 1 else None
    if not (isinstance(last, layers.Activation) and getattr(last.activation, "__name__", "") == "softmax"):
        return "the model does not end in a softmax layer"
    dense = _producer(last.input)
    if not isinstance(dense, layers.Dense) or getattr(dense.activation, "__name__", "") != "linear":
        return "the softmax is not fed by a linear dense layer"
    pooled = dense.input
    while isinstance(_producer(pooled), layers.Dropout):  # identity at inference
        pooled = _producer(pooled).input
    pool = _producer(pooled)
    if not isinstance(pool, layers.GlobalAveragePooling2D) or getattr(pool, "keepdims", False):
        name = getattr(pool, "name", "?")
        return (
            f"the dense head reads {type(pool).__name__} {name!r}, not a global average pooling of a "
            "feature map, so the class score is not linear in the map (no exact CAM; this backbone "
            "exports probabilities only)"
        )
    features = pool.input
    if len(features.shape) != 4:
        return "the pooled tensor is not a 2-D feature map"
    return features, dense


def with_cam(model: keras.Model) -> tuple[keras.Model, str | None]:
    """A functional model with outputs ``{probabilities, cam}`` sharing ``model``'s layers and
    weights, or ``(model, reason)`` when its head has no exact CAM."""
    import keras

    head = cam_head(model)
    if isinstance(head, str):
        return model, head
    features, dense = head
    cam_layer = keras.layers.Dense(int(dense.units), use_bias=False, dtype="float32", name=CAM_NAME)
    cam = cam_layer(features)
    cam_layer.set_weights([dense.get_weights()[0]])
    two = keras.Model(model.inputs, {OUTPUT_NAME: model.outputs[0], CAM_NAME: cam}, name=f"{model.name}_cam")
    return two, None


def keras_to_onnx(model: keras.Model, opset: int = DEFAULT_OPSET) -> Conversion:
    """Convert ``model`` (input ``image`` NHWC float32, softmax output) to an ONNX graph whose
    input is ``image`` with a dynamic batch and whose outputs are ``probabilities`` and, when the
    head allows an exact one, ``cam`` (see :data:`CAM_DEFINITION`; ``Conversion.cam`` is then
    ``None``, else the reason there is none)."""
    tf = require_tensorflow("ONNX export")
    import tf2onnx

    check_convertible(model)
    shape = (None, *tuple(int(d) for d in model.input_shape[1:]))
    signature = (tf.TensorSpec(shape, tf.float32, name=INPUT_NAME),)
    two, no_cam = with_cam(model)

    @tf.function(input_signature=signature)
    def serve(image: Any) -> dict[str, Any]:
        if no_cam is not None:
            return {OUTPUT_NAME: model(image, training=False)}
        out = two(image, training=False)
        return {OUTPUT_NAME: out[OUTPUT_NAME], CAM_NAME: out[CAM_NAME]}

    # tf2onnx asks for the same (cached) concrete function, so the capture names match its graph.
    concrete = serve.get_concrete_function()
    constants = {
        internal.name: external.numpy()
        for external, internal in zip(concrete.captured_inputs, concrete.graph.internal_captures, strict=True)
        if external.dtype != tf.resource
    }
    with _quiet_tf2onnx() as collected:
        try:
            proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset)
        except Exception as exc:  # tf2onnx raises anything; the user needs one line
            raise ExportError(
                f"tf2onnx could not convert {model.name!r}: {type(exc).__name__}: {exc}"
            ) from exc
    folded = fold_captured_inputs(proto, constants)
    # ``probabilities`` first: consumers that take the first output keep working.
    ordered = sorted(proto.graph.output, key=lambda o: o.name != OUTPUT_NAME)
    del proto.graph.output[:]
    proto.graph.output.extend(ordered)
    outputs = [o.name for o in proto.graph.output]
    expected = [OUTPUT_NAME] if no_cam is not None else [OUTPUT_NAME, CAM_NAME]
    if outputs != expected:
        raise ExportError(f"converted graph has outputs {outputs}, expected {expected}")
    return Conversion(proto=proto, warnings=collected.messages, folded_inputs=folded, no_cam=no_cam)


def cam_metadata(model: keras.Model, conversion: Conversion) -> dict[str, Any]:
    """The ``cam`` metadata entry: what the output is (grid, definition) or why there is none."""
    if conversion.no_cam is not None:
        return {"kind": "none", "reason": conversion.no_cam}
    features, dense = cam_head(model)  # type: ignore[misc]
    return {
        "kind": "cam",
        "output": CAM_NAME,
        "grid": [int(features.shape[1]), int(features.shape[2])],
        "bias": [float(b) for b in dense.get_weights()[1]] if dense.use_bias else None,
        "definition": CAM_DEFINITION,
    }


def set_metadata(proto: onnx.ModelProto, metadata: dict[str, Any]) -> None:
    """Write ``metadata_props`` (values that are not strings are stored as JSON), replacing any."""
    del proto.metadata_props[:]
    values = {FORMAT_KEY: FORMAT_VERSION, **metadata}
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key = key
        entry.value = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
