"""Landmark models in the zoo (issue 14): spec task validation, training through the shared loop,
export with parity, the predictor's measurements/landmarks/label fields and overlays.

One tiny ``cobb`` run (64 x 64 input, 1 epoch on the session's phantoms) serves every test here;
the numbers it gives are meaningless, the fields and their consistency are what is checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from spinescan.errors import SpecError, SpineScanError
from spinescan.radiograph.angles import AP_ANGLES, LATERAL_ANGLES
from spinescan.radiograph.landmark_codec import POINT_NAMES
from spinescan.zoo.spec import ModelSpec, landmark_builder


def _spec(**changes):
    base = dict(
        name="lm", description="d", view="ap", classes=("healthy", "scoliosis"), build=landmark_builder,
        task="landmarks", landmarks=POINT_NAMES, measurements=AP_ANGLES,
    )  # fmt: skip
    return ModelSpec(**{**base, **changes})


def test_spec_task_validation() -> None:
    assert _spec().task == "landmarks"
    with pytest.raises(SpecError, match="task must be one of"):
        _spec(task="segmentation")
    with pytest.raises(SpecError, match="unknown: thoracic_kyphosis_deg"):
        _spec(measurements=("thoracic_kyphosis_deg",))
    with pytest.raises(SpecError, match="classes follow from its angles"):
        _spec(view="lateral", measurements=LATERAL_ANGLES, classes=("healthy", "kyphosis"))
    with pytest.raises(SpecError, match="needs unique landmark names"):
        _spec(landmarks=())
    with pytest.raises(SpecError, match="declares no landmarks"):
        _spec(task="classification")
    summary = _spec().summary()
    assert summary["task"] == "landmarks" and summary["measurements"] == list(AP_ANGLES)


def test_builtin_landmark_plugins_are_registered() -> None:
    from spinescan.zoo.registry import get_spec

    cobb, sagittal = get_spec("cobb"), get_spec("sagittal")
    assert (cobb.task, cobb.view, cobb.measurements) == ("landmarks", "ap", AP_ANGLES)
    assert (sagittal.view, sagittal.measurements) == ("lateral", LATERAL_ANGLES)
    assert "S1-L" in sagittal.landmarks
    assert get_spec("scoliosis").task == "classification"


def test_landmark_options_refused_before_tensorflow(phantom_dir: Path, tmp_path: Path) -> None:
    from spinescan.training.config import TrainConfig, resolve_request

    with pytest.raises(SpineScanError, match="--backbone and --weights do not apply"):
        resolve_request(TrainConfig(model="cobb", data=phantom_dir, hparams={"backbone": "efficientnetb0"}))


def test_landmark_augmentation_moves_films_and_targets_together() -> None:
    """--augment with geometric_augment (cobb's default): the task's pipeline moves each film and its
    targets as one (tests/test_landmark_augment.py checks the geometry itself); without it only the
    exposure changes and nothing moves."""
    pytest.importorskip("tensorflow")
    from spinescan.training.tasks import LandmarkTask
    from spinescan.zoo.hparams import HParams
    from spinescan.zoo.registry import get_spec

    spec = get_spec("cobb")
    h, w, _ = spec.input_size
    rng = np.random.default_rng(0)
    x = np.full((8, h, w, 1), 0.2, np.float32)
    y = np.zeros((8, len(spec.landmarks), 3), np.float32)
    y[:, :, :2] = rng.uniform(0.3, 0.7, (8, len(spec.landmarks), 2))
    y[:, :, 2] = 1.0

    def batches(augment: bool, geometric: bool = True) -> tuple[np.ndarray, np.ndarray]:
        hp = HParams(augment=augment, geometric_augment=geometric)
        xb, yb = next(iter(LandmarkTask().dataset(x, y, spec, hp, 8, True, 3)))
        return xb.numpy(), yb.numpy()

    plain_x, plain_y = batches(False)
    exposure_x, exposure_y = batches(True, geometric=False)  # sagittal's default: nothing moves
    np.testing.assert_array_equal(exposure_y, plain_y)
    assert np.abs(exposure_x - plain_x).mean() > 1e-3
    aug_x, aug_y = batches(True)
    assert np.abs(aug_x - plain_x).mean() > 1e-3  # the exposure (and the fill) changed
    moved = np.abs(aug_y[..., :2] - plain_y[..., :2]).max(axis=(1, 2))
    assert (moved > 1e-3).all()  # every film was moved: its targets went with it
    # a similarity keeps the point cloud's shape: pairwise distances scale by one factor per film
    # (a mirrored film's points are re-ordered, left and right corners swapped: compare both ways)
    from spinescan.radiograph.landmark_codec import mirror_order

    def spread(a: np.ndarray, p: np.ndarray) -> float:
        d_aug = np.linalg.norm((a[:, None, :2] - a[None, :, :2]) * [w, h], axis=-1)
        d_plain = np.linalg.norm((p[:, None, :2] - p[None, :, :2]) * [w, h], axis=-1)
        ratio = d_aug[d_plain > 5] / d_plain[d_plain > 5]
        return float(ratio.std() / ratio.mean())

    order = mirror_order(spec.landmarks)
    for a, p in zip(aug_y, plain_y, strict=True):
        assert (a[:, 2] == 1).all()  # the points stay on the film: nothing clipped
        assert min(spread(a, p), spread(a, p[order])) < 0.02


def test_training_writes_a_landmark_run(cobb_run: Path, phantom_dir: Path) -> None:
    from spinescan.training.runs import RunDir

    metrics = json.loads((cobb_run / "metrics.json").read_text())
    assert metrics["task"] == "landmarks" and metrics["finished"]
    test = metrics["test"]
    assert test["n"] == metrics["counts"]["test"] > 0
    assert 0 < test["landmark_error"] < 1
    assert set(test["angles"]) == set(AP_ANGLES)
    # the field's figures: SMAPE over the AASCE challenge's three angles, corners off, 10-deg screen
    assert test["smape_angles"] == ["aasce_a1_deg", "aasce_a2_deg", "aasce_a3_deg"]
    assert {"corners_far", "largest_cobb_mae", "sensitivity", "specificity", "smape_films"} <= set(test)
    history = RunDir(cobb_run).read_history()
    assert len(history) == 1 and 0.0 <= history[0]["val_accuracy"] <= 1.0  # PCK
    rows = (cobb_run / "predictions.csv").read_text().splitlines()
    assert rows[0].startswith("split,file,label,pred_label,cobb_deg")
    assert len(rows) - 1 == metrics["counts"]["val"] + metrics["counts"]["test"]
    # the shared split: the test films are the ones the AP classifier is tested on
    from spinescan.data.splits import Split

    split = Split.load(cobb_run / "split.json")
    assert split is not None


@pytest.fixture(scope="module")
def exported_cobb(cobb_int8_export: tuple[Path, list]) -> Path:
    """The session's cobb run exported with int8 (tests/conftest.py). The gate's limits are opened
    there, so int8 ships; every reader here takes cobb.onnx (int8 is opt-in), and the gate's own
    decisions are tests/test_landmark_export.py's."""
    return cobb_int8_export[0]


def test_export_metadata_parity_and_int8_gate(exported_cobb: Path) -> None:
    from spinescan.edge.predictor import OnnxModel

    model = OnnxModel(exported_cobb / "cobb.onnx")
    assert model.info.task == "landmarks"
    assert model.info.measurements == AP_ANGLES and len(model.info.landmarks) == 70
    manifest = json.loads((exported_cobb / "manifest.json").read_text())
    entry = manifest["models"]["cobb"]
    assert entry["parity"]["passed"] and entry["parity"]["unit"] == "input pixels"
    int8 = entry["int8"]  # the gate's figures: tests/test_landmark_export.py
    assert int8["kind"] == "landmarks" and (exported_cobb / "cobb.int8.onnx").is_file() == int8["shipped"]


def test_export_command_gates_a_landmark_run_by_its_derived_label(cobb_run: Path, tmp_path: Path) -> None:
    """`spinescan export --onnx --run <landmark run>` scores the label the angles imply (it used to
    read the run's predictions as class probabilities and crash)."""
    pytest.importorskip("tf2onnx")
    import csv

    from spinescan.cli import main
    from spinescan.export.selection import assess

    with open(cobb_run / "predictions.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    verdict = assess(cobb_run)
    assert verdict.n == len(rows) > 0
    assert verdict.accuracy == pytest.approx(np.mean([r["pred_label"] == r["label"] for r in rows]))
    out = tmp_path / "exported"
    main(["export", "--onnx", "--run", str(cobb_run), "--out", str(out), "--allow-weak"])
    assert (out / "cobb.onnx").is_file()


def test_rescore_reads_a_finished_run_again_with_todays_code(cobb_run: Path, tmp_path: Path) -> None:
    """rescore() re-derives the run's figures and predictions from its kept model and split."""
    import shutil

    from spinescan.errors import SpineScanError
    from spinescan.training.finish import rescore

    run = tmp_path / "copy"
    shutil.copytree(cobb_run, run)
    before = json.loads((run / "metrics.json").read_text())
    stale = {**before, "test": {**before["test"], "angle_mae": {"cobb_deg": 99.0}}}
    (run / "metrics.json").write_text(json.dumps(stale))
    (run / "predictions.csv").write_text("split,file\n")
    after = rescore(run)
    assert after["test"] == before["test"] and after["val"] == before["val"]
    assert "rescored" in json.loads((run / "metrics.json").read_text())
    assert (run / "predictions.csv").read_text() == (cobb_run / "predictions.csv").read_text()
    (run / "metrics.json").unlink()
    with pytest.raises(SpineScanError, match="not a finished run"):
        rescore(run)


def _check_entry(entry: dict, image_hw: tuple[int, int]) -> None:
    assert entry["task"] == "landmarks"
    assert set(entry["measurements"]) == set(AP_ANGLES)
    for name, value in entry["measurements"].items():
        assert (value is None) == (name in entry["reasons"])  # null always comes with a reason
    assert len(entry["landmarks"]) == 70
    for point in entry["landmarks"]:
        if point is not None:  # film pixels (decoded through the placement), not input pixels
            assert -0.5 * image_hw[1] <= point[0] <= 1.5 * image_hw[1]
            assert -0.5 * image_hw[0] <= point[1] <= 1.5 * image_hw[0]
    if entry["label"] is not None:
        from spinescan.radiograph.thresholds import ap_label

        assert entry["label"] == ap_label(entry["measurements"]["cobb_deg"])
    else:
        assert entry["label_reason"]


def test_predictor_json_fields_and_overlay(exported_cobb: Path, phantom_dir: Path, tmp_path: Path) -> None:
    from spinescan.edge.predictor import main, predict_image
    from spinescan.radiograph.imageio import read_image

    films = sorted((phantom_dir / "ap").rglob("*.png"))[:2]
    entry = predict_image(films[0], model=str(exported_cobb / "cobb.onnx"))
    _check_entry(entry, read_image(films[0]).shape[:2])
    overlays = tmp_path / "ov"
    out = subprocess.run(
        [sys.executable, "-m", "spinescan.edge.predictor", *map(str, films), "--models", str(exported_cobb),
         "--json", "--overlay", str(overlays)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    results = json.loads(out.stdout)
    assert len(results) == 2
    for r, film in zip(results, films, strict=True):
        _check_entry(r, read_image(film).shape[:2])
        assert Path(r["overlay"]).is_file() and Path(r["overlay"]).parent == overlays
    assert main([str(films[0]), "--models", str(exported_cobb)]) == 0  # the table prints measurements


def test_missing_vertebrae_are_null_with_a_reason(
    exported_cobb: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    """A film cut to its lower part has no T1-T5. Read through the predictor's read-out with the
    manifest's own points (a perfect model), PT Cobb is null with a reason naming the missing
    vertebrae, and the trained model's entry for the cut film keeps the null-with-reason rule."""
    import csv

    import cv2

    from spinescan.edge.predictor import load_model, predict_image
    from spinescan.radiograph.landmark_codec import encode
    from spinescan.radiograph.measure import read_landmarks

    with open(phantom_dir / "manifest.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["view"] == "ap")
    img = cv2.imread(str(phantom_dir / row["file"]), cv2.IMREAD_UNCHANGED)
    keep = img.shape[0] * 3 // 5  # about T10-L5 of a phantom
    cut = tmp_path / "lumbar_only.png"
    cv2.imwrite(str(cut), img[-keep:])
    model = load_model(exported_cobb / "cobb.onnx")
    _x, (placement, hw) = model.prepare(cv2.imread(str(cut), cv2.IMREAD_UNCHANGED))
    truth = np.array(json.loads(row["landmarks"])) - [0, img.shape[0] - keep]  # into the cut's pixels
    t = encode(truth, None, placement, model.info.input_size[:2])
    perfect = np.concatenate([t.coords, np.where(t.visible, 10.0, -10.0)[:, None]], axis=1)
    reading = read_landmarks(perfect, placement, "ap", model.info.input_size[:2], hw)
    pt = reading["angles"]["cobb_pt_deg"]
    assert pt.value is None and "T1" in pt.reason and "not visible" in pt.reason, pt
    assert reading["angles"]["cobb_tl_deg"].value is not None  # the lumbar curve is in the film
    entry = predict_image(cut, model=str(exported_cobb / "cobb.onnx"))
    _check_entry(entry, hw)


def test_standalone_predict_py_reads_landmark_models(exported_cobb: Path, phantom_dir: Path) -> None:
    film = sorted((phantom_dir / "ap").rglob("*.png"))[0]
    out = subprocess.run(
        [sys.executable, str(exported_cobb / "predict.py"), str(film), "--json"],
        capture_output=True, text=True, check=True, cwd=exported_cobb,
    )  # fmt: skip
    (entry,) = json.loads(out.stdout)
    assert entry["model"] == "cobb" and set(entry["measurements"]) == set(AP_ANGLES)


def test_measure_reads_a_perfect_output_as_the_manifest(phantom_dir: Path) -> None:
    """The read-out (radiograph.measure) inverts the training targets: truth in, manifest angles out."""
    import csv

    from spinescan.radiograph.imageio import read_image
    from spinescan.radiograph.landmark_codec import encode
    from spinescan.radiograph.measure import read_landmarks
    from spinescan.radiograph.preprocess import Preprocessing, preprocess_placed

    with open(phantom_dir / "manifest.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["view"] == "lateral")
    img = read_image(phantom_dir / row["file"])
    size, prep = (256, 96, 1), Preprocessing(resize="spine_band", crop_aspect=96 / 256)
    _, placement = preprocess_placed(img, size, prep)
    t = encode(
        np.array(json.loads(row["landmarks"])), np.array(json.loads(row["sacrum"])), placement, size[:2]
    )
    logits = np.where(t.visible, 10.0, -10.0)
    out = np.concatenate([t.coords, logits[:, None]], axis=1)
    r = read_landmarks(out, placement, "lateral", size[:2], img.shape[:2])
    assert r["angles"]["thoracic_kyphosis_deg"].value == pytest.approx(
        float(row["thoracic_kyphosis_deg"]), abs=0.5
    )
    assert r["angles"]["lumbar_lordosis_deg"].value == pytest.approx(
        float(row["lumbar_lordosis_deg"]), abs=0.5
    )


def test_landmark_models_pretrain_from_a_run_and_the_classifier_bench_refuses_them(
    cobb_run: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    """--pretrain works for landmark models (issue 21): the fine-tune starts from the run's weights
    and records where it started; the classifier benchmark still sends them to landmark_bench."""
    from spinescan.evaluation.jobs import resolve_specs
    from spinescan.training.config import TrainConfig
    from spinescan.training.pretrain import pretrain_and_finetune
    from spinescan.training.settings import RunSettings

    config = TrainConfig(
        model="cobb",
        data=phantom_dir,
        runs_dir=tmp_path,
        settings=RunSettings(image_size=64, seed=1),
        hparams={"epochs": 1},
    )
    result = pretrain_and_finetune(config, cobb_run)
    assert result.metrics["pretrain"]["run_dir"] == cobb_run.resolve().as_posix()
    assert json.loads((result.run_dir / "config.json").read_text())["init_from"] == str(cobb_run.resolve())
    with pytest.raises(SpineScanError, match=r"benchmarks/landmark_bench\.py"):
        resolve_specs(["scoliosis", "cobb"], None)
    assert all(s.task == "classification" for s in resolve_specs([], None))


def test_landmark_comparison_is_paired_per_film() -> None:
    """compare_with_classifier pairs the two models film by film (McNemar's discordant counts)."""
    from spinescan.evaluation.landmark_study import compare_with_classifier

    files = ["a", "b", "c", "d"]
    labels = ["healthy", "scoliosis", "scoliosis", "healthy"]
    lm = {f: {"pred_label": p} for f, p in zip(files, ["healthy", "healthy", "scoliosis", ""], strict=True)}
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.8, 0.2], [0.6, 0.4]])
    out = compare_with_classifier([lm], [(files, labels, probs)], ("healthy", "scoliosis"), n_boot=50)
    # landmark right on a, c (d unlabelled counts wrong); classifier right on a, b, d
    assert out["landmark_accuracy"] == 0.5 and out["classifier_accuracy"] == 0.75
    assert out["mcnemar"]["only_landmark_correct"] == 1 and out["mcnemar"]["only_classifier_correct"] == 2


def test_stall_check_runs_once_after_its_steps_and_only_with_room_to_restart() -> None:
    from spinescan.training.callbacks import stall_check_epoch
    from spinescan.zoo.hparams import HParams
    from spinescan.zoo.spec import LANDMARK_TRAIN

    on = HParams(epochs=24, restart_below=0.25, restart_check_steps=400)
    assert stall_check_epoch(on, 87) == 5  # cobb on 1,400 films: 435 steps at the end of epoch 5
    assert stall_check_epoch(on, 131) == 4  # sagittal on 2,100 films
    assert stall_check_epoch(on, 400) == 1
    assert stall_check_epoch(on, 10) is None  # epoch 40 of 24: never
    assert stall_check_epoch(replace(on, epochs=9), 87) is None  # 5 of 9 leaves too little after it
    assert stall_check_epoch(replace(on, restart_below=0.0), 87) is None  # off
    assert stall_check_epoch(replace(on, max_restarts=0), 87) is None
    assert stall_check_epoch(HParams(), 87) is None  # classifiers: off by default
    assert LANDMARK_TRAIN.restart_below > 0 and stall_check_epoch(LANDMARK_TRAIN, 87) == 5


def test_a_stalled_start_is_restarted_from_a_new_initialisation(phantom_dir: Path, tmp_path: Path) -> None:
    """A check nothing can pass (PCK below 1.0 after one step) with one restart allowed: the first
    attempt stops at the check, is recorded and forgotten, and the second runs the whole schedule."""
    pytest.importorskip("tensorflow")
    from spinescan.progress import Quiet
    from spinescan.training.loop import TrainConfig, attempt_seed, train
    from spinescan.training.runs import RunDir
    from spinescan.training.settings import RunSettings

    messages: list[str] = []

    class Recorder(Quiet):
        def info(self, message: str) -> None:
            messages.append(message)

    hp = {"epochs": 2, "restart_below": 1.0, "restart_check_steps": 1, "max_restarts": 1}
    result = train(
        TrainConfig(
            model="cobb",
            data=phantom_dir,
            runs_dir=tmp_path,
            settings=RunSettings(image_size=64),
            hparams=hp,
            progress=Recorder(),
        )
    )
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["finished"]
    [restart] = metrics["restarts"]
    assert restart["epoch"] == 1 and restart["steps"] >= 1 and 0.0 <= restart["val_accuracy"] < 1.0
    history = RunDir(result.run_dir).read_history()
    assert [row["epoch"] for row in history] == [1, 2]  # the kept attempt only, whole schedule
    assert metrics["train_seconds"] >= restart["seconds"] + sum(r["seconds"] for r in history) - 0.01
    stalled = [m for m in messages if m.startswith("Stalled start")]
    assert len(stalled) == 1 and "Restart 1 of at most 1" in stalled[0]
    assert not (result.run_dir / RunDir.STATE).exists()  # the run finished cleanly
    assert attempt_seed(7, 0) == 7 and attempt_seed(7, 1) != 7


def test_resume_after_a_restart_keeps_the_restart_and_its_time() -> None:
    from spinescan.training.callbacks import restore_state
    from spinescan.zoo.hparams import HParams

    rows = [{"epoch": 1, "val_accuracy": 0.4, "val_loss": 1.0, "seconds": 10.0}]
    restarts = [{"epoch": 5, "steps": 435, "val_accuracy": 0.1, "seconds": 80.0}]
    state = restore_state(rows, HParams(), restarts)
    assert state["restarts"] == restarts and state["train_seconds"] == 90.0
    assert "restarts" not in restore_state(rows, HParams())


def test_a_landmark_model_trains_under_a_mirrored_strategy(phantom_dir: Path, tmp_path: Path) -> None:
    """tf.distribute's MirroredStrategy (one CPU replica here): the landmark loss and metric run
    in a replica context and the run is complete."""
    pytest.importorskip("tensorflow")
    from spinescan.training.loop import TrainConfig, train
    from spinescan.training.settings import RunSettings

    result = train(
        TrainConfig(
            model="cobb", data=phantom_dir, runs_dir=tmp_path, hparams={"epochs": 1},
            settings=RunSettings(image_size=64, strategy="mirrored"),
        )
    )  # fmt: skip
    config = json.loads((result.run_dir / "config.json").read_text())
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert config["strategy"]["name"] == "mirrored" and config["strategy"]["replicas"] >= 1
    assert metrics["finished"] and 0 < metrics["test"]["landmark_error"] < 1


def test_val_reproduces_the_runs_landmark_figures(cobb_run: Path, exported_cobb: Path, phantom_dir: Path,
                                                  tmp_path: Path) -> None:  # fmt: skip
    """`spinescan val` (onnxruntime) on the run's test films gives the landmark figures training
    wrote to metrics.json (what the benchmark reads): landmark error, angle MAE and bias, SMAPE,
    and the accuracy of the angle-implied label."""
    import csv

    from test_val import subset_dataset

    from spinescan.evaluation.val import ValConfig, validate

    with open(cobb_run / "predictions.csv", newline="") as fh:
        files = [r["file"] for r in csv.DictReader(fh) if r["split"] == "test"]
    want = json.loads((cobb_run / "metrics.json").read_text())["test"]
    films = subset_dataset(phantom_dir, files, tmp_path / "test-films")
    result = validate(ValConfig(exported_cobb / "cobb.onnx", films, n_boot=100))
    fig = result.models["cobb"]
    assert fig["n"] == want["n"] == len(files)
    assert fig["landmark_error"] == pytest.approx(want["landmark_error"], rel=1e-2, abs=1e-4)
    for angle, a in want["angles"].items():
        got = fig["angles"][angle]
        assert got["n"] == a["n"] and got["not_measured"] == a["not_measured"], angle
        if a["mae"] is not None:
            assert got["mae"] == pytest.approx(a["mae"], abs=0.05), angle
            assert got["bias"] == pytest.approx(a["bias"], abs=0.05), angle
    if want["smape"] is not None:
        assert fig["smape"] == pytest.approx(want["smape"], abs=0.1)
    assert fig["label_accuracy"] == pytest.approx(want["label_accuracy"], abs=1.0 / len(files) + 1e-9)
