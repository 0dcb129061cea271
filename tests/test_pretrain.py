"""Phantom pretraining then fine-tuning on real films (issue 7), end to end at toy sizes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.real]


@pytest.fixture(scope="module")
def few_films(real_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight films per class (both framings of scoliosis), linked - never copied - into a temp set."""
    source = real_dir / "fraiwan-kauh-dev"
    with open(source / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    chosen = (
        [r for r in rows if r["label"] == "healthy"][:8]
        + [r for r in rows if r["label"] == "scoliosis" and r["framing"] == "spine_crop"][:4]
        + [r for r in rows if r["label"] == "scoliosis" and r["framing"] == "fullframe"][:4]
    )
    out = tmp_path_factory.mktemp("few_films")
    for r in chosen:
        (out / r["file"]).parent.mkdir(parents=True, exist_ok=True)
        (out / r["file"]).symlink_to(source / r["file"])
    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "label", "view", "framing"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(chosen)
    return out


@pytest.fixture(scope="module")
def two_stage(few_films: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Pretrain on 24 tiny phantoms, then fine-tune with zero epochs: the saved model is then
    exactly the initialised one, which is how we see where fine-tuning starts."""
    from spinescan.training.config import TrainConfig
    from spinescan.training.pretrain import PhantomStage, pretrain_and_finetune
    from spinescan.training.settings import RunSettings

    tmp = tmp_path_factory.mktemp("pretrain")
    config = TrainConfig(
        model="scoliosis",
        data=few_films,
        hparams={"epochs": 0},
        settings=RunSettings(image_size=32, resize="spine_crop"),
        runs_dir=tmp / "runs",
    )
    phantoms = PhantomStage(per_class=12, epochs=1, phantoms_dir=tmp / "phantoms")
    first = pretrain_and_finetune(config, "phantoms", phantoms)
    synth_mtime = (tmp / "phantoms" / "provenance.json").stat().st_mtime_ns
    second = pretrain_and_finetune(config, "phantoms", phantoms)  # both stages' inputs exist now
    return {
        "tmp": tmp,
        "first": first,
        "second": second,
        "synth_mtime": synth_mtime,
        "phantoms": tmp / "phantoms",
    }


def _read(run_dir: Path, name: str) -> dict:
    return json.loads((Path(run_dir) / name).read_text())


def test_both_stages_are_recorded(two_stage: dict, few_films: Path) -> None:
    run_dir = two_stage["first"].run_dir
    config, metrics = _read(run_dir, "config.json"), _read(run_dir, "metrics.json")
    entry = config["pretrain"]
    assert metrics["pretrain"] == entry == two_stage["first"].metrics["pretrain"]
    pre_dir = Path(entry["run_dir"])
    assert pre_dir != Path(run_dir).resolve() and pre_dir.parent == Path(run_dir).resolve().parent
    assert config["init_from"] == pre_dir.as_posix()
    assert config["dataset"]["root"] == str(few_films.resolve()) and not config["dataset"]["synthetic"]

    pre_config, pre_metrics = _read(pre_dir, "config.json"), _read(pre_dir, "metrics.json")
    assert pre_metrics["finished"] and pre_config["init_from"] is None and pre_config["dataset"]["synthetic"]
    assert Path(entry["dataset"]) == two_stage["phantoms"].resolve() == Path(pre_config["dataset"]["root"])
    assert entry["synthetic"] is True and entry["view_images"] == 24
    assert entry["val_accuracy"] == pre_metrics["val"]["accuracy"]
    # The model card says where the weights started.
    from spinescan.export.modelcard import _pretrain_lines

    (line,) = _pretrain_lines(entry)
    assert "24 synthetic phantoms" in line and entry["run_id"] in line
    # The preprocessing choice travels with both stages (and so into the ONNX metadata).
    for doc in (config, pre_config):  # recorded once, in the spec summary
        assert doc["spec"]["preprocessing"]["resize"] == "spine_crop"
        assert "resize" not in json.dumps({k: v for k, v in doc.items() if k != "spec"})


def test_finetuning_starts_from_the_pretrained_weights(two_stage: dict) -> None:
    from spinescan.training.inference import load_run_model

    run_dir = two_stage["first"].run_dir
    pre_dir = Path(_read(run_dir, "config.json")["pretrain"]["run_dir"])
    tuned, pre = load_run_model(run_dir), load_run_model(pre_dir)
    tuned_weights, pre_weights = tuned.get_weights(), pre.get_weights()
    assert len(tuned_weights) == len(pre_weights) > 4
    for a, b in zip(tuned_weights, pre_weights, strict=True):
        np.testing.assert_array_equal(a, b)
    fresh = tuned.__class__.from_config(tuned.get_config())  # a freshly initialised twin differs
    assert any(not np.array_equal(a, b) for a, b in zip(fresh.get_weights(), pre_weights, strict=True))


def test_phantoms_and_pretrain_run_are_reused(two_stage: dict) -> None:
    first, second_run = two_stage["first"], two_stage["second"]
    assert second_run.run_dir != first.run_dir
    assert second_run.metrics["pretrain"]["run_dir"] == first.metrics["pretrain"]["run_dir"]
    assert (two_stage["phantoms"] / "provenance.json").stat().st_mtime_ns == two_stage["synth_mtime"]
    model_dir = Path(first.run_dir).parent
    assert len([p for p in model_dir.iterdir() if p.name.startswith("pretrain-")]) == 1


def test_bench_fine_tunes_every_fold_from_one_pretrain_run(two_stage: dict, few_films: Path) -> None:
    from click.testing import CliRunner

    from spinescan.cli import build_cli

    pre_dir = two_stage["first"].metrics["pretrain"]["run_dir"]
    tmp = two_stage["tmp"]
    args = ["bench", "scoliosis", "--data", str(few_films), "--folds", "2", "--seeds", "1", "--epochs", "1"]
    args += ["--image-size", "32", "--runs", str(tmp / "bench-runs"), "--out", str(tmp / "report")]
    args += ["--pretrain", pre_dir, "--resize", "spine_crop", "--by", "framing", "--bootstrap", "100", "-q"]
    result = CliRunner().invoke(build_cli(), args)
    assert result.exit_code == 0, result.output
    lb = json.loads((tmp / "report" / "leaderboard.json").read_text())
    assert lb["protocol"]["pretrain"] == pre_dir and lb["protocol"]["resize"] == "spine_crop"
    (entry,) = lb["models"]
    assert len(entry["runs"]) == 2
    for run in entry["runs"]:
        assert _read(run["run_dir"], "config.json")["pretrain"]["run_dir"] == pre_dir
    assert set(entry["subgroups"]) == {"spine_crop", "fullframe"}
    assert {p["probe"] for p in lb["probes"]} == {"geometry", "geometry+intensity"}
    assert all(set(p["subgroups"]) == {"spine_crop", "fullframe"} for p in lb["probes"])


def test_train_cli_starts_from_a_pretrain_run_dir(two_stage: dict, few_films: Path) -> None:
    from click.testing import CliRunner

    from spinescan.cli import build_cli
    from spinescan.errors import SpineScanError

    pre_dir = two_stage["first"].metrics["pretrain"]["run_dir"]
    runs_dir = two_stage["tmp"] / "cli-runs"
    args = ["train", "scoliosis", "--data", str(few_films), "--epochs", "0", "--image-size", "32"]
    args += ["--runs", str(runs_dir), "--run-id", "tuned", "--pretrain", pre_dir, "--resize", "letterbox"]
    result = CliRunner().invoke(build_cli(), [*args, "--quiet"])
    assert result.exit_code == 0, result.output
    config = _read(runs_dir / "scoliosis" / "tuned", "config.json")
    assert (
        config["pretrain"]["run_dir"] == pre_dir and config["spec"]["preprocessing"]["resize"] == "letterbox"
    )
    bad = CliRunner().invoke(build_cli(), [*args[:-4], "--pretrain", str(few_films), "--quiet"])
    assert bad.exit_code != 0 and "finished run directory" in str(bad.exception)  # a one-line user error
    assert isinstance(bad.exception, SpineScanError)


def test_phantom_pretraining_refuses_classes_the_generator_does_not_draw() -> None:
    from dataclasses import replace

    from spinescan.errors import DataError
    from spinescan.training.pretrain import _check_classes
    from spinescan.zoo.registry import get_spec

    spec = replace(get_spec("scoliosis"), classes=("healthy", "spondylolisthesis"))
    with pytest.raises(DataError, match="spondylolisthesis"):
        _check_classes(spec)
