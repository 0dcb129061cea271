"""The backbone catalogue: one function that turns a spec into a Keras classifier.

Every model shares the same outer contract, which export and the predictor rely on: an input
named ``image`` of shape ``spec.input_size`` (float32 in [0, 1], straight from
:func:`spinescan.radiograph.preprocess.preprocess`) and a float32 softmax output named ``probabilities``
with the classes in spec order. Anything a backbone needs beyond that (three channels, a
different value range) happens *inside* the model with plain layers, so the exported graph and the
predictor never need to know which backbone was used.

Two lessons from the issue are built in. BatchNorm uses momentum 0.9 everywhere: with Keras'
default 0.99 the moving statistics lag far behind the weights in a short from-scratch run, and
inference-mode (validation) accuracy sits at chance while training accuracy climbs. And there are
no random augmentation layers in the model: they do not convert to ONNX, so augmentation lives in
the tf.data pipeline (:mod:`spinescan.training.pipeline`).

TensorFlow/Keras are imported lazily so that importing this module stays cheap.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spinescan.errors import SpineScanError, require_tensorflow
from spinescan.zoo.hparams import HParams

if TYPE_CHECKING:
    import keras

    from spinescan.zoo.spec import ModelSpec

BN_MOMENTUM = 0.9
WEIGHT_CHOICES = (None, "imagenet")


@dataclass(frozen=True)
class Backbone:
    """One entry of the catalogue. ``build(x, weights)`` maps the image tensor to features
    (a feature map, pooled by the shared head, or an already pooled vector)."""

    name: str
    description: str
    build: Callable[..., Any]  # build(x, weights, hparams) -> features
    pretrained: bool  # whether ``weights="imagenet"`` exists for it


def _keras() -> Any:
    require_tensorflow("Building a model")
    import keras

    return keras


# -- the compact CPU-friendly CNN --------------------------------------------------------------


def _conv_bn(x: Any, filters: int, name: str, strides: int = 1) -> Any:
    keras = _keras()
    layers = keras.layers
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _compact(x: Any, weights: str | None, hparams: HParams) -> Any:
    """A small VGG-like CNN sized for 2 CPU cores (about 26 M multiply-adds per 128-px image).

    A strided stem and a pool bring the film to a quarter of its size at once (films are smooth;
    the curvature is a large-scale shape), then four conv blocks double the channels while
    pooling. Measured against a variant that kept the stem's resolution for the first block: three
    times the training images per second, and no worse validation accuracy on phantoms. Every
    layer has a fixed name so weights can be matched by name (``init_from``) across builds.
    ``hparams.width`` and ``hparams.depth`` scale it (32 and 4: blocks of 32, 64, 96, 128 filters).
    """
    if weights is not None:
        raise SpineScanError("the compact backbone has no pretrained weights; use --weights none")
    layers = _keras().layers
    x = _conv_bn(x, 24, "stem", strides=2)
    x = layers.MaxPooling2D(2, padding="same", name="stem_pool")(x)
    depth = hparams.depth
    for i in range(1, depth + 1):
        filters = hparams.width * i
        x = _conv_bn(x, filters, f"block{i}a")
        if i >= 3:
            x = _conv_bn(x, filters, f"block{i}b")
        if i < depth:
            x = layers.MaxPooling2D(2, padding="same", name=f"block{i}_pool")(x)
    return x


# -- keras.applications backbones ---------------------------------------------------------------


def _to_rgb(x: Any, scale: float, bias: tuple[float, float, float]) -> Any:
    """Repeat the grey channel to three and map [0, 1] to the range a backbone expects.

    A fixed, non-trainable 1x1 convolution does both at once: it is an ordinary layer, so it
    saves in Keras safe mode (no Lambda) and converts to ONNX.
    """
    keras = _keras()
    np = __import__("numpy")
    channels = int(x.shape[-1])
    layer = keras.layers.Conv2D(3, 1, use_bias=True, trainable=False, name="to_rgb")
    y = layer(x)
    kernel = np.zeros((1, 1, channels, 3), dtype="float32")
    for out in range(3):
        if channels == 1:
            kernel[0, 0, 0, out] = scale
        else:
            kernel[0, 0, out, out] = scale
    layer.set_weights([kernel, np.asarray(bias, dtype="float32")])
    return y


def _set_bn_momentum(model: Any, momentum: float = BN_MOMENTUM) -> None:
    for layer in _walk_layers(model):
        if isinstance(layer, _keras().layers.BatchNormalization):
            layer.momentum = momentum


def _applications_weights(name: str, factory: Callable[..., Any], weights: str | None, **kwargs: Any) -> Any:
    """Call a keras.applications factory, turning an offline weight download into one message."""
    if weights is None:
        return factory(weights=None, **kwargs)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(15)
    try:
        return factory(weights=weights, **kwargs)
    except Exception as exc:  # any download/IO failure is the same user problem
        raise SpineScanError(
            f"could not load {weights} weights for {name} ({type(exc).__name__}: {exc}). "
            "Spine Scan never downloads at run time on an offline machine: put the Keras weight "
            "file in ~/.keras/models/ beforehand, or train from scratch with --weights none"
        ) from exc
    finally:
        socket.setdefaulttimeout(previous)


def _mobilenetv3small(x: Any, weights: str | None, hparams: HParams) -> Any:
    keras = _keras()
    x = _to_rgb(x, 2.0, (-1.0, -1.0, -1.0))  # MobileNetV3 expects [-1, 1] without its own rescaling
    base = _applications_weights(
        "MobileNetV3Small",
        keras.applications.MobileNetV3Small,
        weights,
        input_shape=tuple(x.shape[1:]),
        include_top=False,
        include_preprocessing=False,
        minimalistic=False,
    )
    _set_bn_momentum(base)
    return base(x)


def _efficientnetb0(x: Any, weights: str | None, hparams: HParams) -> Any:
    keras = _keras()
    x = _to_rgb(x, 255.0, (0.0, 0.0, 0.0))  # EfficientNet rescales 0-255 itself
    base = _applications_weights(
        "EfficientNetB0",
        keras.applications.EfficientNetB0,
        weights,
        input_shape=tuple(x.shape[1:]),
        include_top=False,
    )
    _set_bn_momentum(base)
    return base(x)


def _resnet50_frozen(x: Any, weights: str | None, hparams: HParams) -> Any:
    """The original notebook's design: a frozen ResNet50 feature extractor and a small head.

    Kept as the seed's comparison row. Without ImageNet weights the frozen random features are
    near useless (the issue measured 0.36-0.40); that is reported, not hidden.
    """
    keras = _keras()
    # "caffe" preprocessing: 0-255, BGR mean subtracted (the channels are equal for a grey film).
    x = _to_rgb(x, 255.0, (-103.939, -116.779, -123.68))
    base = _applications_weights(
        "ResNet50", keras.applications.ResNet50, weights, input_shape=tuple(x.shape[1:]), include_top=False
    )
    base.trainable = False  # frozen BatchNorm runs in inference mode; momentum set for uniformity
    _set_bn_momentum(base)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.layers.Dense(256, activation="relu", name="head_dense")(x)


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone("compact", "compact CNN for CPU training (default)", _compact, pretrained=False),
        Backbone("mobilenetv3small", "keras.applications MobileNetV3Small", _mobilenetv3small, True),
        Backbone("efficientnetb0", "keras.applications EfficientNetB0", _efficientnetb0, True),
        Backbone(
            "resnet50_frozen", "frozen ResNet50 + small head (the original notebook)", _resnet50_frozen, True
        ),
    )
}
DEFAULT_BACKBONE = "compact"


def normalize_weights(weights: str | None) -> str | None:
    """``None``/"none"/"" mean from scratch; "imagenet" is the only pretrained choice."""
    if weights is None or str(weights).strip().lower() in ("", "none", "null", "random", "scratch"):
        return None
    if str(weights).strip().lower() == "imagenet":
        return "imagenet"
    raise SpineScanError(f"unknown weights {weights!r}; use 'none' or 'imagenet'")


def get_backbone(name: str | None) -> Backbone:
    name = name or DEFAULT_BACKBONE
    try:
        return BACKBONES[name]
    except KeyError:
        raise SpineScanError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}") from None


def build_classifier(
    spec: ModelSpec,
    backbone: str = DEFAULT_BACKBONE,
    weights: str | None = None,
    hparams: HParams | None = None,
) -> keras.Model:
    """Build ``spec``'s classifier on ``backbone``: input ``image``, output ``probabilities``.

    ``hparams`` (default: ``spec.train``) gives the compact backbone's width/depth and the dropout.
    The softmax head is the classification task's; another task would add its own head here.
    """
    keras = _keras()
    hparams = hparams or spec.train
    info = get_backbone(backbone)
    weights = normalize_weights(weights)
    if weights is not None and not info.pretrained:
        raise SpineScanError(f"backbone {info.name!r} has no {weights} weights; use --weights none")
    inputs = keras.Input(shape=tuple(spec.input_size), name="image", dtype="float32")
    x = info.build(inputs, weights, hparams)
    if len(x.shape) == 4:  # a feature map; backbones with their own head return a vector
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(hparams.dropout, name="dropout")(x)
    x = keras.layers.Dense(spec.num_classes, name="logits")(x)
    # float32 even under mixed precision: softmax in float16 is not trustworthy.
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"{spec.name}_{info.name}")


def _walk_layers(model: Any) -> Iterator[Any]:
    """Every layer, descending into nested models (keras.applications bases)."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _walk_layers(layer)


HEAD_LAYERS = ("logits",)


def transfer_weights(source: keras.Model, target: keras.Model) -> tuple[int, int]:
    """Copy weights from ``source`` into ``target`` layer by layer, matched by name and shape.

    Used by ``init_from`` (e.g. phantom pretraining): a layer whose shapes differ - the head when
    the class count changes - keeps its fresh initialisation. Returns (copied, skipped).
    """
    src = {layer.name: layer for layer in _walk_layers(source) if layer.weights}
    copied = skipped = 0
    for layer in _walk_layers(target):
        if not layer.weights or layer.name not in src:
            continue
        values = src[layer.name].get_weights()
        if [tuple(v.shape) for v in values] != [tuple(w.shape) for w in layer.weights]:
            skipped += 1
            continue
        layer.set_weights(values)
        copied += 1
    return copied, skipped
