"""Hyper-parameters declared once: defaults, precedence, --hparams files, options, run configs.

None of these tests imports TensorFlow: the point of the typed configuration is that every
argument error is found before it is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pytest
from click.testing import CliRunner

from spinescan.errors import SpineScanError
from spinescan.training.config import TrainConfig, resolve_request
from spinescan.training.runconfig import DatasetRecord, RunConfig, parse_run_config
from spinescan.zoo.hparams import (
    BACKBONE_NAMES,
    HPARAMS_SCHEMA,
    HParams,
    TrainDefaults,
    matching_fields,
    read_hparams_file,
    resolve_hparams,
)
from spinescan.zoo.registry import get_spec


def _write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_defaults_reproduce_the_first_version() -> None:
    hp = HParams()
    assert (hp.epochs, hp.batch_size, hp.learning_rate, hp.backbone) == (30, 32, 2e-3, "compact")
    assert (hp.width, hp.depth, hp.dropout, hp.optimizer) == (32, 4, 0.2, "adam")
    assert (hp.checkpoint, hp.lr_schedule, hp.augment) == ("last", "cosine", True)
    assert TrainDefaults is HParams  # plugins written against the first version keep working
    scoliosis = get_spec("scoliosis").train
    assert (scoliosis.epochs, scoliosis.min_epochs, scoliosis.patience) == (40, 15, 10)


def test_backbone_choices_are_the_catalogue() -> None:
    from spinescan.zoo.backbones import BACKBONES

    assert tuple(BACKBONES) == BACKBONE_NAMES


def test_precedence_plugin_then_file_then_option(tmp_path: Path) -> None:
    spec = get_spec("scoliosis")  # plugin default: 40 epochs, target 0.9
    file = _write(
        tmp_path / "hp.json",
        {
            "schema": HPARAMS_SCHEMA,
            "model": "scoliosis",
            "hparams": {"epochs": 12, "width": 16, "dropout": 0.3},
        },
    )
    hp = resolve_hparams(spec.train, {"epochs": 5, "dropout": None}, file, "scoliosis")
    assert hp.epochs == 5  # the explicit option wins over the file
    assert hp.width == 16 and hp.dropout == 0.3  # the file wins over the plugin (None = not given)
    assert hp.target_accuracy == 0.9 and hp.min_epochs == 15  # the rest is the plugin's


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"schema": HPARAMS_SCHEMA, "hparams": {"epochz": 3}}, "unknown field(s) epochz"),
        ({"schema": HPARAMS_SCHEMA, "hparams": {"epochs": 2.5}}, "epochs=2.5"),
        ({"schema": HPARAMS_SCHEMA, "hparams": {"optimizer": "lbfgs"}}, "unknown optimizer 'lbfgs'"),
        ({"schema": HPARAMS_SCHEMA, "hparams": {"dropout": 1.5}}, "dropout must be <= 0.9"),
        ({"schema": HPARAMS_SCHEMA, "model": "kyphosis", "hparams": {}}, "is for model 'kyphosis'"),
        ({"hparams": {"epochs": 3}}, "spinescan.hparams/1"),
        ({"schema": HPARAMS_SCHEMA, "hparams": {}, "extra": 1}, "unknown key(s) extra"),
    ],
)
def test_bad_hparams_files_are_one_line_errors(tmp_path: Path, doc: dict, message: str) -> None:
    path = _write(tmp_path / "hp.json", doc)
    with pytest.raises(SpineScanError) as info:
        read_hparams_file(path, "generalist")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_matching_fields_are_declared_on_the_fields() -> None:
    names = set(matching_fields())
    assert {"epochs", "learning_rate", "width", "depth", "dropout", "optimizer", "checkpoint"} <= names
    assert not names & {"validation_fraction", "test_fraction"}  # the split hash covers them
    assert names == {f.name for f in fields(HParams) if f.metadata["match"]}


def test_every_hparam_has_an_option_on_train_and_bench() -> None:
    from spinescan.cli.bench import bench_command
    from spinescan.cli.train import train_command

    wanted = {f.name for f in fields(HParams) if f.metadata["cli"]}
    train_params = {p.name for p in train_command.params}
    bench_params = {p.name for p in bench_command.params}
    assert wanted <= train_params and "hparams_file" in train_params
    assert wanted - {"backbone"} <= bench_params and "backbones" in bench_params  # bench compares several
    option = next(p for p in train_command.params if p.name == "learning_rate")
    assert option.opts == ["--lr"]


def test_resolve_request_checks_everything_without_tensorflow(tmp_path: Path) -> None:
    with pytest.raises(SpineScanError, match="unknown model 'nosuchmodel'"):
        resolve_request(TrainConfig("nosuchmodel"))
    with pytest.raises(SpineScanError, match="dataset folder not found"):
        resolve_request(TrainConfig("generalist", data=tmp_path / "nope"))
    with pytest.raises(SpineScanError, match="unknown strategy"):
        resolve_request(TrainConfig("generalist", data=tmp_path, strategy="ring"))
    with pytest.raises(SpineScanError, match="unknown field"):
        resolve_request(TrainConfig("generalist", data=tmp_path, hparams={"epoch": 3}))
    with pytest.raises(SpineScanError, match="has no imagenet weights"):  # an option that does not apply
        resolve_request(TrainConfig("generalist", data=tmp_path, weights="imagenet"))
    resolved = resolve_request(TrainConfig("generalist", data=tmp_path, image_size=48, hparams={"width": 8}))
    assert resolved.spec.input_size == (48, 48, 1) and resolved.hparams.width == 8


@pytest.mark.parametrize(
    "args",
    [
        ["train", "nosuchmodel"],
        ["train", "generalist", "--data", "/nonexistent"],
        ["train", "generalist", "--hparams", "/nonexistent.json"],
        ["bench", "nosuchmodel"],
    ],
)
def test_argument_errors_come_before_tensorflow(args: list[str]) -> None:
    """One line, non-zero exit, well under a second, and TensorFlow never imported."""
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('TF-' + str('tensorflow' in sys.modules)))\n"
        "from spinescan.cli import main\n"
        f"main({args!r})\n"
    )
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=os.environ
    )
    elapsed = time.perf_counter() - t0
    assert proc.returncode != 0
    assert "TF-False" in proc.stdout, proc.stdout + proc.stderr
    assert proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert elapsed < 5  # measured 0.3 s on the 2-core machine; generous against a loaded CI box


def test_train_cli_unknown_field_in_file(tmp_path: Path) -> None:
    from spinescan.cli import build_cli

    path = _write(tmp_path / "hp.json", {"schema": HPARAMS_SCHEMA, "hparams": {"widht": 8}})
    result = CliRunner().invoke(
        build_cli(), ["train", "generalist", "--data", str(tmp_path), "--hparams", str(path)]
    )
    assert result.exit_code != 0 and "unknown field(s) widht" in str(result.exception)


def test_run_config_round_trips_and_reads_the_first_version() -> None:
    spec = get_spec("kyphosis")
    config = RunConfig(
        run_id="r1",
        model="kyphosis",
        hparams=spec.train,
        spec=spec.summary(),
        seed=2,
        dataset=DatasetRecord(root="/data", fingerprint="f" * 32, synthetic=True),
        split_hash="abc",
    )
    doc = json.loads(json.dumps(config.to_dict()))
    assert doc["schema"] == "spinescan.run/1"
    back = parse_run_config(doc)
    assert back.to_dict() == doc and back.hparams == config.hparams and back.identity() == config.identity()
    legacy = {  # what the first version wrote: settings under "arguments", no schema
        "run_id": "r1",
        "arguments": {**spec.train.to_dict(), "model": "kyphosis", "seed": 2, "weights": None,
                      "init_from": None, "input_size": list(spec.input_size),
                      "preprocessing": spec.preprocessing.to_dict()},
        "spec": spec.summary(),
        "dataset": {"root": "/data", "fingerprint": "f" * 32},
        "split_hash": "abc",
    }  # fmt: skip
    for key in ("width", "depth", "dropout", "optimizer"):
        legacy["arguments"].pop(key)  # fields the first version did not have
    old = parse_run_config(legacy)
    assert old.hparams == spec.train  # their defaults reproduce the first version
    assert old.identity() == config.identity()  # so a finished old run is still reused
    with pytest.raises(SpineScanError, match="unsupported schema"):
        parse_run_config({**doc, "schema": "spinescan.run/9"})
