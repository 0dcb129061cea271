"""int8 for landmark models (issue 14): the soft-argmax tail kept in float, the gate on what users
read (derived label, angles, landmark shift, through the predictor's read-out), its figures in the
manifest and card, and the predictor running a shipped int8 landmark model.

One tiny ``cobb`` run (64 x 64 input, 1 epoch on the session's phantoms) serves the export tests;
its figures are meaningless, so the gate's limits are patched to force each decision, and what is
checked is that the decision, the files and the records follow the measured figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spinescan.export import landmark_int8, quantize
from spinescan.export.landmark_int8 import AngleShift, LandmarkInt8Result, landmark_gate
from spinescan.export.quantize import float_tail
from spinescan.radiograph.angles import AP_ANGLES

# --- the gate and the tail, without TensorFlow ---------------------------------------------------


def _angles(mean: float = 0.1, max_: float = 0.5, measured: float = 1.0) -> dict[str, AngleShift]:
    return {name: AngleShift(10, mean, max_, measured) for name in ("a_deg", "b_deg")}


def test_landmark_gate_follows_each_limit() -> None:
    ok, reason = landmark_gate(100, 1.0, 0.001, _angles())
    assert ok and "label agreement 100.0%" in reason and "0.10 deg" in reason
    assert landmark_gate(100, 0.99, 0.001, _angles())[0]  # the limits themselves pass
    assert landmark_gate(100, 1.0, 0.001, _angles(mean=landmark_int8.MAX_MEAN_ANGLE_DIFF_DEG))[0]
    assert landmark_gate(100, 1.0, landmark_int8.MAX_MEAN_SHIFT, _angles())[0]
    ok, reason = landmark_gate(100, 0.98, 0.001, _angles())
    assert not ok and "derived-label agreement with fp32 98.0% < 99%" in reason
    ok, reason = landmark_gate(100, 1.0, 0.001, {**_angles(), "b_deg": AngleShift(10, 0.6, 37.0, 1.0)})
    assert not ok and reason.startswith("b_deg mean |int8 - fp32| 0.60 deg > 0.5 (max 37.0)")
    ok, reason = landmark_gate(100, 1.0, 0.001, _angles(measured=0.97))
    assert not ok and "measurable for one model and not the other on 3.0%" in reason
    ok, reason = landmark_gate(100, 1.0, 0.0021, _angles())
    assert not ok and "mean landmark shift 0.0021" in reason
    assert landmark_gate(0, None, None, {}) == (False, "no readable test films to check it on")
    assert landmark_gate(100, 0.5, 0.001, _angles(), min_label_agreement=0.4)[0]  # explicit limits win


def test_angle_shift_counts_only_films_measured_by_both() -> None:
    shift = landmark_int8._angle_shift([(1.0, 7.0), (2.0, 2.5), (None, None), (None, 3.0)])
    assert (shift.n, shift.mean_abs_deg, shift.max_abs_deg) == (2, 3.25, 6.0)
    assert shift.measured_agreement == 0.75 and shift.n_large == 1  # 6 deg > 5, 0.5 deg is not


def test_landmark_result_round_trips_through_its_versioned_record() -> None:
    result = LandmarkInt8Result(
        n_test=3, label_agreement=1.0, landmark_shift_mean=0.001, landmark_shift_max=0.002,
        visibility_agreement=1.0, angles=_angles(), size_fp32=400, size_int8=100, latency_ms_fp32=1.0,
        latency_ms_int8=2.0, shipped=True, reason="r", float_tail="logits", float_nodes=("c", "s"),
    )  # fmt: skip
    record = json.loads(json.dumps(result.to_dict()))  # what manifest.json holds
    assert record["kind"] == "landmarks" and record["schema"] == LandmarkInt8Result.SCHEMA
    assert record["size_ratio"] == 4.0 and record["angles"]["a_deg"]["mean_abs_deg"] == 0.1
    assert LandmarkInt8Result.from_dict(record) == result
    with pytest.raises(ValueError, match="schema"):
        LandmarkInt8Result.from_dict({**record, "schema": 99})
    with pytest.raises(ValueError, match="kind"):
        LandmarkInt8Result.from_dict({**record, "kind": "classification"})


def _tail_graph():
    """stem Conv -> Relu -> logits Conv -> Transpose -> Reshape -> Softmax -> MatMul -> out, and a
    branch (GlobalAveragePool -> Flatten -> out2) off the Relu that does not depend on the logits."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "w")
    w2 = numpy_helper.from_array(np.ones((2, 4, 1, 1), np.float32), "w2")
    grid = numpy_helper.from_array(np.ones((64, 2), np.float32), "grid")
    shape = numpy_helper.from_array(np.array([1, 2, 64], np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c1"], name="stem", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node("Conv", ["r1", "w2"], ["logits"], name="logits_conv"),
        helper.make_node("Transpose", ["logits"], ["t"], name="transpose", perm=[0, 1, 2, 3]),
        helper.make_node("Reshape", ["t", "shape"], ["flat"], name="reshape"),
        helper.make_node("Softmax", ["flat"], ["prob"], name="softmax", axis=2),
        helper.make_node("MatMul", ["prob", "grid"], ["out"], name="matmul"),
        helper.make_node("GlobalAveragePool", ["r1"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["out2"], name="flatten"),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("out2", TensorProto.FLOAT, None)],
        [w, w2, grid, shape],
    )  # fmt: skip
    return helper.make_model(graph)


def test_float_tail_is_everything_after_the_heatmap_logits() -> None:
    pytest.importorskip("onnx")
    model = _tail_graph()
    assert float_tail(model) == ["logits_conv", "transpose", "reshape", "softmax", "matmul"]
    assert float_tail(model, include_logits=False) == ["transpose", "reshape", "softmax", "matmul"]
    model.graph.node.remove(model.graph.node[5])  # no Softmax: no tail
    assert float_tail(model) == []
    with pytest.raises(ValueError, match="unknown float tail"):
        quantize.quantize_int8(Path("a.onnx"), Path("b.onnx"), np.zeros((1, 8, 8, 1)), tail="all")


# --- a tiny trained run, exported -----------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped(cobb_int8_export: tuple[Path, list]) -> tuple[Path, list]:
    """The run exported with int8 and every limit of the gate opened: int8 ships whatever the
    1-epoch model does. Also returns the figures the gate was called with (tests/conftest.py: the
    same export serves tests/test_landmark_zoo.py)."""
    return cobb_int8_export


def test_shipped_int8_records_the_figures_its_gate_decided_on(shipped: tuple[Path, list]) -> None:
    import onnx

    from spinescan.edge.predictor import OnnxModel, model_paths

    out, seen = shipped
    entry = json.loads((out / "manifest.json").read_text())["models"]["cobb"]
    result = LandmarkInt8Result.from_dict(entry["int8"])  # typed, versioned
    assert result.shipped and result.n_test == entry["counts"]["test"] > 0
    assert set(result.angles) == set(AP_ANGLES) and result.float_tail == "logits"
    assert 0.0 <= result.label_agreement <= 1.0 and result.landmark_shift_mean is not None
    assert result.size_int8 < result.size_fp32 and result.latency_ms_int8 > 0
    # the gate saw exactly the recorded figures
    (n, label, shift, angles), = seen  # fmt: skip
    assert (n, label, shift, angles) == (result.n_test, result.label_agreement,
                                         result.landmark_shift_mean, result.angles)  # fmt: skip
    assert result.shipped == landmark_gate(n, label, shift, angles, min_label_agreement=0.0,
                                           max_angle_diff=1e9, min_measured_agreement=0.0,
                                           max_shift=1e9)[0]  # fmt: skip
    # the soft-argmax tail is float in the shipped file: the logits convolution's weight is not
    # dequantized, the Softmax reads float values computed in float
    model = onnx.load(str(out / "cobb.int8.onnx"))
    producer = {o: n for n in model.graph.node for o in n.output}
    node = producer[next(n for n in model.graph.node if n.op_type == "Softmax").input[0]]
    while node.op_type in quantize.LAYOUT_OPS:
        node = producer[node.input[0]]
    assert node.op_type == "Conv" and node.name in result.float_nodes
    assert node.input[1] not in producer or producer[node.input[1]].op_type != "DequantizeLinear"
    assert any(n.op_type == "DequantizeLinear" for n in model.graph.node)  # the rest is int8
    # shipped, verified, and picked by the predictor when int8 is asked for
    assert model_paths(out, int8=True) == [(out / "current").resolve() / "cobb.int8.onnx"]
    assert "soft-argmax tail" in OnnxModel(out / "cobb.int8.onnx").info.metadata["quantization"]
    from test_export import _assert_one_document

    _assert_one_document((out / "current").resolve(), entry)  # the AP angles with their thresholds
    assert [t.limit for t in OnnxModel(out / "cobb.onnx").info.document.measurements[0].thresholds] == [10.0]
    card = (out / "cobb.md").read_text()
    assert "int8 (static QDQ, per-channel; stem, heatmap logits and soft-argmax in float): shipped" in card
    assert "derived label agreement" in card and "cobb_pt_deg" in card


def test_predictor_and_predict_py_read_the_int8_landmark_model(
    shipped: tuple[Path, list], phantom_dir: Path
) -> None:
    """--int8 runs the int8 file and gives the same JSON fields as fp32 (through the package's
    predictor and through the standalone predict.py the export writes)."""
    out, _ = shipped
    film = str(sorted((phantom_dir / "ap").rglob("*.png"))[0])

    def run(*cmd: str) -> dict:
        proc = subprocess.run([sys.executable, *cmd, film, "--models", str(out), "--json"],
                              capture_output=True, text=True, check=True)  # fmt: skip
        (result,) = json.loads(proc.stdout)
        return result

    fp32 = run("-m", "spinescan.edge.predictor")
    for int8 in (run("-m", "spinescan.edge.predictor", "--int8"), run(str(out / "predict.py"), "--int8")):
        assert set(int8) == set(fp32) and int8["model"] == "cobb" and int8["task"] == "landmarks"
        assert set(int8["measurements"]) == set(fp32["measurements"]) == set(AP_ANGLES)
        assert len(int8["landmarks"]) == len(fp32["landmarks"]) == 70


def test_int8_refused_by_the_gate_is_not_shipped(
    shipped: tuple[Path, list], cobb_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A label-agreement limit no model can meet: refused with the measured figure as the reason,
    no int8 file (neither the new one nor the one an earlier export shipped), the card says why."""
    import shutil

    from spinescan.edge.predictor import model_paths
    from spinescan.export.exporter import export_runs

    out = tmp_path / "exported"
    shutil.copytree(shipped[0], out)  # an earlier export that shipped int8
    assert (out / "cobb.int8.onnx").is_file()
    monkeypatch.setattr(landmark_int8, "MIN_LABEL_AGREEMENT", 1.01)
    export_runs([cobb_run], out, quantize="int8").raise_for_failures()
    entry = json.loads((out / "manifest.json").read_text())["models"]["cobb"]
    result = LandmarkInt8Result.from_dict(entry["int8"])
    assert not result.shipped
    assert result.reason.startswith(f"derived-label agreement with fp32 {result.label_agreement:.1%} < 101%")
    assert not (out / "cobb.int8.onnx").exists()
    assert model_paths(out, int8=True) == [(out / "current").resolve() / "cobb.onnx"]
    card = (out / "cobb.md").read_text()
    assert "soft-argmax in float): not shipped" in card and "No int8 version is shipped" in card
