"""The view guard at prediction time (spinescan.edge.guard, spinescan.edge.predictor): it runs
first, a model of another view is skipped with the reason, a film it calls ``other`` is "not a
spine radiograph" (no label, no angles), ``--view`` overrides it. Stand-in models make the guard's
answer a function of the film's grey level, so each case is exact and the test takes no training;
the trained guard itself is measured by benchmarks/view_guard.py (docs/view-guard.md)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from spinescan.edge import predictor
from spinescan.edge.guard import NOT_SPINE, is_guard, split_guard
from spinescan.edge.model_metadata import ModelInfo
from spinescan.edge.onnxmodel import OnnxModel
from spinescan.radiograph.preprocess import Preprocessing

#: A film's grey level -> what the stand-in guard calls it.
LEVELS = {"ap": 100, "lateral": 200, "other": 20}


class Stub:
    """Duck-typed :class:`OnnxModel`: the tensor is the film's mean grey; a guard maps it to a view."""

    def __init__(self, name: str, view: str, classes: tuple[str, ...]) -> None:
        self.info = ModelInfo(name, classes, view, (8, 8, 1), Preprocessing(), {})

    @property
    def name(self) -> str:
        return self.info.name

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, None]:
        return np.full((8, 8, 1), float(image.mean()), np.float32), None

    def predict(self, batch: np.ndarray) -> np.ndarray:
        grey = batch.reshape(len(batch), -1).mean(axis=1)
        if is_guard(self.info):
            want = [min(LEVELS, key=lambda v: abs(LEVELS[v] - g)) for g in grey]
            return np.array([[0.9 if c == w else 0.05 for c in self.info.classes] for w in want])
        return np.tile(np.linspace(0.2, 0.8, len(self.info.classes)) / 1.0, (len(batch), 1))

    def predict_cam(self, batch: np.ndarray) -> tuple[np.ndarray, None]:
        return self.predict(batch), None

    def heatmap(self, image: np.ndarray, probs: np.ndarray, cam: None) -> dict:
        return {"class": self.info.classes[int(np.argmax(probs))], "error": "no heatmap"}

    result = OnnxModel.result
    _marked = OnnxModel._marked


def _models() -> list[Stub]:
    return [
        Stub("scoliosis", "ap", ("healthy", "scoliosis")),
        Stub("view", "any", ("ap", "lateral", "other")),
        Stub("generalist", "lateral", ("healthy", "kyphosis", "lordosis")),
    ]


@pytest.fixture
def films(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for view, grey in LEVELS.items():
        out[view] = tmp_path / f"{view}.png"
        film = np.full((64, 48), grey, np.uint8)
        film[0, 0] = grey + 1  # a constant image is refused by the reader itself
        cv2.imwrite(str(out[view]), film)
    return out


def _by_model(results: list[dict], film: Path) -> dict[str, dict]:
    return {r["model"]: r for r in results if r["image"] == str(film)}


@pytest.mark.parametrize("explain", [False, True], ids=["streamed", "heatmap"])
def test_guard_runs_first_and_skips_other_views(films: dict[str, Path], explain: bool) -> None:
    results = predictor.classify_files(list(films.values()), _models(), heatmap=explain)
    assert [r["model"] for r in results if r["image"] == str(films["ap"])] == [
        "view",
        "scoliosis",
        "generalist",
    ]  # the guard's entry first, then every model in order
    ap = _by_model(results, films["ap"])
    assert ap["view"]["task"] == "view" and ap["view"]["label"] == "ap" and "reason" not in ap["view"]
    assert ap["scoliosis"]["label"] == "scoliosis" and "skipped" not in ap["scoliosis"]
    assert ap["generalist"] == {
        "image": str(films["ap"]),
        "model": "generalist",
        "label": None,
        "skipped": "the view guard reads a ap film; generalist reads lateral films"
        " (--view lateral overrides)",
    }
    lateral = _by_model(results, films["lateral"])
    assert lateral["generalist"]["label"] is not None and lateral["scoliosis"]["label"] is None
    other = _by_model(results, films["other"])
    assert other["view"]["label"] == "other"
    assert other["view"]["reason"] == f"{NOT_SPINE} (the view guard calls it other)"
    for name in ("scoliosis", "generalist"):
        assert other[name]["label"] is None and "probabilities" not in other[name]
        assert other[name]["skipped"].startswith(NOT_SPINE)


def test_view_option_overrides_the_guard(films: dict[str, Path]) -> None:
    kept = predictor._of_view(_models(), "lateral")
    assert [m.name for m in kept] == ["generalist"]  # the guard is not run under --view
    results = predictor.classify_files([films["other"]], kept)
    assert [r["model"] for r in results] == ["generalist"] and results[0]["label"] is not None


def test_without_a_guard_nothing_changes(films: dict[str, Path]) -> None:
    models = [m for m in _models() if m.name != "view"]
    assert split_guard(models) == (None, models)
    results = predictor.classify_files([films["other"]], models)
    assert [r["model"] for r in results] == ["scoliosis", "generalist"]
    assert all(r["label"] is not None for r in results)


def test_table_shows_the_skip_reason(films: dict[str, Path]) -> None:
    table = predictor.format_table(predictor.classify_files([films["other"]], _models()))
    assert table.count("skipped: not a spine radiograph") == 2


def _constant_model(path: Path, name: str, view: str, classes: tuple[str, ...], logits: list[float]) -> None:
    """A tiny ONNX classifier with the export's metadata whose answer is fixed (``logits``)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    k = len(classes)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["mm"]),
            helper.make_node("Add", ["mm", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        ],
        name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 8, 8, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, k])],
        [
            helper.make_tensor("w", TensorProto.FLOAT, [64, k], [0.0] * (64 * k)),
            helper.make_tensor("b", TensorProto.FLOAT, [k], logits),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    meta = {
        "spinescan_format": "1",
        "model_name": name,
        "classes": json.dumps(list(classes)),
        "input_size": "[8, 8, 1]",
        "preprocessing": Preprocessing().to_json(),
        "view": view,
    }
    helper.set_model_props(model, meta)
    onnx.save(model, str(path))


def test_python_api_runs_the_guard_of_the_models_folder(films: dict[str, Path], tmp_path: Path) -> None:
    """predict_image: the guard beside the model runs first; view= overrides it."""
    folder = tmp_path / "exported"
    folder.mkdir()
    _constant_model(folder / "scoliosis.onnx", "scoliosis", "ap", ("healthy", "scoliosis"), [0.0, 1.0])
    _constant_model(folder / "view.onnx", "view", "any", ("ap", "lateral", "other"), [0.0, 3.0, 0.0])
    film = films["ap"]
    skipped = predictor.predict_image(film, "scoliosis", models_dir=folder)
    assert skipped["label"] is None and "probabilities" not in skipped
    assert skipped["skipped"].startswith("the view guard reads a lateral film; scoliosis reads ap films")
    assert skipped["view_guard"]["label"] == "lateral"
    read = predictor.predict_image(film, "scoliosis", models_dir=folder, view="ap")
    assert read["label"] == "scoliosis" and "view_guard" not in read
    told = predictor.predict_image(film, "scoliosis", models_dir=folder, view="lateral")
    assert told["label"] is None and "scoliosis reads ap films" in told["skipped"]
    (folder / "view.onnx").unlink()  # no guard: read as before
    assert predictor.predict_image(film, "scoliosis", models_dir=folder)["label"] == "scoliosis"
