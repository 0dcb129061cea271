"""A heatmap landmark model with a differentiable soft-argmax read-out (DSNT), and its loss.

Contract (what export and the predictor rely on): input ``image`` (N, H, W, C) float32 in [0, 1]
from :func:`spinescan.radiograph.preprocess.preprocess_placed`; one output ``points`` (N, K, 4): per
point the soft-argmax ``x`` and ``y`` normalised to the input (see
:func:`spinescan.radiograph.landmark_codec.to_normalised`), a visibility logit, and the heatmap's spread
(its variance in input pixels squared; training regularises it, the predictor ignores it).

Why this design: angles are read from endplate slopes, so they need sub-pixel corners. A heatmap
per point at stride 4 keeps the spatial detail, and the soft-argmax (Nibali et al., "Numerical
coordinate regression with convolutional neural networks", 2018) turns it into coordinates that
the loss can train directly, with sub-cell precision, no argmax quantisation and no decoding step
outside the graph. A small encoder-decoder (U-Net-like) with a global-context vector at the
coarsest level lets each heatmap know which vertebra it is (counting from T1 needs the whole film).

BatchNorm momentum 0.9 (as :mod:`spinescan.zoo.backbones`: short from-scratch runs).
TensorFlow/Keras are imported lazily.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from spinescan.errors import require_tensorflow

BN_MOMENTUM = 0.9


@dataclass(frozen=True)
class HeatmapConfig:
    """Architecture knobs (recorded with a run)."""

    input_size: tuple[int, int, int] = (256, 96, 1)
    n_points: int = 70
    widths: tuple[int, ...] = (16, 32, 48, 64, 96)  # strides 2, 4, 8, 16, 32
    decoder_width: int = 48
    output_stride: int = 4
    coords: bool = False  # CoordConv channels at the input and before the heatmaps
    head_width: int = 0  # a 1x1 conv-BN-ReLU of this width before the heatmap logits (0: none)
    # Per-point group (e.g. its vertebra) for the centre-offset read-out; empty: one heatmap per point.
    groups: tuple[int, ...] = ()
    offset_unit: float = 8.0  # input pixels per unit of the offset maps (keeps their raw values ~1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _keras() -> Any:
    require_tensorflow("Building a landmark model")
    import keras

    return keras


_LAYERS: dict[str, Any] = {}


def custom_objects() -> dict[str, Any]:
    """The custom layers, for ``keras.models.load_model(..., custom_objects=...)``."""
    if _LAYERS:
        return dict(_LAYERS)
    keras = _keras()
    ops = keras.ops

    def _moments(prob: Any, h: int, w: int, input_hw: tuple[int, int]) -> tuple[Any, Any]:
        """Mean position (normalised to the input) and spread (variance in input px^2) of heatmaps
        ``prob`` (N, h*w, K), each summing to one over positions: the soft-argmax's read-out."""
        # cell centres, normalised to the input: (j + 0.5) / w
        gx = (ops.arange(w, dtype="float32") + 0.5) / w
        gy = (ops.arange(h, dtype="float32") + 0.5) / h
        grid_x = ops.reshape(ops.tile(gx[None, :], (h, 1)), (h * w,))
        grid_y = ops.reshape(ops.tile(gy[:, None], (1, w)), (h * w,))
        grid = ops.stack([grid_x, grid_y], axis=1)  # (hw, 2)
        pt = ops.transpose(prob, (0, 2, 1))  # (N, K, hw)
        mean = ops.matmul(pt, grid)  # (N, K, 2)
        second = ops.matmul(pt, grid * grid)
        var = ops.maximum(second - mean * mean, 0.0)
        scale = ops.convert_to_tensor([float(input_hw[1]) ** 2, float(input_hw[0]) ** 2])
        return mean, ops.sum(var * scale, axis=-1, keepdims=True)

    @keras.saving.register_keras_serializable(package="spinescan")
    class SoftArgmax(keras.layers.Layer):
        """Heatmap logits (N, h, w, K) -> (N, K, 3): normalised x, y and variance in input px^2."""

        def __init__(self, input_hw: tuple[int, int], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.input_hw = (int(input_hw[0]), int(input_hw[1]))

        def call(self, logits: Any) -> Any:
            shape = ops.shape(logits)
            h, w, k = logits.shape[1], logits.shape[2], logits.shape[3]
            flat = ops.reshape(logits, (shape[0], h * w, k))
            prob = ops.softmax(flat, axis=1)  # over positions
            mean, spread = _moments(prob, h, w, self.input_hw)
            return ops.concatenate([mean, spread], axis=-1)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "input_hw": list(self.input_hw)}

    @keras.saving.register_keras_serializable(package="spinescan")
    class AddContext(keras.layers.Layer):
        """Add a per-image vector (N, C) to every position of a feature map (N, h, w, C)."""

        def call(self, inputs: Any) -> Any:
            fmap, vec = inputs
            return fmap + vec[:, None, None, :]

    @keras.saving.register_keras_serializable(package="spinescan")
    class AddCoords(keras.layers.Layer):
        """Append two channels holding each position's normalised x and y (CoordConv, Liu et al.
        2018): which vertebra a heatmap is for depends on where it is along the film."""

        def call(self, fmap: Any) -> Any:
            h, w = fmap.shape[1], fmap.shape[2]
            gx = (ops.arange(w, dtype="float32") + 0.5) / w
            gy = (ops.arange(h, dtype="float32") + 0.5) / h
            grid = ops.stack([ops.tile(gx[None, :], (h, 1)), ops.tile(gy[:, None], (1, w))], axis=-1)
            batch = ops.zeros_like(fmap[..., :1])  # (N, h, w, 1): broadcasts the grid over the batch
            return ops.concatenate([fmap, batch + grid[None]], axis=-1)

    @keras.saving.register_keras_serializable(package="spinescan")
    class CentreOffsets(keras.layers.Layer):
        """(group heatmap logits (N, h, w, G), offset maps (N, h, w, 2K)) -> (N, K, 3): per point
        its group's soft-argmax centre plus the offset map averaged under that group's heatmap, and
        the group heatmap's variance (input px^2).

        Why: with one heatmap per corner, a model unsure which side a corner is on puts mass on both
        and the soft-argmax lands between them: the two corners of an endplate collapse onto one spot
        (18% of corner pairs on phantoms). Locating the vertebra once and reading each corner as an
        offset from it keeps the corners a vertebra's shape apart whatever the heatmap's doubt.
        """

        def __init__(
            self, input_hw: tuple[int, int], groups: list[int], offset_unit: float = 8.0, **kwargs: Any
        ) -> None:
            super().__init__(**kwargs)
            self.input_hw = (int(input_hw[0]), int(input_hw[1]))
            self.groups = [int(g) for g in groups]
            self.offset_unit = float(offset_unit)

        def call(self, inputs: Any) -> Any:
            logits, offsets = inputs
            shape = ops.shape(logits)
            h, w, g = logits.shape[1], logits.shape[2], logits.shape[3]
            k = len(self.groups)
            prob = ops.softmax(ops.reshape(logits, (shape[0], h * w, g)), axis=1)  # (N, hw, G)
            one_hot = ops.convert_to_tensor(
                [[1.0 if self.groups[j] == i else 0.0 for j in range(k)] for i in range(g)]
            )
            pk = ops.matmul(prob, one_hot)  # (N, hw, K): each point's group heatmap
            centre, spread = _moments(pk, h, w, self.input_hw)
            off = ops.reshape(offsets, (shape[0], h * w, k, 2))
            mean_off = ops.sum(pk[..., None] * off, axis=1)  # (N, K, 2), offset units
            unit = ops.convert_to_tensor(
                [self.offset_unit / float(self.input_hw[1]), self.offset_unit / float(self.input_hw[0])]
            )
            return ops.concatenate([centre + mean_off * unit, spread], axis=-1)

        def get_config(self) -> dict[str, Any]:
            return {
                **super().get_config(),
                "input_hw": list(self.input_hw),
                "groups": list(self.groups),
                "offset_unit": self.offset_unit,
            }

    _LAYERS.update(
        SoftArgmax=SoftArgmax, AddContext=AddContext, AddCoords=AddCoords, CentreOffsets=CentreOffsets
    )
    return dict(_LAYERS)


