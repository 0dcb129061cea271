"""ONNX export: round trip through a run directory, parity, int8 gate, atomicity, every backbone.

A tiny compact CNN is trained for a few steps on the phantom fixture and saved as a run directory
with the run layout's own writers (much faster than the full trainer, which has its own tests).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spinescan.edge.predictor import OnnxModel, model_paths, sha256_file
from spinescan.errors import SpineScanError
from spinescan.export.quantize import gate
from spinescan.radiograph.imageio import read_image
from spinescan.radiograph.preprocess import preprocess

IMAGE_SIZE = 48


def _make_outputs_vary(model, x: np.ndarray, scale: float = 3.0) -> None:
    """Make a barely trained model's outputs differ from image to image, so parity means something.

    Fresh backbones lose the input signal (MobileNetV3Small's features are ~1e-10 at init) and a
    one-epoch model is near-constant. So: set every BatchNorm's moving statistics to those of
    ``x`` (momentum 0, one training-mode call), then point the head in random directions scaled
    per feature by its magnitude on ``x``, with centred logits. (Scaling by the spread alone makes
    huge weights on near-constant features, and then float32 rounding alone exceeds 1e-4.)
    """
    import keras

    from spinescan.zoo.backbones import _walk_layers

    norms = [layer for layer in _walk_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(x, training=True)
    for layer, momentum in zip(norms, saved, strict=True):
        layer.momentum = momentum
    head = model.get_layer("logits")
    features = keras.Model(model.input, head.input).predict(x, verbose=0)
    size = np.abs(features.mean(axis=0)) + features.std(axis=0) + 1e-6
    kernel, _ = head.get_weights()
    w = np.random.default_rng(0).normal(size=kernel.shape) / size[:, None] * scale / np.sqrt(kernel.shape[0])
    head.set_weights([w.astype("float32"), (-(features.mean(axis=0) @ w)).astype("float32")])


def _films(n: int, size: int) -> np.ndarray:
    """Smooth random images of different exposures: film-like inputs for the backbone tests."""
    import cv2

    rng = np.random.default_rng(1)
    x = (
        rng.random((n, size, size), dtype=np.float32)
        * np.linspace(0.2, 1.0, n, dtype=np.float32)[:, None, None]
    )
    return np.stack([cv2.GaussianBlur(image, (0, 0), 2) for image in x])[..., None]


def _train_run(phantom_dir: Path, runs_dir: Path) -> Path:
    """Fit a compact CNN briefly on the phantoms' training split and write a finished run.

    One epoch cannot teach it much, hence :func:`_make_outputs_vary`.
    """
    import keras

    from spinescan.data.datasets import load_dataset
    from spinescan.data.splits import make_split
    from spinescan.training import inference
    from spinescan.training.runs import RunDir
    from spinescan.zoo.backbones import build_classifier
    from spinescan.zoo.registry import get_spec

    keras.utils.set_random_seed(0)
    spec = get_spec("generalist").with_image_size(IMAGE_SIZE)
    dataset = load_dataset(phantom_dir, default_view=spec.view).select(view=spec.view, classes=spec.classes)
    split = make_split(dataset.samples, seed=0)
    parts = split.assign(dataset.samples)
    index = {c: i for i, c in enumerate(spec.classes)}

    def arrays(part: str) -> tuple[np.ndarray, np.ndarray]:
        samples = parts[part]
        x = np.stack([preprocess(read_image(s.path), spec.input_size, spec.preprocessing) for s in samples])
        return x, np.array([index[s.label] for s in samples])

    model = build_classifier(spec, "compact")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    x_train, y_train = arrays("train")
    model.fit(x_train, y_train, epochs=1, batch_size=16, verbose=0)
    _make_outputs_vary(model, x_train)

    run_dir = runs_dir / spec.name / "20250101-000000-s0"
    run_dir.mkdir(parents=True)
    model.save(run_dir / RunDir.MODEL)
    split.save(run_dir / RunDir.SPLIT)
    config = {  # the first, schema-less config.json: such runs still export
        "run_id": run_dir.name,
        "arguments": {"model": spec.name, "backbone": "compact", "seed": 0, "image_size": IMAGE_SIZE},
        "spec": spec.summary(),
        "dataset": {"root": str(phantom_dir)},
    }
    RunDir(run_dir).write_json(RunDir.CONFIG, config)
    results, predictions = {}, {}
    for part in ("val", "test"):
        x, y = arrays(part)
        probs = inference.predict_arrays(model, x)
        results[part] = inference.summarize_predictions(y, probs, spec.classes)
        predictions[part] = ([s.rel for s in parts[part]], [s.label for s in parts[part]], probs)
    RunDir(run_dir).write_predictions(spec.classes, predictions)
    metrics = {
        "finished": True,
        "run_id": run_dir.name,
        "backbone": "compact",
        "classes": list(spec.classes),
        "counts": {p: len(v) for p, v in parts.items()},
        **results,
    }
    RunDir(run_dir).write_json(RunDir.METRICS, metrics)
    return run_dir


@pytest.fixture(scope="module")
def exported(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run exported once through the CLI, with int8."""
    from spinescan.cli import main

    out = tmp_path_factory.mktemp("exported")
    # --allow-weak: a one-epoch model is at chance; these tests are about the conversion.
    args = ["export", "--onnx", "--run", str(trained_run), "--out", str(out), "--quantize", "int8"]
    main([*args, "--allow-weak"])
    return out


def _keras_probs(run_dir: Path, paths: list[Path]) -> np.ndarray:
    from spinescan.training import inference, runs

    run = runs.load_run(run_dir)
    model = inference.load_run_model(run_dir)
    spec = run.spec
    x = np.stack([preprocess(read_image(p), spec.input_size, spec.preprocessing) for p in paths])
    return inference.predict_arrays(model, x)


def _predict_cli(models: Path, paths: list[Path]) -> list[dict]:
    exe = Path(sys.executable).with_name("spinescan-predict")
    proc = subprocess.run(
        [str(exe), "--json", "--models", str(models), *map(str, paths)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _assert_same_as_keras(results: list[dict], keras_probs: np.ndarray, classes: list[str]) -> None:
    assert len(results) == len(keras_probs)
    for r, p in zip(results, keras_probs, strict=True):
        np.testing.assert_allclose(list(r["probabilities"].values()), p, atol=1e-4)
        top2 = np.sort(p)[-2:]
        if top2[1] - top2[0] > 1e-4:  # a tie within tolerance may go either way
            assert r["label"] == classes[int(np.argmax(p))]


@pytest.mark.slow
def test_round_trip_synthetic_images(exported: Path, trained_run: Path, phantom_dir: Path) -> None:
    manifest = json.loads((exported / "manifest.json").read_text())
    entry = manifest["models"]["generalist"]
    assert entry["sha256"] == sha256_file(exported / "generalist.onnx")
    assert entry["parity"]["passed"] and entry["parity"]["split"] == "val"
    assert entry["parity"]["max_abs_diff"] <= 1e-4 and entry["parity"]["images"] > 0
    assert entry["metrics"]["test"]["n"] == entry["counts"]["test"]

    meta = OnnxModel(exported / "generalist.onnx").info
    assert meta.classes == ("healthy", "kyphosis", "lordosis")
    assert meta.input_size == (IMAGE_SIZE, IMAGE_SIZE, 1)
    assert meta.metadata["run_id"] == trained_run.name
    assert meta.metadata["source_sha256"] == sha256_file(trained_run / "model.keras")
    assert {"view", "opset", "export_date", "spinescan_version", "metrics", "preprocessing"} <= set(
        meta.metadata
    )

    val = json.loads((trained_run / "split.json").read_text())["val"]
    paths = [phantom_dir / rel for rel in val]
    keras_probs = _keras_probs(trained_run, paths)
    results = _predict_cli(exported, paths)
    _assert_same_as_keras(results, keras_probs, list(meta.classes))
    assert len({r["label"] for r in results}) > 1, "the tiny model should not be constant"


@pytest.mark.slow
def test_round_trip_real_films(exported: Path, trained_run: Path, real_dir: Path) -> None:
    """Real JPEGs (3-channel grey) and the real RGBA lateral PNG: the predictor matches Keras."""
    ap = real_dir / "fraiwan-kauh-dev"
    paths = sorted((ap / "healthy").iterdir())[:3] + sorted((ap / "scoliosis").iterdir())[:3]
    paths.append(real_dir / "lateral-sample" / "lateral_001.png")
    keras_probs = _keras_probs(trained_run, paths)
    _assert_same_as_keras(_predict_cli(exported, paths), keras_probs, ["healthy", "kyphosis", "lordosis"])


@pytest.mark.slow
def test_allow_weak_marks_the_model_and_a_parity_sample_is_recorded(
    exported: Path, trained_run: Path, phantom_dir: Path
) -> None:
    """Issue #22: a model exported with --allow-weak carries the gate's verdict in the manifest, the
    card, the file's metadata and every predictor result; each shipped file has a parity sample."""
    from spinescan.edge.manifest import manifest_files
    from spinescan.edge.parity_sample import check_parity_sample
    from spinescan.export.selection import assess

    entry = json.loads((exported / "manifest.json").read_text())["models"]["generalist"]
    verdict = assess(trained_run)
    assert bool(entry["weak"]) == verdict.weak
    for fname in manifest_files(entry):
        check_parity_sample(OnnxModel(exported / fname), entry["parity_sample"][fname])
    if verdict.weak:
        assert entry["weak"] == verdict.verdict()
        assert "WEAK MODEL: exported with `--allow-weak`" in (exported / "generalist.md").read_text()
        assert OnnxModel(exported / "generalist.onnx").info.weak == verdict.verdict()
        film = sorted(phantom_dir.rglob("*.png"))[0]
        assert all(r["weak"] == verdict.verdict() for r in _predict_cli(exported, [film]))


def _assert_one_document(exported: Path, entry: dict) -> None:
    """The model document is embedded once in each shipped file and copied verbatim into the
    manifest entry; it is the run's spec's document (issue 23 #2)."""
    from spinescan.edge.modeldoc import METADATA_KEY, document_for
    from spinescan.training.runs import load_run

    spec = load_run(Path(entry["run_dir"])).spec
    int8 = entry.get("int8") or {}
    for name in (entry["file"], *([int8["file"]] if int8.get("shipped") else [])):
        model = OnnxModel(exported / name)
        raw = model.info.metadata[METADATA_KEY]
        assert json.dumps(entry["document"], sort_keys=True, separators=(",", ":")) == raw
        assert model.info.document == document_for(spec)
        assert model.info.measurements == tuple(spec.measurements)


@pytest.mark.slow
def test_export_writes_card_int8_and_standalone(exported: Path) -> None:
    entry = json.loads((exported / "manifest.json").read_text())["models"]["generalist"]
    int8 = entry["int8"]
    assert int8["n_test"] > 0 and int8["size_int8"] < int8["size_fp32"]
    assert int8["shipped"] == (int8["agreement"] >= 0.99 and int8["accuracy_drop"] <= 0.01)
    assert (exported / "generalist.int8.onnx").is_file() == int8["shipped"]
    if int8["shipped"]:  # the predictor accepts it (sha checked against the manifest)
        quantized = OnnxModel(exported / "generalist.int8.onnx")
        assert quantized.info.classes == ("healthy", "kyphosis", "lordosis")
        assert "int8" in quantized.info.metadata["quantization"]
        assert model_paths(exported, int8=True) == [exported / "generalist.int8.onnx"]
    _assert_one_document(exported, entry)
    card = (exported / "generalist.md").read_text()
    assert (
        "synthetic phantoms" in card
        and "Lateral models are trained and tested on synthetic phantoms only" in card
    )
    assert "## Intended use" in card and "## Limitations" in card
    assert os.access(exported / "predict.py", os.X_OK)
    assert oct((exported / "manifest.json").stat().st_mode & 0o777) == "0o644"


def test_card_quotes_the_benchmark_that_chose_the_run(trained_run: Path, tmp_path: Path) -> None:
    """A run chosen by `spinescan bench` exports with the benchmark's cross-run figures and probes."""
    from spinescan.cli import main
    from spinescan.evaluation.leaderboard import Leaderboard, evidence_for

    run = tmp_path / "runs" / "generalist" / trained_run.name
    shutil.copytree(trained_run, run)
    figures = {"n_runs": 15, "n_test_total": 273, "accuracy": 0.9123, "accuracy_sd": 0.05,
               "accuracy_worst": 0.8, "accuracy_ci": [0.88, 0.94], "auc": 0.97}  # fmt: skip
    leaderboard = {
        "dataset": {"root": "films", "synthetic": False},
        "protocol": {"seeds": [0, 1, 2], "folds": 5, "resize": "spine_crop", "by": "framing"},
        "models": [{"key": "generalist", "name": "generalist", **figures,
                    "subgroups": {"spine_crop": {**figures, "accuracy": 0.8765}}}],
        "probes": [{"probe": "geometry", "task": "generalist", **figures, "accuracy": 0.6543},
                   {"probe": "geometry", "task": "kyphosis", **figures, "accuracy": 0.1111}],
    }  # fmt: skip
    board = Leaderboard.from_dict(leaderboard)
    evidence = evidence_for(board, board.models[0], tmp_path / "leaderboard.json")
    (run / "benchmark.json").write_text(json.dumps(evidence))
    out = tmp_path / "exported"
    main(["export", "--onnx", "--run", str(run), "--out", str(out), "--allow-weak"])
    card = (out / "generalist.md").read_text()
    assert "## Benchmark" in card and "5-fold x 3-seed cross-validation" in card
    assert "0.912 ± 0.050 (worst 0.800) [0.880, 0.940]" in card
    assert "| this model (CNN) | framing = spine_crop | 273 | 0.876" in card
    assert "shortcut probe: geometry | all films | 273 | 0.654" in card
    assert "0.111" not in card  # another task's probe is not quoted
    entry = json.loads((out / "manifest.json").read_text())["models"]["generalist"]
    assert entry["benchmark"]["figures"]["accuracy"] == 0.9123


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.slow
def test_failed_parity_leaves_previous_files_untouched(
    exported: Path, trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onnx import numpy_helper

    from spinescan.export import onnx_convert
    from spinescan.export.exporter import ExportError, export_runs

    out = tmp_path / "exported"
    shutil.copytree(exported, out)
    before = _snapshot(out)
    real = onnx_convert.keras_to_onnx

    def broken(model, opset=onnx_convert.DEFAULT_OPSET):  # a converter bug: a bias slightly off
        conversion = real(model, opset)
        for init in conversion.proto.graph.initializer:
            value = numpy_helper.to_array(init)
            if value.ndim == 1 and value.shape[0] == 3:
                init.CopyFrom(numpy_helper.from_array(value + np.array([0.5, 0, 0], value.dtype), init.name))
        return conversion

    monkeypatch.setattr(onnx_convert, "keras_to_onnx", broken)
    report = export_runs([trained_run], out)
    assert list(report.failed) == [str(trained_run)]
    assert "differs from Keras" in report.failed[str(trained_run)]
    with pytest.raises(ExportError, match="previous files kept"):
        report.raise_for_failures()
    assert _snapshot(out) == before
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]


@pytest.mark.slow
def test_int8_that_misses_the_gate_is_not_shipped(
    exported: Path, trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spinescan.export import quantize
    from spinescan.export.exporter import export_runs

    out = tmp_path / "exported"
    shutil.copytree(exported, out)
    # an earlier export that shipped an int8 file (whether the fixture's one-epoch model passed the
    # int8 gate is chance: 94% agreement on 18 films fails it), so the folder holds a stale int8 file
    stale = b"an int8 file from an earlier export"
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["models"]["generalist"]["int8"] = {
        "file": "generalist.int8.onnx", "shipped": True, "sha256": hashlib.sha256(stale).hexdigest()
    }
    (out / "manifest.json").unlink()
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "generalist.int8.onnx").write_bytes(stale)
    monkeypatch.setattr(quantize, "gate", lambda *a, **k: (False, "agreement 90.0% < 99% (forced)"))
    report = export_runs([trained_run], out, quantize="int8")
    assert not report.failed
    entry = json.loads((out / "manifest.json").read_text())["models"]["generalist"]
    assert entry["int8"]["shipped"] is False and "forced" in entry["int8"]["reason"]
    assert not (out / "generalist.int8.onnx").exists()  # neither the new nor the stale one
    assert model_paths(out, int8=True) == [(out / "current").resolve() / "generalist.onnx"]  # one version
    assert "No int8 version is shipped" in (out / "generalist.md").read_text()


def test_int8_gate_thresholds() -> None:
    assert gate(0.99, 0.01, 200)[0]
    assert gate(1.0, -0.02, 200)[0]  # int8 more accurate is fine
    assert not gate(0.985, 0.0, 200)[0]
    assert not gate(1.0, 0.011, 200)[0]
    ok, reason = gate(None, None, 0)
    assert not ok and "no labelled test images" in reason


def test_int8_file_figures_are_shared_by_both_gates(tmp_path: Path) -> None:
    """Sizes, batch-1 latency and the size ratio: one helper for the classifier and landmark gates
    (latency ``None`` when there is nothing to time it on, as both gates recorded it before)."""
    from test_predictor import toy_model

    from spinescan.export.quantize import _session, file_figures, size_ratio

    fp32, int8 = toy_model(tmp_path / "a.onnx"), toy_model(tmp_path / "b.onnx", classes=("x", "y"))
    session = _session(fp32)
    for sample in (None, np.zeros((0, 32, 24, 1), np.float32)):
        figures = file_figures(fp32, int8, session, session, sample)
        assert figures == {
            "size_fp32": fp32.stat().st_size,
            "size_int8": int8.stat().st_size,
            "latency_ms_fp32": None,
            "latency_ms_int8": None,
        }
    timed = file_figures(fp32, int8, session, session, np.zeros((3, 32, 24, 1), np.float32))
    assert timed["latency_ms_fp32"] > 0 and timed["latency_ms_int8"] > 0
    assert size_ratio(400, 100) == 4.0 and size_ratio(1, 0) is None


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["compact", "mobilenetv3small", "efficientnetb0", "resnet50_frozen"])
def test_every_backbone_exports_with_parity(backbone: str) -> None:
    # 64 px: at 32 px the deep backbones end on 1x1 feature maps and BatchNorm statistics of a
    # few images are degenerate. Conversion time hardly depends on the input size.
    import keras
    import onnxruntime as ort

    from spinescan.export.onnx_convert import keras_to_onnx
    from spinescan.export.parity import parity_check
    from spinescan.zoo.backbones import build_classifier
    from spinescan.zoo.registry import get_spec

    spec = get_spec("generalist").with_image_size(64)
    keras.utils.set_random_seed(0)  # an unseeded init made EfficientNet's parity vary run to run
    model = build_classifier(spec, backbone)
    x = _films(8, 64)
    _make_outputs_vary(model, x)
    keras_probs = model.predict(x, verbose=0)
    assert len(set(keras_probs.argmax(axis=1))) > 1, "outputs must vary for parity to mean anything"

    conversion = keras_to_onnx(model)
    graph = conversion.proto.graph
    assert [i.name for i in graph.input] == ["image"]  # EfficientNet's leaked inputs are folded
    # Heads with global average pooling + dense also output their class activation maps.
    expected = ["probabilities"] if backbone == "resnet50_frozen" else ["probabilities", "cam"]
    assert [o.name for o in graph.output] == expected
    assert graph.input[0].type.tensor_type.shape.dim[0].WhichOneof("value") != "dim_value"  # dynamic batch
    session = ort.InferenceSession(conversion.proto.SerializeToString(), providers=["CPUExecutionProvider"])
    onnx_probs = session.run(None, {"image": x})[0]
    # A randomly initialised EfficientNet pushed to varied outputs is numerically touchy: on this
    # project's AMD EPYC machine its probabilities differ by 1.9e-4 (deterministically, on main too);
    # the export gate itself stays at 1e-4 for every model a user trains.
    tolerance = 5e-4 if backbone == "efficientnetb0" else 1e-4
    result = parity_check(keras_probs, onnx_probs, tolerance=tolerance)
    assert result["passed"], result
    single = session.run(None, {"image": x[:1]})[0]
    np.testing.assert_allclose(single, onnx_probs[:1], atol=1e-5)


@pytest.mark.slow
def test_random_augmentation_layers_are_refused() -> None:
    import keras

    from spinescan.export.onnx_convert import ExportError, keras_to_onnx

    inputs = keras.Input((16, 16, 1), name="image")
    x = keras.layers.RandomFlip("horizontal")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    with pytest.raises(ExportError, match="random augmentation layers \\(RandomFlip\\)"):
        keras_to_onnx(model)


def _fake_run(runs_dir: Path, model: str, run_id: str, finished: bool = True) -> Path:
    run = runs_dir / model / run_id
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"run_id": run_id, "spec": {"name": model}}))
    (run / "metrics.json").write_text(json.dumps({"finished": finished}))
    return run


