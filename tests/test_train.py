"""Backbones, the shared training loop, run directories and the documented data errors."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from click.testing import CliRunner

from spinescan.cli import build_cli
from spinescan.errors import DataError, SpineScanError
from spinescan.progress import Plain
from spinescan.training import inference, runs
from spinescan.training.loop import TrainConfig, train
from spinescan.training.prepare import find_reusable_run
from spinescan.training.runs import RunDir
from spinescan.training.settings import RunSettings
from spinescan.zoo.backbones import BACKBONES, build_classifier, transfer_weights
from spinescan.zoo.registry import get_spec

LATERAL = ("healthy", "kyphosis", "lordosis")
EPOCHS = "20"


def _copy_subset(src: Path, dst: Path, per_class: int, classes=LATERAL, view: str = "lateral") -> Path:
    """A small ``DIR/<view>/<class>/*`` copy of the phantom set (tests may then damage it)."""
    for label in classes:
        files = sorted((src / view / label).iterdir())[:per_class]
        (dst / view / label).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(f, dst / view / label / f.name)
    return dst


# -- backbones ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_backbone_builds_and_runs_forward(name: str) -> None:
    spec = get_spec("generalist").with_image_size(32)
    model = build_classifier(spec, backbone=name)
    assert model.inputs[0].name == "image"
    assert model.output_names == ["probabilities"]
    assert tuple(model.input_shape) == (None, 32, 32, 1)  # grey input even for RGB backbones
    x = np.random.default_rng(0).random((2, 32, 32, 1)).astype(np.float32)
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (2, 3)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    bns = [layer for layer in _all_layers(model) if type(layer).__name__ == "BatchNormalization"]
    assert bns and all(abs(layer.momentum - 0.9) < 1e-9 for layer in bns)


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined or non-square")
def test_imagenet_weights_fail_offline_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: [Errno -3] no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", offline)
    spec = get_spec("generalist").with_image_size(32)
    with pytest.raises(SpineScanError, match="imagenet weights for MobileNetV3Small"):
        build_classifier(spec, backbone="mobilenetv3small", weights="imagenet")
    with pytest.raises(SpineScanError, match="no imagenet weights"):
        build_classifier(spec, backbone="compact", weights="imagenet")
    with pytest.raises(SpineScanError, match="unknown backbone"):
        build_classifier(spec, backbone="vgg99")


def test_compact_backbone_follows_width_depth_and_dropout() -> None:
    """The defaults build today's network (blocks of 32, 64, 96, 128 filters, dropout 0.2);
    width/depth/dropout scale it (the tuning knobs)."""
    from spinescan.zoo.hparams import HParams

    spec = get_spec("generalist").with_image_size(32)

    def filters(model) -> list[int]:
        return [
            layer.filters for layer in model.layers if layer.name.startswith("block") and "conv" in layer.name
        ]

    default = build_classifier(spec)
    assert filters(default) == [32, 64, 96, 96, 128, 128]
    assert default.get_layer("dropout").rate == pytest.approx(0.2)
    small = build_classifier(spec, hparams=HParams(width=8, depth=3, dropout=0.5))
    assert filters(small) == [8, 16, 24, 24]
    assert small.get_layer("dropout").rate == pytest.approx(0.5)
    assert small.count_params() < default.count_params()


def test_init_from_copies_matching_layers_and_skips_a_different_head() -> None:
    source = build_classifier(get_spec("generalist").with_image_size(32))  # 3 classes
    target = build_classifier(get_spec("lordosis").with_image_size(32))  # 2 classes
    copied, skipped = transfer_weights(source, target)
    assert skipped == 1  # the logits layer
    assert copied == len([w for w in source.layers if w.weights]) - 1
    for name in ("stem_conv", "block4b_bn"):
        for a, b in zip(
            source.get_layer(name).get_weights(), target.get_layer(name).get_weights(), strict=True
        ):
            assert np.array_equal(a, b)


def test_model_file_is_replaced_atomically(tmp_path: Path) -> None:
    model = build_classifier(get_spec("generalist").with_image_size(32))
    target = inference.save_model(model, tmp_path)
    good = target.read_bytes()

    class Exploding:
        def save(self, path):
            Path(path).write_bytes(b"half a model")
            raise OSError("disk full")

    with pytest.raises(OSError):
        inference.save_model(Exploding(), tmp_path)
    assert target.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]  # no temp files left


# -- the documented data errors ----------------------------------------------------------------------


def test_missing_dataset_folder_says_how_to_create_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(build_cli(), ["train", "generalist", "--runs", str(tmp_path / "runs")])
    assert result.exit_code != 0
    assert isinstance(result.exception, DataError)
    assert "dataset/phantoms" in str(result.exception) and "spinescan synth" in str(result.exception)
    with pytest.raises(DataError, match="dataset folder not found"):
        train(TrainConfig("generalist", data=tmp_path / "nope", runs_dir=tmp_path / "runs", verbose=0))
    assert not (tmp_path / "runs").exists()


def test_missing_class_is_named(phantom_dir: Path, tmp_path: Path) -> None:
    data = _copy_subset(phantom_dir, tmp_path / "data", 6, classes=("healthy", "kyphosis"))
    with pytest.raises(DataError, match="'lordosis'"):
        train(TrainConfig("generalist", data=data, runs_dir=tmp_path / "runs", verbose=0))
    # A class whose every file is unreadable is just as unusable.
    (data / "lateral" / "lordosis").mkdir()
    (data / "lateral" / "lordosis" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match=r"lordosis.*unreadable"):
        train(TrainConfig("generalist", data=data, runs_dir=tmp_path / "runs", verbose=0))


def test_bad_files_are_skipped_and_misnamed_ones_read_by_content(
    phantom_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = _copy_subset(phantom_dir, tmp_path / "data", 8)
    healthy = data / "lateral" / "healthy"
    png = sorted(healthy.iterdir())[0]
    png.rename(healthy / "really_a_png.jpg")  # wrong extension: read by content, kept
    (healthy / "empty.png").write_bytes(b"")
    (healthy / "notes.png").write_text("this is not an image\n")
    truncated = sorted((data / "lateral" / "kyphosis").iterdir())[0].read_bytes()
    (data / "lateral" / "kyphosis" / "truncated.png").write_bytes(truncated[: len(truncated) // 2])
    config = TrainConfig(
        "generalist",
        data=data,
        hparams={"epochs": 0},
        settings=RunSettings(image_size=32),
        runs_dir=tmp_path / "runs",
        in_memory=False,  # also exercises the file-backed (memory-mapped) source
        progress=Plain(),
    )
    result = train(config)
    err = capsys.readouterr().err
    assert "Skipped 3 unreadable image(s)" in err
    config = json.loads((result.run_dir / "config.json").read_text())
    skipped = sorted(s["file"] for s in config["skipped"])
    assert skipped == [
        "lateral/healthy/empty.png",
        "lateral/healthy/notes.png",
        "lateral/kyphosis/truncated.png",
    ]
    split = json.loads((result.run_dir / "split.json").read_text())
    used = split["train"] + split["val"] + split["test"]
    assert "lateral/healthy/really_a_png.jpg" in used
    assert sum(result.metrics["counts"].values()) == 3 * 8  # the 24 readable films
    assert [p.name for p in result.run_dir.parent.iterdir()] == [result.run_dir.name]  # cache removed


# -- training on phantoms -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lateral_phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lateral phantoms only, more of them than the shared fixture has: the three lateral classes
    differ by curvature magnitude alone, and 40 films per class are too few to learn that in a
    CI-sized run (measured: validation stayed near chance), 120 per class are enough."""
    from spinescan.synth import generate

    out = tmp_path_factory.mktemp("lateral_phantoms")
    generate(out, per_class=120, seed=1, size=128, views=("lateral",), workers=2, progress=False)
    return out


@pytest.fixture(scope="module")
def trained(lateral_phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    """One CI-sized `spinescan train generalist` run on the phantoms, shared by the tests below."""
    runs_dir = tmp_path_factory.mktemp("runs")
    args = [
        "train",
        "generalist",
        "--data",
        str(lateral_phantoms),
        "--runs",
        str(runs_dir),
        "--image-size",
        "64",
        "--epochs",
        EPOCHS,
        "--batch-size",
        "16",
        "--seed",
        "0",
        "--checkpoint",
        "best",  # the rule these tests check: the best epoch after warm-up is the saved model
    ]
    result = CliRunner().invoke(build_cli(), args)
    assert result.exit_code == 0, result.output
    run_dir = runs.latest_run(runs_dir, "generalist")
    assert run_dir is not None
    return run_dir, json.loads((run_dir / "metrics.json").read_text()), result.output


@pytest.mark.slow
def test_train_generalist_learns_above_chance(trained) -> None:
    run_dir, metrics, output = trained
    val = metrics["val"]
    assert val["n"] >= 45
    assert val["accuracy"] >= 0.55, f"validation accuracy {val['accuracy']} (chance is 0.33)"
    assert metrics["test"]["n"] >= 45
    assert "validation accuracy" in output and str(run_dir) in output  # the summary


@pytest.mark.slow
def test_run_directory_is_complete(trained) -> None:
    run_dir, metrics, _ = trained
    names = {p.name for p in run_dir.iterdir()}
    assert set(RunDir.FILES) <= names
    assert not [n for n in names if n.startswith(".")]  # no backup or temp file left behind
    assert json.loads((run_dir / "config.json").read_text())["schema"] == "spinescan.run/1"
    config = RunDir(run_dir).read_config()
    assert config.hparams.epochs == int(EPOCHS) and config.hparams.backbone == "compact"
    assert config.spec["input_size"] == [64, 64, 1]
    assert {"python", "tensorflow", "keras", "spinescan"} <= set(config.versions)
    assert len(config.dataset.fingerprint) == 32 and config.dataset.synthetic
    for key in (
        "kept_epoch",
        "checkpoint",
        "epochs_run",
        "train_seconds",
        "target_accuracy",
        "epochs_to_target",
        "seconds_to_target",
        "params",
        "backbone",
        "classes",
    ):
        assert key in metrics
    assert metrics["finished"] is True and metrics["classes"] == list(LATERAL)
    history = RunDir(run_dir).read_history()
    assert [r["epoch"] for r in history] == list(range(1, metrics["epochs_run"] + 1))
    if metrics["epochs_to_target"] is not None:
        first = next(r["epoch"] for r in history if r["val_accuracy"] >= metrics["target_accuracy"])
        assert metrics["epochs_to_target"] == first
    with open(run_dir / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["split", "file", "label", "p_healthy", "p_kyphosis", "p_lordosis"]
    assert sum(r["split"] == "val" for r in rows) == metrics["val"]["n"]
    assert sum(r["split"] == "test" for r in rows) == metrics["test"]["n"]
    split = json.loads((run_dir / "split.json").read_text())
    assert {r["file"] for r in rows if r["split"] == "test"} == set(split["test"])
    preds = RunDir(run_dir).read_predictions()
    assert preds["val"][2].shape == (metrics["val"]["n"], 3)


@pytest.mark.slow
def test_validation_accuracy_matches_inference_mode(trained, lateral_phantoms: Path) -> None:
    """With --checkpoint best, the best validation accuracy recorded during training is what the
    saved model scores in inference mode on the validation images, read back from disk."""
    from spinescan.data.datasets import load_dataset

    run_dir, metrics, _ = trained
    run = runs.load_run(run_dir)
    model = inference.load_run_model(run_dir)
    dataset = load_dataset(lateral_phantoms)
    val = run.split.assign([s for s in dataset.samples if s.view == "lateral"])["val"]
    probs = inference.predict_probs(model, val, run.spec)
    labels = np.array([run.spec.classes.index(s.label) for s in val])
    accuracy = float((probs.argmax(axis=1) == labels).mean())
    history = RunDir(run_dir).read_history()
    warm_up = run.config.hparams.min_epochs
    best = max(r["val_accuracy"] for r in history if r["epoch"] > warm_up)  # warm-up epochs never win
    assert metrics["kept_epoch"] > warm_up
    assert history[metrics["kept_epoch"] - 1]["val_accuracy"] == best
    assert abs(accuracy - best) < 1e-6
    assert abs(accuracy - metrics["val"]["accuracy"]) < 1e-6


@pytest.mark.slow
def test_finished_runs_are_found_for_reuse(trained, lateral_phantoms: Path) -> None:
    run_dir, _, _ = trained
    runs_dir = run_dir.parent.parent
    hparams = {"epochs": int(EPOCHS), "batch_size": 16, "checkpoint": "best"}
    same = TrainConfig(
        "generalist",
        data=lateral_phantoms,
        runs_dir=runs_dir,
        settings=RunSettings(image_size=64),
        hparams=hparams,
    )
    assert find_reusable_run(same) == run_dir
    for other in (
        {"settings": RunSettings(image_size=64, seed=1)},
        {"hparams": {**hparams, "epochs": int(EPOCHS) + 1}},
        {"settings": RunSettings(image_size=48)},
        {"hparams": {**hparams, "backbone": "mobilenetv3small"}},
        {"hparams": {**hparams, "checkpoint": "last"}},
        {"hparams": {**hparams, "checkpoint": None}},  # the default (last) is another training protocol
        {"hparams": {**hparams, "width": 16}},  # every field declared match=True takes part
        {"hparams": {**hparams, "optimizer": "sgd"}},
    ):
        cfg = replace(same, **other)
        assert find_reusable_run(cfg) is None, other
    assert runs.list_runs(runs_dir) == [run_dir]
    assert runs.list_runs(runs_dir, finished=False) == []


# -- which epoch a run keeps ------------------------------------------------------------------------------


def _rows(val_accuracy: list[float], val_loss: list[float] | None = None) -> list[dict]:
    losses = val_loss or [1.0 - acc for acc in val_accuracy]
    return [
        {"epoch": i + 1, "val_accuracy": acc, "val_loss": loss, "seconds": 1.0}
        for i, (acc, loss) in enumerate(zip(val_accuracy, losses, strict=True))
    ]


@pytest.mark.parametrize(
    ("checkpoint", "min_epochs", "accuracies", "losses", "kept"),
    [
        # A lucky warm-up epoch (0.9 at epoch 2) is not kept: the best after warm-up is.
        ("best", 3, [0.5, 0.9, 0.6, 0.7, 0.8, 0.75], None, 5),
        ("best", 0, [0.5, 0.9, 0.6, 0.7, 0.8, 0.75], None, 2),
        # Training shorter than the warm-up keeps the latest epoch.
        ("best", 6, [0.5, 0.9, 0.6], None, 3),
        # Equal accuracy: the lower validation loss wins, not simply the first maximum.
        ("best", 1, [0.5, 0.8, 0.8, 0.8], [0.9, 0.4, 0.3, 0.35], 3),
        ("last", 3, [0.5, 0.9, 0.6, 0.7, 0.8, 0.75], None, 6),
    ],
)
def test_kept_epoch_follows_the_checkpoint_rule(checkpoint, min_epochs, accuracies, losses, kept) -> None:
    from spinescan.training.callbacks import restore_state, update_state
    from spinescan.zoo.hparams import HParams

    hp = HParams(checkpoint=checkpoint, min_epochs=min_epochs, target_accuracy=0.85)
    rows = _rows(accuracies, losses)
    live: dict = {}
    saved = [row["epoch"] for row in rows if update_state(live, row, hp, 0.0)]
    assert saved[-1] == kept and live["kept_epoch"] == kept
    assert live.get("epochs_to_target") == (2 if 0.9 in accuracies else None)
    # --resume rebuilds the same state from the history alone.
    restored = restore_state(rows, hp)
    assert restored["kept_epoch"] == kept and restored["epochs_done"] == len(rows)


def test_unknown_checkpoint_is_refused(lateral_phantoms: Path, tmp_path: Path) -> None:
    with pytest.raises(SpineScanError, match="unknown checkpoint 'middle'"):
        train(
            TrainConfig(
                "generalist", data=lateral_phantoms, runs_dir=tmp_path, hparams={"checkpoint": "middle"}
            )
        )


def test_checkpoint_last_keeps_the_final_epoch_and_runs_the_whole_schedule(
    phantom_dir: Path, tmp_path: Path
) -> None:
    """`--checkpoint last`: no early stopping, the saved model is the last epoch's, recorded."""
    data = _copy_subset(phantom_dir, tmp_path / "data", per_class=8)
    args = ["train", "generalist", "--data", str(data), "--runs", str(tmp_path / "runs"),
            "--image-size", "32", "--epochs", "4", "--patience", "1", "--min-epochs", "0",
            "--checkpoint", "last", "--quiet"]  # fmt: skip
    result = CliRunner().invoke(build_cli(), args)
    assert result.exit_code == 0, result.output
    run_dir = runs.latest_run(tmp_path / "runs", "generalist")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs_run"] == 4 and metrics["kept_epoch"] == 4  # patience 1 did not stop it
    assert RunDir(run_dir).read_config().hparams.checkpoint == "last"
    assert "kept the last epoch (4 of 4)" in result.output and "best" not in result.output
    history = RunDir(run_dir).read_history()
    assert metrics["val"]["accuracy"] == pytest.approx(history[-1]["val_accuracy"], abs=1e-6)
