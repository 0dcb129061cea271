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
from spinescan.training.settings import RunSettings
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
        resolve_request(TrainConfig("generalist", data=tmp_path, settings=RunSettings(strategy="ring")))
    with pytest.raises(SpineScanError, match="unknown field"):
        resolve_request(TrainConfig("generalist", data=tmp_path, hparams={"epoch": 3}))
    with pytest.raises(SpineScanError, match="has no imagenet weights"):  # an option that does not apply
        resolve_request(TrainConfig("generalist", data=tmp_path, settings=RunSettings(weights="imagenet")))
    settings = RunSettings(image_size=48)
    config = TrainConfig("generalist", data=tmp_path, settings=settings, hparams={"width": 8})
    resolved = resolve_request(config)
    assert resolved.spec.input_size == (48, 48, 1) and resolved.hparams.width == 8
    tall = resolve_request(TrainConfig("cobb", data=tmp_path, settings=RunSettings(image_size=(512, 192))))
    assert tall.spec.input_size == (512, 192, 1)
    assert tall.spec.preprocessing == get_spec("cobb").preprocessing  # same aspect, same crop
    with pytest.raises(SpineScanError, match="multiples of 32, got 500x192"):
        resolve_request(TrainConfig("cobb", data=tmp_path, settings=RunSettings(image_size=(500, 192))))


@pytest.mark.parametrize(
    ("text", "expected"), [("224", 224), ("512x192", (512, 192)), (" 64X32 ", (64, 32))]
)
def test_image_size_option_takes_a_square_or_height_by_width(text: str, expected: object) -> None:
    from spinescan.cli.options import ImageSize

    assert ImageSize().convert(text, None, None) == expected


@pytest.mark.parametrize("text", ["big", "512x", "x192", "4x512", "0"])
def test_image_size_option_refuses_nonsense_in_one_line(text: str) -> None:
    from spinescan.cli.train import train_command

    result = CliRunner().invoke(train_command, ["cobb", "--image-size", text])
    assert result.exit_code == 2 and "--image-size" in result.output and "Traceback" not in result.output


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


# --- hostile --hparams files (issue 26 #9): one line each, nothing read whole -----------------------


def _raw(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"schema": "spinescan.hparams/1", "hparams": {"epochs": 1e400}}', "epochs=inf: expected a finite"),
        (b'{"schema": "spinescan.hparams/1", "hparams": {"width": 1e18}}', "width must be <= 1024"),
        (b'{"schema": "spinescan.hparams/1", "hparams": {"width": 1000000000000000000}}', "width must be <="),
        (b'{"schema": "spinescan.hparams/1", "hparams": {"epochs": -1e400}}', "expected a finite"),
        (b'{"schema": "spinescan.hparams/1", "hparams": {"learning_rate": NaN}}', "expected a finite"),
        (b'{"schema": "spinescan.hparams/1", "hparams": {"learning_rate": Infinity}}', "expected a finite"),
        (b'{"schema": "spinescan.hparams/1", "hparams": {"epochs": "1e400"}}', "expected a finite"),
        (b'{"schema": "spinescan.hparams/1", "hparams": {"epochs": [3]}}', "expected a number, got list"),
        (b'{"schema": "spinescan.hparams/1", "hparams": {"epochs": true}}', "expected a number, got bool"),
        (b'{"schema": "spinescan.hparams/1", "hparams": {"optimizer": {"a": 1}}}', "expected str, got dict"),
        (b'{"schema": "spinescan.hparams/1", "hparams": {"augment": 1}}', "expected true or false"),
        (b'{"schema": "spinescan.hparams/1", "hparams": {"batch_size": 10000000}}', "batch_size must be <="),
        (b"\xff\xfe{\x00}\x00", "not UTF-8 text"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"schema": "spinescan.hparams/1", "hparams": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001,
         "nested too deeply"),
    ],
)
def test_hostile_hparams_files_are_one_line(tmp_path: Path, data: bytes, message: str) -> None:
    path = _raw(tmp_path / "hp.json", data)
    with pytest.raises(SpineScanError) as info:
        read_hparams_file(path, "generalist")
    assert message in str(info.value) and "\n" not in str(info.value) and len(str(info.value)) < 400


def test_a_huge_hparams_file_is_not_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "hp.json"
    with open(path, "wb") as fh:  # 100 MB, sparse: costs nothing on disk
        fh.write(b'{"schema": "spinescan.hparams/1", "hparams": {}, "pad": "')
        fh.truncate(100 << 20)
    sizes: list[int] = []
    real_open = open

    def spy_open(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        if str(file) == str(path):
            real_read = fh.read

            class Spy:
                def __enter__(self):
                    return self

                def __exit__(self, *exc):
                    fh.close()

                def read(self, n=-1):
                    out = real_read(n)
                    sizes.append(len(out))
                    return out

            return Spy()
        return fh

    import builtins

    monkeypatch.setattr(builtins, "open", spy_open)
    with pytest.raises(SpineScanError, match="larger than 1024 kB"):
        read_hparams_file(path, "generalist")
    assert sizes and max(sizes) <= (1 << 20) + 1


def test_hparams_from_a_fifo_or_a_folder_is_one_line(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(SpineScanError, match="not a regular file"):
        read_hparams_file(fifo, "generalist")
    with pytest.raises(SpineScanError, match="not a regular file"):
        read_hparams_file(tmp_path, "generalist")


def test_every_numeric_field_declares_both_bounds() -> None:
    """The bounds live with the field (its metadata), so the file, the options and the tuner's
    search space all refuse the same values."""
    for f in fields(HParams):
        if type(f.default) in (int, float):
            assert f.metadata["minimum"] is not None and f.metadata["maximum"] is not None, f.name
            assert f.metadata["minimum"] <= f.default <= f.metadata["maximum"], f.name


@pytest.mark.parametrize("doc", ['{"epochs": 1e400}', '{"width": 1e18}', "\udcff"])
def test_train_cli_with_hostile_hparams_file_says_one_line(tmp_path: Path, doc: str) -> None:
    from spinescan.cli import build_cli

    path = tmp_path / "hp.json"
    body = f'{{"schema": "spinescan.hparams/1", "hparams": {doc}}}' if doc.startswith("{") else None
    path.write_bytes(body.encode() if body else b"\xff\xfe")
    result = CliRunner().invoke(
        build_cli(), ["train", "generalist", "--data", str(tmp_path), "--hparams", str(path)]
    )
    # a SpineScanError is what `spinescan` prints as one "Error: ..." line (cli.main)
    assert result.exit_code != 0 and isinstance(result.exception, SpineScanError), result.exception
    assert str(result.exception).startswith("--hparams") and "\n" not in str(result.exception)
