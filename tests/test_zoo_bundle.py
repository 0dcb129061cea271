"""Issue #22: the bundled model set (which set the predictor uses, refusal of a changed file, the
copy into the package), weak marks in the predictor's output, the human table, the recorded parity
sample, `spinescan models` with bundled weights, TensorFlow's logs, the landmark training log."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from test_predictor import toy_model, write_manifest

from spinescan.edge import model_files, predictor
from spinescan.edge.manifest import sha256_file
from spinescan.edge.model_files import choose_models_dir
from spinescan.edge.onnxmodel import OnnxModel
from spinescan.edge.parity_sample import check_parity_sample, record_parity_sample
from spinescan.errors import SpineScanError

WEAK_REASON = "WEAK MODEL: toy (a): test accuracy 0.333 (95% CI 0.200-0.467, n=30); chance 0.333"


def _mark_weak(path: Path, reason: str = WEAK_REASON) -> None:
    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = "weak", reason
    onnx.save(model, str(path))


@pytest.fixture
def film(tmp_path: Path) -> Path:
    path = tmp_path / "film.png"
    cv2.imwrite(str(path), (np.random.default_rng(0).random((80, 40)) * 255).astype(np.uint8))
    return path


@pytest.fixture
def bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bundled set (one toy model, its manifest) in place of the package's, and a working folder
    without ./exported/."""
    folder = tmp_path / "pretrained"
    folder.mkdir()
    toy_model(folder / "toy.onnx")
    write_manifest(folder, "toy.onnx")
    monkeypatch.setattr(model_files, "BUNDLED_DIR", folder)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return folder


