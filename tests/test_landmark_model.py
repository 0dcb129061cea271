"""The heatmap landmark model: soft-argmax read-out, loss masking, save/load, a few learning steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import keras

from spinescan.landmark_net.model import (
    HeatmapConfig,
    build_heatmap_model,
    custom_objects,
    make_loss,
)

TINY = HeatmapConfig(input_size=(64, 32, 1), n_points=70, widths=(8, 8, 8, 8, 8), decoder_width=8)


def test_soft_argmax_reads_the_peak_in_input_coordinates() -> None:
    layer = custom_objects()["SoftArgmax"](input_hw=(64, 32))
    logits = np.full((1, 16, 8, 2), -50.0, np.float32)
    logits[0, 5, 3, 0] = 50.0  # one sharp peak for point 0
    logits[0, 10, 2, 1] = logits[0, 10, 3, 1] = 50.0  # point 1 split between two cells
    out = keras.ops.convert_to_numpy(layer(logits))
    np.testing.assert_allclose(out[0, 0, :2], [(3 + 0.5) / 8, (5 + 0.5) / 16], atol=1e-6)
    np.testing.assert_allclose(out[0, 1, :2], [3.0 / 8, (10 + 0.5) / 16], atol=1e-6)
    assert out[0, 0, 2] == pytest.approx(0.0, abs=1e-3)
    assert out[0, 1, 2] == pytest.approx(4.0, rel=1e-3)  # two cells 4 input px apart: variance 2^2


def test_centre_offsets_reads_each_corner_as_an_offset_from_its_vertebra() -> None:
    """The centre-offset read-out: a group's soft-argmax centre plus the offset map averaged under
    that group's heatmap; two corners of one vertebra stay apart even when its heatmap is unsure."""
    layer = custom_objects()["CentreOffsets"](input_hw=(64, 32), groups=[0, 0, 1], offset_unit=8.0)
    logits = np.full((1, 16, 8, 2), -50.0, np.float32)
    logits[0, 5, 3, 0] = 50.0  # vertebra 0: one sharp peak
    logits[0, 10, 2, 1] = logits[0, 10, 3, 1] = 50.0  # vertebra 1: split between two cells
    offsets = np.zeros((1, 16, 8, 6), np.float32)
    offsets[..., 0] = -1.0  # point 0: 8 input px to the left of its centre
    offsets[..., 2] = +1.0  # point 1: 8 px to the right
    offsets[..., 5] = 0.5  # point 2: 4 px below
    out = keras.ops.convert_to_numpy(layer([logits, offsets]))
    centre0 = np.array([(3 + 0.5) / 8, (5 + 0.5) / 16])
    np.testing.assert_allclose(out[0, 0, :2], centre0 + np.array([-8 / 32, 0]), atol=1e-6)
    np.testing.assert_allclose(out[0, 1, :2], centre0 + np.array([8 / 32, 0]), atol=1e-6)
    np.testing.assert_allclose(out[0, 2, :2], [3.0 / 8, (10 + 0.5) / 16 + 4 / 64], atol=1e-6)
    assert out[0, 2, 2] == pytest.approx(4.0, rel=1e-3)  # the group's spread


def test_a_centre_offset_model_saves_loads_and_keeps_its_output() -> None:
    from spinescan.radiograph.landmark_codec import point_groups

    cfg = HeatmapConfig(
        input_size=(64, 32, 1), n_points=70, widths=(8, 8, 8, 8, 8), decoder_width=8, groups=point_groups()
    )
    model = build_heatmap_model(cfg)
    x = np.random.default_rng(0).random((2, 64, 32, 1)).astype(np.float32)
    assert model(x).shape == (2, 70, 4)
    assert model.get_layer("heatmap_logits").filters == 18  # 17 vertebrae and S1


def _targets(rng: np.random.Generator, n: int) -> np.ndarray:
    y = np.zeros((n, 70, 3), np.float32)
    y[..., :2] = rng.uniform(0.2, 0.8, (n, 70, 2))
    y[..., 2] = 1.0
    return y


def test_loss_is_masked_by_visibility_and_sees_endplate_angles() -> None:
    loss = make_loss((64, 32), angle_weight=20.0, spread_weight=0.0, visibility_weight=0.0)
    rng = np.random.default_rng(0)
    y = _targets(rng, 2)
    pred = np.concatenate([y[..., :2], np.full((2, 70, 1), 9.0), np.full((2, 70, 1), 2.0)], axis=-1)
    pred = pred.astype(np.float32)
    assert float(loss(y, pred)) == pytest.approx(0.0, abs=1e-4)
    moved = pred.copy()
    moved[:, 5, :2] += 0.3  # far off, but the point is marked invisible: no cost
    y_hidden = y.copy()
    y_hidden[:, 5, 2] = 0.0
    assert float(loss(y_hidden, moved)) == pytest.approx(0.0, abs=1e-4)
    # the same endplate error in pixels costs more when it tilts the endplate (angle term)
    tilt, slide = pred.copy(), pred.copy()
    tilt[:, 1, 1] += 1.0 / 64  # T1 top-right corner 1 px down: the endplate tilts
    slide[:, 1, 0] += 1.0 / 32  # 1 px along the endplate: no tilt
    y_flat = y.copy()
    y_flat[:, 1, 1] = y_flat[:, 0, 1]  # a level T1 endplate, 1+ px long
    y_flat[:, 1, 0] = y_flat[:, 0, 0] + 8.0 / 32
    for p in (pred, tilt, slide):
        p[:, 1, :2] += y_flat[:, 1, :2] - y[:, 1, :2]
    base = float(loss(y_flat, pred))
    assert float(loss(y_flat, tilt)) > float(loss(y_flat, slide)) > base


def test_tiny_model_builds_saves_loads_and_learns(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    model = build_heatmap_model(TINY)
    assert model.input.shape[1:] == (64, 32, 1) and model.output.shape[1:] == (70, 4)
    assert model.output.name.startswith("points") or model.layers[-1].name == "points"
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (8, 64, 32, 1)).astype(np.float32)
    y = np.repeat(_targets(rng, 1), 8, axis=0)  # one constellation: learnable from noise images
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=make_loss((64, 32), angle_weight=0.0))

    def pixel_error() -> float:
        pred = model.predict(x, verbose=0)
        return float(np.mean(np.abs(pred[..., :2] - y[..., :2]) * [32, 64]))

    before = pixel_error()
    model.fit(x, y, epochs=40, batch_size=8, verbose=0)
    assert pixel_error() < 0.6 * before
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.models.load_model(path, custom_objects=custom_objects(), compile=False)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    with pytest.raises(ValueError, match="multiples of 32"):
        build_heatmap_model(HeatmapConfig(input_size=(60, 32, 1)))