def _conv_bn(x: Any, filters: int, name: str, strides: int = 1, kernel: int = 3) -> Any:
    keras = _keras()
    L = keras.layers
    x = L.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = L.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return L.ReLU(name=f"{name}_relu")(x)


def build_heatmap_model(cfg: HeatmapConfig | None = None) -> Any:
    """The encoder-decoder heatmap model; output ``points`` (N, K, 4) as described above."""
    cfg = cfg or HeatmapConfig()
    keras = _keras()
    L = keras.layers
    objs = custom_objects()
    h, w, c = cfg.input_size
    if h % 32 or w % 32:
        raise ValueError(f"input height and width must be multiples of 32, got {h}x{w}")
    inp = keras.Input(shape=(h, w, c), name="image")
    x = objs["AddCoords"](name="coords_in")(inp) if cfg.coords else inp
    skips = {}
    for level, width in enumerate(cfg.widths):
        stride = 2 ** (level + 1)
        x = _conv_bn(x, width, f"enc{stride}a", strides=2)
        x = _conv_bn(x, width, f"enc{stride}b")
        skips[stride] = x
    top = 2 ** len(cfg.widths)
    g = L.GlobalAveragePooling2D(name="context_pool")(x)
    g = L.Dense(cfg.widths[-1], activation="relu", name="context_dense")(g)
    x = objs["AddContext"](name="context_add")([x, g])
    x = _conv_bn(x, cfg.widths[-1], "context_conv")
    vis = L.Dense(cfg.n_points, name="visibility_dense")(L.GlobalAveragePooling2D(name="vis_pool")(x))
    stride = top
    while stride > cfg.output_stride:
        stride //= 2
        x = L.UpSampling2D(2, interpolation="nearest", name=f"up{stride}")(x)
        x = L.Concatenate(name=f"cat{stride}")([x, skips[stride]])
        x = _conv_bn(x, cfg.decoder_width, f"dec{stride}a")
        x = _conv_bn(x, cfg.decoder_width, f"dec{stride}b")
    if cfg.coords:
        x = objs["AddCoords"](name="coords_out")(x)
        x = _conv_bn(x, cfg.decoder_width, "head")
    if cfg.head_width:
        x = _conv_bn(x, cfg.head_width, "head_mix", kernel=1)
    if cfg.groups:
        if len(cfg.groups) != cfg.n_points:
            raise ValueError(f"groups must name one group per point ({cfg.n_points}), got {len(cfg.groups)}")
        logits = L.Conv2D(max(cfg.groups) + 1, 1, name="heatmap_logits")(x)
        offsets = L.Conv2D(2 * cfg.n_points, 1, name="offset_maps")(x)
        xy_spread = objs["CentreOffsets"](
            input_hw=(h, w), groups=list(cfg.groups), offset_unit=cfg.offset_unit, name="centre_offsets"
        )([logits, offsets])
    else:
        logits = L.Conv2D(cfg.n_points, 1, name="heatmap_logits")(x)
        xy_spread = objs["SoftArgmax"](input_hw=(h, w), name="soft_argmax")(logits)
    vis = L.Reshape((cfg.n_points, 1), name="visibility_logit")(vis)
    out = L.Concatenate(axis=-1, name="points")([xy_spread[..., :2], vis, xy_spread[..., 2:]])
    return keras.Model(inp, out, name="landmarks_heatmap")