def test_resolve_runs_winners_names_and_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spinescan.export.run_dirs import resolve_runs

    runs_dir = tmp_path / "runs"
    old = _fake_run(runs_dir, "generalist", "20250101-000000-s0")
    new = _fake_run(runs_dir, "generalist", "20250102-000000-s0")
    _fake_run(runs_dir, "generalist", "20250103-000000-s0", finished=False)
    kyph = _fake_run(runs_dir, "kyphosis", "20250101-000000-s0")

    assert resolve_runs(["generalist"], runs_dir=runs_dir) == [new]
    with pytest.raises(SpineScanError, match="no finished run of 'lordosis'"):
        resolve_runs(["lordosis"], runs_dir=runs_dir)
    with pytest.raises(SpineScanError, match="spinescan bench"):
        resolve_runs(runs_dir=runs_dir)
    # winners.json as the benchmark writes it: paths relative to where it ran.
    (runs_dir / "winners.json").write_text(
        json.dumps({"generalist": "runs/generalist/20250101-000000-s0", "kyphosis": str(kyph)})
    )
    monkeypatch.chdir(tmp_path / "runs")  # the recorded relative path no longer resolves as is
    assert resolve_runs(runs_dir=runs_dir) == [old, kyph]
    assert resolve_runs(run=old) == [old]
    with pytest.raises(SpineScanError, match="not both"):
        resolve_runs(["generalist"], run=old)


