"""One run-settings object for train, bench and tune (issue 23 #3): the shared options are generated
from :class:`RunSettings` for all three commands, bench passes the object on, and a run is
resolved once."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from spinescan.cli import build_cli
from spinescan.cli.options import SETTINGS_LEFT_OUT
from spinescan.errors import SpineScanError
from spinescan.training import config as config_module
from spinescan.training.settings import RunSettings, settings_fields


def _options(command: click.Command) -> dict[str, click.Option]:
    return {p.name: p for p in command.params if isinstance(p, click.Option) and p.name}


def _counting_spec_for(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count resolutions: every ``resolve_request`` starts with ``spec_for`` (the module global)."""
    calls: list[str] = []
    original = config_module.spec_for

    def counted(config: Any) -> Any:
        calls.append(config.model)
        return original(config)

    monkeypatch.setattr(config_module, "spec_for", counted)
    return calls


def test_train_bench_and_tune_expose_the_settings_options_generated_from_run_settings() -> None:
    commands = build_cli().commands
    for name in ("train", "bench", "tune"):
        options = _options(commands[name])
        for f in settings_fields():
            if f.name in SETTINGS_LEFT_OUT[name]:
                assert f.name not in options, (name, f.name)
                continue
            option = options[f.name]
            assert option.opts == ["--" + f.name.replace("_", "-")], (name, f.name)
            assert option.help == f.metadata["helps"].get(name, f.metadata["help"]), (name, f.name)
    # The same declaration makes the same option everywhere: type, choices, bounds and default.
    shared = [
        f.name for f in settings_fields() if all(f.name not in left for left in SETTINGS_LEFT_OUT.values())
    ]
    assert {"image_size", "resize"} <= set(shared)
    for field_name in shared:
        made = [_options(commands[c])[field_name] for c in ("train", "bench", "tune")]
        assert len({(o.type.name, repr(getattr(o.type, "choices", None)), o.default) for o in made}) == 1
    # tune used to lack --resize (its TuneConfig had no such field): now generated like the others.
    assert "--resize" in CliRunner().invoke(build_cli(), ["tune", "--help"]).output
    # bench's --seeds replaces --seed; train alone offers --weights and --strategy (one declared list).
    assert "seed" not in _options(commands["bench"]) and "seeds" in _options(commands["bench"])


def test_run_settings_check_their_values_in_one_line() -> None:
    with pytest.raises(SpineScanError, match=r"^unknown strategy 'ring'; choose one of auto, mirrored"):
        RunSettings(strategy="ring")
    with pytest.raises(SpineScanError, match=r"^unknown resize 'stretch'; choose one of letterbox"):
        RunSettings(resize="stretch")
    with pytest.raises(SpineScanError, match="unknown weights"):
        RunSettings(weights="coco")
    with pytest.raises(SpineScanError, match="image_size must be >= 8"):
        RunSettings(image_size=(512, 4))
    with pytest.raises(SpineScanError, match="pretrain_borderline must be <= 1"):
        RunSettings(pretrain_borderline=1.5)
    assert RunSettings(weights="none").weights is None
    assert RunSettings(weights="imagenet").weights == "imagenet"
    assert RunSettings(image_size=[512, 192]).image_size == (512, 192)  # as read back from JSON
    assert RunSettings(weights="none") == RunSettings()


def test_tune_takes_resize_and_applies_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spinescan.training import tune as tune_module

    seen = []

    def fake_tune(config: Any) -> Any:
        seen.append(config)
        raise SpineScanError("stopped by the test")

    monkeypatch.setattr(tune_module, "tune", fake_tune)
    args = ["tune", "generalist", "--data", str(tmp_path), "--resize", "spine_crop", "--image-size", "48"]
    result = CliRunner().invoke(build_cli(), args)
    assert "stopped by the test" in str(result.exception)
    (config,) = seen
    assert config.settings == RunSettings(image_size=48, resize="spine_crop")
    resolved, _ = tune_module._check(config)  # what every trial is built from
    assert resolved.spec.preprocessing.resize == "spine_crop"
    assert resolved.spec.input_size[:2] == (48, 48)


def test_bench_passes_its_settings_on_and_resolves_each_model_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spinescan.evaluation.jobs import BenchConfig, Job, check_requests, train_config, train_or_reuse
    from spinescan.training import prepare

    calls = _counting_spec_for(monkeypatch)
    settings = RunSettings(image_size=48, resize="spine_crop", pretrain_epochs=3)
    config = BenchConfig(models=("generalist",), seeds=3, data=tmp_path, settings=settings)
    jobs = [Job("generalist", None, seed, None, f"seed {seed}") for seed in range(3)]
    assert train_config(config, jobs[2], tmp_path).settings == dataclasses.replace(settings, seed=2)

    asked = []

    def reusable(tc: Any, resolved: Any = None) -> Path:
        asked.append((tc, resolved))
        return tmp_path / f"run-{tc.settings.seed}"  # "reused": nothing trains

    monkeypatch.setattr(prepare, "find_reusable_run", reusable)
    resolutions = check_requests(config)  # the argument check before any work
    done = train_or_reuse(config, jobs, tmp_path, resolutions)
    assert [p.name for p, reused in done] == ["run-0", "run-1", "run-2"]
    assert calls == ["generalist"]  # one resolution for the model's three runs
    assert [tc.settings.seed for tc, _ in asked] == [0, 1, 2]
    assert all(resolved is resolutions[("generalist", None)] for _, resolved in asked)
    assert asked[0][1].spec.preprocessing.resize == "spine_crop"


def test_a_train_run_is_resolved_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the CLI resolved the request, then ``train`` resolved it again."""
    pytest.importorskip("tensorflow")
    from spinescan.synth import generate

    data = tmp_path / "films"
    generate(data, per_class=8, seed=0, size=96, views=("lateral",), workers=1, progress=False)
    calls = _counting_spec_for(monkeypatch)
    args = ["train", "generalist", "--data", str(data), "--runs", str(tmp_path / "runs")]
    args += ["--epochs", "0", "--image-size", "32", "--seed", "3", "-q"]
    result = CliRunner().invoke(build_cli(), args)
    assert result.exit_code == 0, result.output
    assert calls == ["generalist"]
    (run_dir,) = (tmp_path / "runs" / "generalist").iterdir()
    recorded = json.loads((run_dir / "config.json").read_text())
    assert recorded["seed"] == 3 and recorded["spec"]["input_size"][:2] == [32, 32]