def make_loss(
    input_hw: tuple[int, int],
    angle_weight: float = 20.0,
    spread_target: float = 2.0,
    spread_weight: float = 0.01,
    visibility_weight: float = 1.0,
) -> Any:
    """The landmark loss on ``y_true`` (N, K, 3) = normalised x, y, visible (0/1).

    * coordinates: mean absolute error in input pixels over visible points;
    * endplates: ``angle_weight`` x |sin| of the angle between each predicted and true endplate
      (TL-TR and BL-BR of every vertebra, and the sacrum), where both ends are visible: it trains
      what the Cobb angles are made of, which the coordinate error weighs only through the
      endplate's short length;
    * heatmap spread: pulls each visible point's variance towards ``spread_target`` px^2 (the DSNT
      variance regulariser), so the heatmaps stay peaked instead of averaging two vertebrae;
    * visibility: binary cross-entropy of the logit.
    """
    keras = _keras()
    ops = keras.ops
    h, w = float(input_hw[0]), float(input_hw[1])

    def landmark_loss(y_true: Any, y_pred: Any) -> Any:
        y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
        vis = y_true[..., 2]
        scale = ops.convert_to_tensor([w, h])
        err = ops.abs(y_pred[..., :2] - y_true[..., :2]) * scale
        n_vis = ops.maximum(ops.sum(vis), 1.0)
        coord = ops.sum(ops.sum(err, axis=-1) * vis) / n_vis
        # endplates: pairs (0,1), (2,3) per vertebra, and (68, 69) for the sacrum
        k = y_true.shape[1]
        left = list(range(0, k, 2))
        right = list(range(1, k, 2))
        pt = ops.take(y_true[..., :2], left, axis=1), ops.take(y_true[..., :2], right, axis=1)
        pp = ops.take(y_pred[..., :2], left, axis=1), ops.take(y_pred[..., :2], right, axis=1)
        dt = (pt[1] - pt[0]) * scale
        dp = (pp[1] - pp[0]) * scale
        cross = dt[..., 0] * dp[..., 1] - dt[..., 1] * dp[..., 0]
        norm = ops.sqrt(ops.sum(dt * dt, -1) * ops.sum(dp * dp, -1) + 1e-6)
        both = ops.take(vis, left, axis=1) * ops.take(vis, right, axis=1)
        angle = ops.sum(ops.abs(cross / norm) * both) / ops.maximum(ops.sum(both), 1.0)
        spread = ops.sum(ops.abs(y_pred[..., 3] - spread_target) * vis) / n_vis
        bce = ops.mean(
            ops.binary_crossentropy(ops.expand_dims(vis, -1), y_pred[..., 2:3], from_logits=True)
        )
        return coord + angle_weight * angle + spread_weight * spread + visibility_weight * bce

    return landmark_loss
