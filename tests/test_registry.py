"""The plugin registry: discovery through entry points, isolation of broken plugins, no TF."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spinescan.errors import SpecError
from spinescan.radiograph.preprocess import Preprocessing
from spinescan.zoo.spec import ModelSpec, default_builder

HERE = Path(__file__).parent
BUILTINS = {"generalist", "lordosis", "kyphosis", "scoliosis", "cobb", "sagittal", "view"}


def make_dist(site: Path, dist: str, entry_points: dict[str, str], src: Path | None = None) -> None:
    """Register plugin modules the way pip would: a dist-info with an entry_points.txt."""
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    lines = ["[spinescan]"] + [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    if src is not None:
        for file in src.glob("*.py"):
            (site / file.name).write_text(file.read_text())


def run_cli(args: list[str], site: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SPINESCAN_")}
    environ.update(env)
    if site is not None:
        environ["PYTHONPATH"] = str(site)
    return subprocess.run(
        [sys.executable, "-m", "spinescan", *args], capture_output=True, text=True, env=environ, timeout=120
    )


def test_builtins_listed_with_classes() -> None:
    proc = run_cli(["models", "--json"])
    assert proc.returncode == 0, proc.stderr
    models = {m["name"]: m for m in json.loads(proc.stdout)}
    assert set(models) >= BUILTINS
    assert models["generalist"]["classes"] == ["healthy", "kyphosis", "lordosis"]
    assert models["lordosis"]["classes"] == ["healthy", "lordosis"]
    assert models["kyphosis"]["classes"] == ["healthy", "kyphosis"]
    assert models["scoliosis"]["view"] == "ap"
    for m in models.values():
        assert {"name", "view", "classes", "plugin", "input_size"} <= set(m)
        assert len(m["input_size"]) == 3


def test_listing_does_not_import_tensorflow() -> None:
    code = (
        "import sys, spinescan.zoo.registry as r; specs = r.list_models(); "
        "assert len(specs) >= 4; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


def test_builtins_come_from_entry_points() -> None:
    from spinescan.zoo.registry import load_registry

    registry = load_registry()
    families = {
        "classifiers": {"generalist", "kyphosis", "lordosis", "scoliosis"},
        "landmark_models": {"cobb", "sagittal"},
        "view": {"view"},  # the view guard, a family of its own
    }
    assert {n for n, p in registry.plugins.items() if p.builtin} == set(families)
    for family, models in families.items():  # each family declared once, by one plugin
        info = registry.plugins[family]
        assert info.builtin and info.module == f"spinescan_plugins.{family}"
        assert info.distribution == "spinescan"
        assert info.hooks == ["register_models"]
        assert {n for n, s in registry.models.items() if s.plugin == family} == models


def test_no_generic_plugins_module_installed() -> None:
    import spinescan_plugins

    assert Path(spinescan_plugins.__file__).parent.name == "spinescan_plugins"
    import importlib.util

    spec = importlib.util.find_spec("plugins")
    assert spec is None or "spinescan_plugins" not in str(spec.origin)


def test_third_party_plugin_adds_model_and_command(tmp_path: Path) -> None:
    make_dist(
        tmp_path, "spinescan-spondylo", {"spondylo": "spinescan_spondylo"}, HERE / "plugins" / "thirdparty"
    )
    proc = run_cli(["models", "--json"], site=tmp_path)
    assert proc.returncode == 0, proc.stderr
    models = {m["name"]: m for m in json.loads(proc.stdout)}
    assert models["spondylolisthesis"]["plugin"] == "spondylo"
    assert models["spondylolisthesis"]["input_size"] == [96, 96, 1]
    assert set(models) >= BUILTINS

    plugins = json.loads(run_cli(["plugins", "--json"], site=tmp_path).stdout)["plugins"]
    spondylo = next(p for p in plugins if p["name"] == "spondylo")
    assert spondylo["distribution"] == "spinescan-spondylo" and spondylo["version"] == "1.2.3"
    assert spondylo["hooks"] == ["register_commands", "register_models"]

    hello = run_cli(["spondylo-hello", "doctor"], site=tmp_path)
    assert hello.returncode == 0 and hello.stdout.strip() == "hello doctor from spondylo"

    # With autoload disabled only the built-ins remain.
    off = run_cli(["models", "--json"], site=tmp_path, SPINESCAN_DISABLE_PLUGIN_AUTOLOAD="1")
    assert {m["name"] for m in json.loads(off.stdout)} == BUILTINS


def test_broken_plugins_are_reported_not_fatal(tmp_path: Path) -> None:
    make_dist(
        tmp_path,
        "spinescan-broken",
        {"broken-import": "spinescan_broken_import", "broken-spec": "spinescan_broken_spec"},
        HERE / "plugins" / "broken",
    )
    proc = run_cli(["models", "--json"], site=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert {m["name"] for m in json.loads(proc.stdout)} == BUILTINS
    assert "broken-import" in proc.stderr and "not installed" in proc.stderr
    assert "broken-spec" in proc.stderr and "sagittal" in proc.stderr
    assert "Traceback" not in proc.stderr

    strict = run_cli(["models"], site=tmp_path, SPINESCAN_STRICT_PLUGINS="1")
    assert strict.returncode != 0
    assert "broken-import" in strict.stderr and "Traceback" not in strict.stderr


def test_duplicate_model_name_names_both_plugins(tmp_path: Path) -> None:
    make_dist(tmp_path, "spinescan-dup", {"impostor": "spinescan_duplicate"}, HERE / "plugins" / "broken")
    proc = run_cli(["models"], site=tmp_path)
    assert proc.returncode != 0
    assert "duplicate model name 'generalist'" in proc.stderr
    assert "'generalist'" in proc.stderr and "'impostor'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"view": "sagittal"}, "view"),
        ({"classes": ("healthy",)}, "two classes"),
        ({"classes": ("a", "a")}, "unique"),
        ({"input_size": (64, 64, 2)}, "input_size"),
        ({"build": "not callable"}, "callable"),
        ({"name": "has space"}, "identifier"),
    ],
)
def test_spec_validation(changes: dict, needle: str) -> None:
    fields = {
        "name": "ok",
        "description": "d",
        "view": "lateral",
        "classes": ("healthy", "kyphosis"),
        "build": default_builder,
    }
    fields.update(changes)
    with pytest.raises(SpecError, match=needle):
        ModelSpec(**fields)


def test_spec_carries_everything_call_sites_need() -> None:
    from spinescan.zoo.registry import get_spec

    spec = get_spec("lordosis")
    assert spec.view == "lateral" and spec.classes == ("healthy", "lordosis")
    assert isinstance(spec.preprocessing, Preprocessing)
    assert spec.with_image_size(64).input_size == (64, 64, 1)
    summary = spec.summary()
    assert summary["preprocessing"]["resize"] == "letterbox"
    assert summary["train_defaults"]["backbone"] == "compact"
    json.dumps(summary)  # JSON-ready


def test_unknown_model_lists_known_ones() -> None:
    proc = run_cli(["models", "--view", "ap"])
    assert proc.returncode == 0 and "scoliosis" in proc.stdout and "generalist" not in proc.stdout
    from spinescan.errors import SpineScanError
    from spinescan.zoo.registry import get_spec

    with pytest.raises(SpineScanError, match="registered models: cobb, generalist"):
        get_spec("nope")