def test_predictor_falls_back_to_the_bundled_set_and_says_which_set_ran(
    bundled: Path, film: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert predictor.main(["--json", str(film)]) == 0
    out = capsys.readouterr()
    assert [r["model"] for r in json.loads(out.out)] == ["toy"]
    assert f"models: bundled set ({bundled})" in out.err

    Path("exported").mkdir()  # a clone's exported/ holds only its README: still the bundled set
    Path("exported/README.md").write_text("generated files\n")
    assert choose_models_dir().label == "bundled set"

    toy_model(Path("exported/other.onnx"), name="other", classes=("low", "high"))
    write_manifest(Path("exported"), "other.onnx")
    assert predictor.main(["--json", str(film)]) == 0  # what the user exported wins
    out = capsys.readouterr()
    assert [r["model"] for r in json.loads(out.out)] == ["other"] and "models: ./exported" in out.err

    assert predictor.main(["--json", "--models", str(bundled), str(film)]) == 0  # and --models wins
    out = capsys.readouterr()
    assert [r["model"] for r in json.loads(out.out)] == ["toy"] and f"models: --models {bundled}" in out.err

    # The Python API takes the same fallback: no ./exported model named toy, the bundled one is used.
    shutil.rmtree("exported")
    assert predictor.predict_image(film, model="toy")["model"] == "toy"


def test_a_changed_bundled_file_is_refused_with_one_line(
    bundled: Path, film: Path, capsys: pytest.CaptureFixture
) -> None:
    data = bytearray((bundled / "toy.onnx").read_bytes())
    data[-1] ^= 0xFF
    (bundled / "toy.onnx").write_bytes(bytes(data))
    assert predictor.main([str(film)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match the manifest" in err[0] and "Traceback" not in err[0]


def test_weak_models_are_marked_in_every_result_and_in_the_table(
    tmp_path: Path, film: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "exported"
    folder.mkdir()
    _mark_weak(toy_model(folder / "toy.onnx"))
    toy_model(folder / "other.onnx", name="other", classes=("low", "high"))
    write_manifest(folder, "toy.onnx", "other.onnx")
    assert OnnxModel(folder / "toy.onnx").info.weak == WEAK_REASON
    assert predictor.main(["--json", "--models", str(folder), str(film)]) == 0
    results = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    assert results["toy"]["weak"] == WEAK_REASON and "weak" not in results["other"]
    assert predictor.main(["--models", str(folder), str(film)]) == 0
    table = capsys.readouterr().out
    assert "toy WEAK" in table and f"WEAK toy: {WEAK_REASON}" in table
    assert "other WEAK" not in table


def test_table_names_columns_by_task_gives_every_reason_and_aligns_long_paths() -> None:
    long = "/data/" + "deep/" * 15 + "film.png"
    results = [
        {"image": "a.png", "model": "generalist", "label": "healthy",
         "probabilities": {"healthy": 0.9, "x": 0.1}},
        {
            "image": long,
            "model": "sagittal",
            "task": "landmarks",
            "label": None,
            "label_reason": "lordosis_deg is not measurable",
            "measurements": {"kyphosis_deg": 41.25, "lordosis_deg": None},
            "reasons": {"lordosis_deg": "L5 is outside the film"},
        },
        {"image": "b.png", "model": "sagittal", "task": "landmarks", "label": "healthy",
         "measurements": {"kyphosis_deg": 35.0, "lordosis_deg": 50.0}, "reasons": {}},
        {"image": "bad.png", "error": "bad.png: not an image"},
    ]  # fmt: skip
    table = predictor.format_table(results)
    blocks = table.split("\n\n")
    assert blocks[0].splitlines()[0].split()[-1] == "probabilities"
    head = blocks[1].splitlines()[0]
    assert "angles (deg)" in head and "why missing" in head and "probabilities" not in head
    rows = blocks[1].splitlines()
    assert "lordosis_deg: L5 is outside the film" in rows[1]
    assert "label: lordosis_deg is not measurable" in rows[1]
    assert "kyphosis_deg 41.2" in rows[1] and "lordosis_deg -" in rows[1]
    # Long paths are not cut and every column starts at the same place in every row.
    assert long in rows[1]
    assert len({row.index("sagittal") for row in rows[1:]}) == 1
    assert head.index("model") == rows[1].index("sagittal")
    assert blocks[0].splitlines()[1].index("generalist") == head.index("model")
    assert "ERROR" in blocks[2]


def test_recorded_parity_sample_catches_a_file_that_computes_something_else(tmp_path: Path) -> None:
    model = OnnxModel(toy_model(tmp_path / "toy.onnx"), verify=False)
    sample = record_parity_sample(model)
    assert sample["seed"] == 0 and check_parity_sample(model, sample) <= 1e-6
    changed = dict(sample, output=[p + 0.01 for p in sample["output"]])
    with pytest.raises(SpineScanError, match="parity sample"):
        check_parity_sample(model, changed)


def _export_folder(tmp_path: Path, weak: str | None = None) -> Path:
    """An export as `spinescan export` lays it out: through current -> .v-x, with a card."""
    version = tmp_path / "exported" / ".v-1"
    version.mkdir(parents=True)
    toy_model(version / "toy.onnx")
    (version / "toy.md").write_text("# Model card: toy\n")
    model = OnnxModel(version / "toy.onnx", verify=False)
    entry = {
        "model": "toy",
        "file": "toy.onnx",
        "sha256": sha256_file(version / "toy.onnx"),
        "card": "toy.md",
        "task": "classification",
        "metrics": {"test": {"n": 40, "accuracy": 0.95}, "test_ci": {"accuracy": [0.875, 1.0]}},
        "parity_sample": {"toy.onnx": record_parity_sample(model)},
        "weak": weak,
    }
    (version / "manifest.json").write_text(json.dumps({"format": 1, "models": {"toy": entry}}))
    for name in ("current", "manifest.json", "toy.onnx", "toy.md"):
        target = ".v-1" if name == "current" else f"current/{name}"
        (tmp_path / "exported" / name).symlink_to(target)
    return tmp_path / "exported"


def test_bundle_copies_an_export_as_plain_checked_files_and_merges_the_manifest(tmp_path: Path) -> None:
    from spinescan.export.bundle import bundle_models, main

    exported = _export_folder(tmp_path)
    dest = tmp_path / "pretrained"
    dest.mkdir()
    kept = {"file": "kept.onnx", "sha256": "0" * 64}
    (dest / "manifest.json").write_text(json.dumps({"format": 1, "models": {"kept": kept}}))
    manifest = bundle_models(exported, ["toy"], dest)
    assert set(manifest["models"]) == {"kept", "toy"}  # rebuilding one model keeps the others
    assert manifest["models"]["toy"]["recipe"] == "scripts/build_models.sh toy"
    assert not (dest / "toy.onnx").is_symlink() and (dest / "toy.md").is_file()
    OnnxModel(dest / "toy.onnx")  # verified against the bundled manifest

    with pytest.raises(SpineScanError, match="no model 'nope'"):
        bundle_models(exported, ["nope"], dest)
    assert main([str(exported), "nope", "--dest", str(dest)]) == 2
    (exported / ".v-1" / "toy.onnx").write_bytes(b"changed")
    with pytest.raises(SpineScanError, match="sha256"):
        bundle_models(exported, ["toy"], dest)


def test_bundle_refuses_a_set_over_the_size_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spinescan.export import bundle

    monkeypatch.setattr(bundle, "MAX_BUNDLE_BYTES", 100)
    with pytest.raises(SpineScanError, match="budget"):
        bundle.bundle_models(_export_folder(tmp_path), ["toy"], tmp_path / "pretrained")


def test_models_command_shows_bundled_weights_and_their_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from spinescan.cli import build_cli
    from spinescan.cli import models as models_cli
    from spinescan.export.bundle import bundle_models

    dest = tmp_path / "pretrained"
    manifest = bundle_models(_export_folder(tmp_path, weak=WEAK_REASON), ["toy"], dest)
    manifest["models"]["generalist"] = {**manifest["models"].pop("toy"), "model": "generalist"}
    (dest / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(models_cli, "BUNDLED_DIR", dest)
    out = CliRunner().invoke(build_cli(), ["models"]).output
    line = next(row for row in out.splitlines() if row.startswith("generalist"))
    assert "bundled: test accuracy 0.950 [0.875, 1.000] (n=40), fp32 WEAK" in line
    assert "no bundled weights" in next(row for row in out.splitlines() if row.startswith("kyphosis"))
    listed = json.loads(CliRunner().invoke(build_cli(), ["models", "--json"]).output)
    assert {m["name"]: m["bundled"] is not None for m in listed}["generalist"]


def test_tensorflow_logs_are_quiet_unless_verbose(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from spinescan.cli import NOISY_LOGGERS, build_cli

    levels = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    try:
        monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
        assert CliRunner().invoke(build_cli(), ["plugins"]).exit_code == 0
        import os

        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
        assert logging.getLogger("tensorflow").getEffectiveLevel() == logging.ERROR
        monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
        assert CliRunner().invoke(build_cli(), ["--verbose", "plugins"]).exit_code == 0
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def test_landmark_training_log_says_pck() -> None:
    from spinescan.training.callbacks import LOG_NAMES, epoch_line

    logs = {"loss": 0.5, "accuracy": 0.41, "val_loss": 0.6, "val_accuracy": 0.39, "learning_rate": 1e-3}
    line = epoch_line(3, 24, logs, 12.3, LOG_NAMES["landmarks"])
    assert line == "Epoch 3/24 - 12s - loss: 0.5000 - pck: 0.4100 - val_loss: 0.6000 - val_pck: 0.3900"
    assert "accuracy" not in line and "classification" not in LOG_NAMES
