"""``spinescan val``: exported models scored on labelled films, without TensorFlow.

The reproduction of the benchmark's figures by a trained and exported model is checked beside the
fixtures that train one: tests/test_export.py (a classifier) and tests/test_landmark_zoo.py (cobb).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from spinescan import metrics as m
from spinescan.cli import build_cli, main
from spinescan.edge import predictor
from spinescan.errors import DataError
from spinescan.evaluation.scoring import evaluate_parts
from spinescan.evaluation.val import ValConfig, validate
from spinescan.evaluation.val_outputs import write_outputs
from spinescan.export.onnx_convert import set_metadata
from spinescan.radiograph.preprocess import Preprocessing

CLASSES = ("dark", "mid", "bright")
LEVEL = {"dark": 40, "mid": 120, "bright": 210}


def subset_dataset(root: Path, files: list[str], dest: Path) -> Path:
    """A copy of ``files`` of the dataset at ``root`` (with their manifest rows) under ``dest``."""
    with open(root / "manifest.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns, rows = reader.fieldnames or [], {r["file"]: r for r in reader}
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for f in files:
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / f, dest / f)
            writer.writerow(rows[f])
    return dest


def _film(path: Path, level: int, rng: np.random.Generator, shape: tuple[int, int] = (120, 60)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.clip(level + rng.normal(0, 45, shape), 0, 255).astype(np.uint8))


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    from test_predictor import toy_model

    return toy_model(tmp_path / "toy.onnx")


@pytest.fixture
def films(tmp_path: Path) -> Path:
    """lateral/<class>/ films the toy model gets partly right, plus one film per way of failing."""
    rng = np.random.default_rng(0)
    root = tmp_path / "films"
    for c in CLASSES:
        for i in range(8):
            _film(root / "lateral" / c / f"{c}{i}.png", LEVEL[c], rng)
    (root / "lateral" / "mid" / "broken.png").write_bytes(b"\x89PNG not really")
    _film(root / "lateral" / "scoliosis" / "s.png", 100, rng)  # a label the model does not know
    _film(root / "ap" / "dark" / "a.png", 40, rng)  # another view than the model's
    return root


def test_classifier_figures_are_the_benchmarks_and_bad_films_are_summarised(toy: Path, films: Path) -> None:
    result = validate(ValConfig(toy, films, n_boot=200))
    fig = result.models["toy"]
    assert fig["n"] == 24
    skipped = result.skipped
    assert skipped["n_films"] == 27 and skipped["n_scored"] == 24
    assert skipped["unreadable"]["n"] == 1 and "broken.png" in skipped["unreadable"]["files"][0]
    assert skipped["unknown label"] == {"n": 1, "files": ["lateral/scoliosis/s.png (scoliosis)"]}
    assert skipped["other view"] == {"n": 1, "files": ["ap/dark/a.png (ap)"]}

    # The predictor's own probabilities, scored by the benchmark's evaluate_parts.
    good = sorted(p for p in films.glob("lateral/*/*.png") if p.parent.name in CLASSES)
    good = [p for p in good if p.name != "broken.png"]
    out = predictor.classify_files(good, [predictor.OnnxModel(toy)])
    y = np.array([CLASSES.index(p.parent.name) for p in good])
    probs = np.array([[r["probabilities"][c] for c in CLASSES] for r in out])
    bench = evaluate_parts([(y, probs)], CLASSES, n_boot=200, seed=0)
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "auc", "ece"):
        assert fig[key] == pytest.approx(bench[key], abs=1e-6), key
        if f"{key}_ci" in bench:
            assert fig[f"{key}_ci"] == pytest.approx(bench[f"{key}_ci"], abs=1e-6), key
    assert fig["confusion_matrix"] == bench["confusion_matrix"]
    assert fig["sensitivity"] == pytest.approx(bench["sensitivity"])
    assert fig["specificity"] == pytest.approx(bench["specificity"])
    lo, hi = fig["sensitivity_ci"]["dark"]
    assert lo <= fig["sensitivity"]["dark"] <= hi
    assert {r["file"] for r in result.rows} == {p.relative_to(films).as_posix() for p in good}


def test_single_run_cis_equal_the_loop_bootstrap() -> None:
    rng = np.random.default_rng(4)
    for k, n in ((3, 60), (2, 25)):
        y = rng.integers(0, k, n)
        p = rng.dirichlet(np.ones(k), n)
        p[:6] = p[6]  # ties in the scores
        loop = m.metric_cis([(y, p)], k, n_boot=150, seed=2)
        fast = m.single_run_cis(y, p, k, n_boot=150, seed=2)
        for name in m.CI_METRICS:
            assert fast[name] == pytest.approx(loop[name], abs=1e-12), name

        def sens(t: np.ndarray, q: np.ndarray, k: int = k) -> list[float]:
            s, _ = m.sensitivity_specificity(m.confusion_matrix(t, q.argmax(axis=1), k))
            return s.tolist()

        reps = m.bootstrap_stats(sens, [(y, p)], n_boot=150, seed=2, strata=[y])
        for c in range(k):
            assert fast["sensitivity"][c] == pytest.approx(m.percentile_ci(reps[:, c], 0.95), abs=1e-12)


def test_cli_json_out_and_no_tensorflow_or_matplotlib_without_plots(
    toy: Path, films: Path, tmp_path: Path
) -> None:
    script = (
        "import sys\nfrom spinescan.cli import main\n"
        f"try:\n    main(['val', {str(toy)!r}, {str(films)!r}, '--json', '-q', '--boot', '100'])\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print('LOADED', sorted(m for m in ('tensorflow', 'keras', 'matplotlib') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    text, loaded = proc.stdout.rsplit("LOADED", 1)
    assert loaded.strip() == "[]"
    doc = json.loads(text)
    assert doc["schema"] == "spinescan.val/1" and doc["models"]["toy"]["n"] == 24
    assert proc.stderr == ""  # -q

    out = tmp_path / "report"
    args = ["val", str(toy), str(films), "--out", str(out), "--boot", "100"]
    result = CliRunner().invoke(build_cli(), args)
    assert result.exit_code == 0, result.output
    assert "scored 24 of 27 films" in result.stdout and "skipped, unreadable: 1" in result.stdout
    assert {p.name for p in out.iterdir()} == {"val.json", "films.csv", "toy.calibration.png"}
    with open(out / "films.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 24 and set(rows[0]) >= {"model", "file", "label", "pred_label", "p_dark"}


def _toy_landmark_model(path: Path) -> Path:
    """A landmark 'model' that puts every film's 70 points at the same spots (AP, cobb angles)."""
    from spinescan.radiograph.angles import AP_ANGLES
    from spinescan.radiograph.landmark_codec import POINT_NAMES

    k = len(POINT_NAMES)
    points = np.zeros((1, k, 4), dtype=np.float32)
    points[0, :, 0] = np.tile([0.4, 0.6, 0.4, 0.6], k // 4 + 1)[:k]
    points[0, :, 1] = np.linspace(0.05, 0.95, k)
    points[0, :, 2] = 5.0
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["m4"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["m4", "shape"], ["m"]),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["z", "pts"], ["points"]),
    ]
    graph = helper.make_graph(
        nodes,
        "lm",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 32, 32, 1])],
        [helper.make_tensor_value_info("points", TensorProto.FLOAT, ["N", k, 4])],
        [
            numpy_helper.from_array(np.array([-1, 1, 1], dtype=np.int64), "shape"),
            numpy_helper.from_array(np.zeros((1, 1, 1), dtype=np.float32), "zero"),
            numpy_helper.from_array(points, "pts"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    set_metadata(
        model,
        {
            "model_name": "lm",
            "classes": ["healthy", "scoliosis"],
            "view": "ap",
            "input_size": [32, 32, 1],
            "preprocessing": Preprocessing().to_json(),
            "task": "landmarks",
            "landmarks": list(POINT_NAMES),
            "measurements": list(AP_ANGLES),
        },
    )
    onnx.save(model, str(path))
    return path


def test_landmark_model_needs_true_angles_and_scores_angle_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from spinescan.radiograph import measure
    from spinescan.radiograph.plausibility import Plausibility

    # the toy's fixed points are no anatomy: the implausibility flag (tests/test_plausibility.py)
    # would null every angle, and this test is about scoring the angles val is given
    monkeypatch.setattr(measure, "assess_landmarks", lambda *a, **k: Plausibility())
    lm = _toy_landmark_model(tmp_path / "lm.onnx")
    rng = np.random.default_rng(1)
    root = tmp_path / "ap"
    rows = []
    truth = [("healthy", 4.0), ("healthy", 6.0), ("scoliosis", 25.0), ("scoliosis", 40.0)]
    for i, (label, cobb) in enumerate(truth):
        _film(root / f"f{i}.png", 120, rng, (200, 120))
        rows.append(f"f{i}.png,{label},ap,{cobb}")
    (root / "labels.csv").write_text("file,label,view,cobb_deg\n" + "\n".join(rows) + "\n")
    (root / "bare.csv").write_text("file,label\n" + "".join(f"f{i}.png,healthy\n" for i in range(4)))

    with pytest.raises(SystemExit) as exit_info:
        main(["val", str(lm), str(root / "bare.csv")])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    message = [line for line in err.splitlines() if line]
    assert len(message) == 1 and "'landmarks' column" in message[0] and "cobb_deg" in message[0], err
    with pytest.raises(DataError):
        validate(ValConfig(lm, root / "bare.csv"))

    res = validate(ValConfig(lm, root / "labels.csv", n_boot=100))
    fig = res.models["lm"]
    assert fig["n"] == 4 and fig["angles"]["cobb_deg"]["n"] == 4
    pred = [float(r["cobb_deg_pred"]) for r in res.rows]
    true = [4.0, 6.0, 25.0, 40.0]
    mae = np.mean(np.abs(np.subtract(pred, true)))
    assert fig["angles"]["cobb_deg"]["mae"] == pytest.approx(mae, abs=1e-3)
    assert fig["landmark_error"] is None  # no true corners: no landmark error, angles still scored
    assert set(fig["threshold_sensitivity"]) == {"healthy", "scoliosis"}
    written = write_outputs(res, tmp_path / "out")
    assert {p.name for p in written} >= {"lm.bland_altman.png", "lm.scatter.png", "films.csv", "val.json"}


def test_val_costs_at_most_twice_the_predictor(toy: Path, tmp_path: Path) -> None:
    """At a small scale (40 films of 600 x 300): scoring adds the bootstrap (1000 replicates) to
    the predictor's work; it must stay within twice the predictor's time."""
    rng = np.random.default_rng(2)
    root = tmp_path / "many"
    for i in range(40):
        c = CLASSES[i % 3]
        _film(root / "lateral" / c / f"{i}.png", LEVEL[c], rng, (600, 300))
    paths = predictor.expand_inputs([str(root)])

    def best(f) -> float:
        times = []
        for _ in range(2):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return min(times)

    t_predict = best(lambda: predictor.classify_files(paths, [predictor.OnnxModel(toy)]))
    t_val = best(lambda: validate(ValConfig(toy, root)))
    assert t_val <= 2 * t_predict + 0.2, (t_val, t_predict)
