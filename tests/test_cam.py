"""Class activation maps: the exported ``cam`` output against Keras, its meaning, and the overlay
geometry that puts a map back on the original film."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_export import _films, _make_outputs_vary

from spinescan.edge import overlay
from spinescan.radiograph.preprocess import Preprocessing, film_placement, preprocess


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def compact_conversion():
    from spinescan.export.onnx_convert import keras_to_onnx
    from spinescan.zoo.backbones import build_classifier
    from spinescan.zoo.registry import get_spec

    spec = get_spec("generalist").with_image_size(64)
    model = build_classifier(spec, "compact")
    x = _films(8, 64)
    _make_outputs_vary(model, x)
    return model, keras_to_onnx(model), x


def test_cam_output_matches_keras_and_reproduces_the_logits(compact_conversion) -> None:
    import onnxruntime as ort

    from spinescan.export.onnx_convert import cam_metadata, with_cam

    model, conversion, x = compact_conversion
    graph = conversion.proto.graph
    assert [o.name for o in graph.output] == ["probabilities", "cam"]
    assert [i.name for i in graph.input] == ["image"]
    session = ort.InferenceSession(conversion.proto.SerializeToString(), providers=["CPUExecutionProvider"])
    probs, cam = session.run(None, {"image": x})
    assert cam.shape == (8, 2, 2, 3)  # 64 px / 32 = 2x2 grid, one map per class
    keras_cam = with_cam(model)[0].predict(x, verbose=0)["cam"]
    np.testing.assert_allclose(cam, keras_cam, atol=1e-4 * max(1.0, float(np.abs(keras_cam).max())))
    np.testing.assert_allclose(probs, model.predict(x, verbose=0), atol=1e-5)
    # The definition written into the metadata: spatial mean of the CAM + bias = logits.
    meta = cam_metadata(model, conversion)
    assert meta["kind"] == "cam" and meta["grid"] == [2, 2]
    logits = cam.mean(axis=(1, 2)) + np.asarray(meta["bias"], dtype=np.float32)
    np.testing.assert_allclose(_softmax(logits), probs, atol=1e-5)
    # Maps differ between images and between classes: they carry the input, not a constant.
    assert np.ptp(cam, axis=0).max() > 1e-3 and np.ptp(cam, axis=3).max() > 1e-3


def test_a_head_without_exact_cam_is_stated_not_faked() -> None:
    from spinescan.export.onnx_convert import cam_head
    from spinescan.zoo.backbones import build_classifier
    from spinescan.zoo.registry import get_spec

    spec = get_spec("generalist").with_image_size(32)
    reason = cam_head(build_classifier(spec, "resnet50_frozen"))
    assert isinstance(reason, str) and "head_dense" in reason


def _film(h: int, w: int, column: int, seed: int = 0) -> np.ndarray:
    """A film with a bright vertical band (a 'spine') at ``column`` on noise."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, size=(h, w)).astype(np.uint8)
    img[:, max(0, column - 6) : column + 6] = 220
    return img


