"""``spinescan predict`` is ``spinescan-predict``; ``--device`` picks the onnxruntime provider."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from spinescan.cli import build_cli
from spinescan.edge import predict_args, predictor
from spinescan.edge.onnxmodel import providers_for
from spinescan.errors import SpineScanError


@pytest.fixture
def films_and_model(tmp_path: Path) -> tuple[Path, Path]:
    from test_predictor import toy_model

    models = tmp_path / "exported"
    models.mkdir()
    toy_model(models / "toy.onnx")
    films = tmp_path / "films"
    films.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(films / f"f{i}.png"), (rng.random((80, 40)) * 255).astype(np.uint8))
    (films / "broken.png").write_bytes(b"not a png")
    return models, films


def test_predict_is_the_same_program_with_the_same_output(
    films_and_model: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    models, films = films_and_model
    for extra in ([], ["--json", "--top", "2"]):
        code = predictor.main(["--models", str(models), *extra, str(films)])
        expected = capsys.readouterr().out
        result = CliRunner().invoke(build_cli(), ["predict", "--models", str(models), *extra, str(films)])
        assert result.exit_code == code == 1  # the broken film is reported, the rest classified
        assert result.stdout == expected
        assert "broken.png" in expected and "f2.png" in expected


def test_predict_has_every_option_of_the_light_program() -> None:
    command = build_cli().commands["predict"]
    click_flags = {flag for p in command.params for flag in getattr(p, "opts", []) if flag.startswith("-")}
    actions = predict_args.build_parser()._actions
    argparse_flags = {f for a in actions for f in a.option_strings} - {"-h", "--help"}
    assert argparse_flags <= click_flags
    assert {"--device", "--json", "--overlay", "--view"} <= click_flags


def test_predict_quiet_and_verbose(films_and_model: tuple[Path, Path]) -> None:
    """-q: stderr keeps only what failed; -v: one line per model; the table is the same."""
    models, films = films_and_model
    runs = {
        flag: CliRunner().invoke(build_cli(), ["predict", "--models", str(models), *flag, str(films)])
        for flag in ((), ("-q",), ("-v",))
    }
    assert {r.exit_code for r in runs.values()} == {1}  # the broken film
    assert runs[()].stdout == runs[("-q",)].stdout == runs[("-v",)].stdout
    assert "spinescan-predict: models" in runs[()].stderr
    assert runs[("-q",)].stderr.splitlines() == ["1 of 4 image(s) could not be classified"]
    assert "spinescan-predict: model toy (" in runs[("-v",)].stderr
    assert "CPUExecutionProvider" in runs[("-v",)].stderr
    both = CliRunner().invoke(build_cli(), ["predict", "--models", str(models), "-q", "-v", str(films)])
    assert both.exit_code == 2


def test_providers_for_each_device() -> None:
    cpu_only = ["CPUExecutionProvider"]
    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers_for("cpu", both) == ["CPUExecutionProvider"]
    assert providers_for("auto", cpu_only) == ["CPUExecutionProvider"]
    assert providers_for("auto", both) == both
    assert providers_for("gpu", both) == both
    with pytest.raises(SpineScanError, match=r"--device gpu: .*onnxruntime-gpu"):
        providers_for("gpu", cpu_only)
    with pytest.raises(SpineScanError, match="choose one of"):
        providers_for("tpu", cpu_only)


def test_gpu_asked_for_and_absent_is_one_line(films_and_model: tuple[Path, Path]) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has a CUDA onnxruntime")
    models, films = films_and_model
    args = ["predict", "--models", str(models), "--device", "gpu", str(films)]
    result = CliRunner().invoke(build_cli(), args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert [line for line in result.stderr.splitlines() if line] == [
        line for line in result.stderr.splitlines() if "--device gpu" in line
    ]


# --- one flag vocabulary ----------------------------------------------------------------------------


def test_the_commands_share_one_flag_vocabulary() -> None:
    commands = build_cli().commands

    def flags(name: str) -> set[str]:
        return {f for p in commands[name].params for f in getattr(p, "opts", [])}

    for name in ("predict", "val", "train", "tune", "bench", "export"):
        assert "--device" in flags(name), name
    for name in ("val", "train", "tune", "bench"):
        assert {"-q", "--quiet"} <= flags(name), name
    for name in ("val", "bench", "predict", "models", "plugins"):
        assert "--json" in flags(name), name
    assert {"-v", "--verbose", "--out"} <= flags("val")


def test_tf_device_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from spinescan.training.device import select_tf_device

    with pytest.raises(SpineScanError, match="choose one of"):
        select_tf_device("tpu")
    select_tf_device("auto")  # TensorFlow's own choice: nothing to do
    if "tensorflow" not in sys.modules:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        select_tf_device("cpu")
        assert sys.modules.get("tensorflow") is None
        import os

        assert os.environ["CUDA_VISIBLE_DEVICES"] == "-1"


def test_tf_gpu_asked_for_and_absent_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    tf = pytest.importorskip("tensorflow")
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("TensorFlow sees a GPU here")
    from spinescan.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "generalist", "--device", "gpu", "--data", "/nonexistent"])
    assert exit_info.value.code != 0
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(err) == 1 and err[0].startswith("Error: --device gpu: TensorFlow sees no GPU"), err