def test_val_reproduces_the_benchmark_figures_on_the_runs_test_films(
    trained_run: Path, exported: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    """`spinescan val` (onnxruntime) on the run's test films gives the figures the benchmark
    computes from the run's own (Keras) test predictions with evaluate_parts."""
    import csv

    from test_val import subset_dataset

    from spinescan.evaluation.scoring import evaluate_parts
    from spinescan.evaluation.val import ValConfig, validate

    with open(trained_run / "predictions.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    classes = json.loads((trained_run / "metrics.json").read_text())["classes"]
    y = np.array([classes.index(r["label"]) for r in rows])
    probs = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    bench = evaluate_parts([(y, probs)], classes, n_boot=300, seed=0)
    films = subset_dataset(phantom_dir, [r["file"] for r in rows], tmp_path / "test-films")
    fig = validate(ValConfig(exported / "generalist.onnx", films, n_boot=300)).models["generalist"]
    assert fig["n"] == len(rows) > 0
    assert fig["confusion_matrix"] == bench["confusion_matrix"]
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "auc"):
        assert fig[key] == pytest.approx(bench[key], abs=1e-3), key
        assert fig[f"{key}_ci"] == pytest.approx(bench[f"{key}_ci"], abs=1e-3), key
    assert fig["ece"] == pytest.approx(bench["ece"], abs=1e-3)