@pytest.mark.parametrize(
    ("shape", "input_size", "prep"),
    [
        ((300, 120), (64, 64, 1), Preprocessing()),
        ((150, 400), (64, 48, 1), Preprocessing()),
        ((400, 300), (112, 32, 1), Preprocessing(resize="spine_crop", crop_aspect=0.2)),
        ((90, 20), (112, 32, 1), Preprocessing(resize="spine_crop", crop_aspect=0.3)),
    ],
)
def test_geometry_reproduces_preprocess(shape, input_size, prep) -> None:
    """Cutting the film by its placement and letterboxing it gives exactly preprocess' tensor."""
    film = _film(*shape, column=int(shape[1] * 0.6))
    placement = film_placement(film, input_size, prep)
    expected = preprocess(film, input_size, prep)[..., 0]
    top, left, ch, cw = placement.crop
    from spinescan.radiograph.preprocess import scale_intensity

    x = scale_intensity(film, prep)[top : top + ch, left : left + cw]
    btop, bleft, bh, bw = placement.box
    rebuilt = np.full(input_size[:2], prep.pad_value, dtype=np.float32)
    rebuilt[btop : btop + bh, bleft : bleft + bw] = cv2.resize(x, (bw, bh), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(np.clip(rebuilt, 0, 1), expected)


def test_heatmap_lands_where_the_input_was() -> None:
    """A map hot on the letterboxed spine's input columns is hot on the film's spine columns."""
    prep = Preprocessing(resize="spine_crop", crop_aspect=0.2)
    film = _film(400, 300, column=200)
    placement = film_placement(film, (64, 32, 1), prep)
    x = preprocess(film, (64, 32, 1), prep)[..., 0]
    heat = overlay.input_to_film(x, placement, film.shape)  # the input itself as a "map"
    seen = np.isfinite(heat)
    assert not seen[:, :100].any()  # cut away by spine_crop: no heatmap there
    kept = np.flatnonzero(seen.any(axis=0))
    cols = np.nanmean(heat[:, kept], axis=0)
    assert abs(int(kept[np.argmax(cols)]) - 200) <= 6


def test_render_and_overlay_png(tmp_path: Path) -> None:
    film = _film(200, 100, column=50)
    placement = film_placement(film, (64, 64, 1), Preprocessing())
    heat = overlay.film_heatmap(np.array([[0.0, 2.0], [1.0, -3.0]]), placement, film.shape, (64, 64))
    assert 0.9 < np.nanmax(heat) <= 1.0 and np.nanmin(heat) >= 0  # the padding held the very peak
    bgr = overlay.render(
        film, heatmap=heat, landmarks=np.array([[10, 20]]), lines=[((0, 0), (50, 50))], caption=["a", "b"]
    )
    assert bgr.shape[1] == 100 and bgr.shape[0] > 200 and bgr.dtype == np.uint8
    path = overlay.write_png(tmp_path / "o" / "x.png", bgr)
    assert cv2.imread(str(path)).shape == bgr.shape
    with pytest.raises(ValueError):
        overlay.render(film, heatmap=np.zeros((5, 5)))


def test_predict_overlay_and_heatmap_json(tmp_path: Path, compact_conversion, capsys) -> None:
    """spinescan-predict --overlay writes one PNG per film and model; --json --heatmap the grid."""
    from spinescan.edge import predictor
    from spinescan.export.onnx_convert import cam_metadata, set_metadata

    model, conversion, _ = compact_conversion
    spec_meta = {
        "model_name": "tiny",
        "classes": ["healthy", "kyphosis", "lordosis"],
        "input_size": [64, 64, 1],
        "preprocessing": Preprocessing().to_json(),
        "view": "lateral",
        "cam": cam_metadata(model, conversion),
    }
    set_metadata(conversion.proto, spec_meta)
    onnx_path = tmp_path / "tiny.onnx"
    onnx_path.write_bytes(conversion.proto.SerializeToString())
    films = []
    for i in range(2):
        films.append(tmp_path / f"film{i}.png")
        cv2.imwrite(str(films[-1]), _film(240, 130, column=60 + 10 * i, seed=i))
    out = tmp_path / "overlays"
    code = predictor.main(
        [*map(str, films), "--model", str(onnx_path), "--json", "--heatmap", "--overlay", str(out)]
    )
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    assert sorted(p.name for p in out.iterdir()) == ["film0.tiny.png", "film1.tiny.png"]
    for r in results:
        grid = np.asarray(r["heatmap"]["grid"])
        assert grid.shape == (2, 2) and grid.max() == pytest.approx(1.0) and grid.min() >= 0
        assert r["heatmap"]["class"] == r["label"]
        assert cv2.imread(r["overlay"]).shape[1] == 130
    # Two films with the same name in different folders get two overlays, not one overwritten.
    twin = tmp_path / "other" / films[0].name
    twin.parent.mkdir()
    twin.write_bytes(films[0].read_bytes())
    assert predictor.main([str(films[0]), str(twin), "--model", str(onnx_path), "--overlay", str(out)]) == 0
    assert (out / "film0-2.tiny.png").is_file()
    direct = predictor.predict_image(films[0], model=str(onnx_path), heatmap=True)
    np.testing.assert_allclose(direct["heatmap"]["grid"], results[0]["heatmap"]["grid"], atol=1e-6)
