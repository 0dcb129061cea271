"""The import contracts (pyproject's [tool.importlinter]) hold, and each one fails when broken.

Every check runs ``lint-imports`` on a throw-away copy of the sources, once clean and once with
one forbidden import injected, so a contract that could never fail would show up here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (dev extra)")


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "spinescan", tmp_path / "spinescan", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        ROOT / "plugins" / "spinescan_plugins",
        tmp_path / "spinescan_plugins",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the copy shadows the editable install
    return subprocess.run(
        [str(LINT), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_contracts_hold_on_the_sources(tmp_path: Path) -> None:
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("spinescan/training/loop.py", "import click", "Only the command line imports click"),
        ("spinescan/radiograph/preprocess.py", "import tensorflow", "never imports TensorFlow"),
        ("spinescan/edge/predictor.py", "import keras", "never imports TensorFlow"),
        ("spinescan/training/runs.py", "from spinescan.training import loop", "No import cycles"),
        ("spinescan/data/splits.py", "from spinescan.evaluation import bench", "import only downwards"),
        ("spinescan/zoo/registry.py", "import spinescan_plugins.classifiers", "never imports the plugins"),
        ("spinescan_plugins/classifiers.py", "import spinescan.training.loop", "Plugins import only the zoo"),
    ],
)
def test_an_injected_import_breaks_its_contract(tmp_path: Path, module: str, line: str, broken: str) -> None:
    tree = _copy(tmp_path)
    target = tree / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}  # injected by the test\n")
    result = _lint(tree)
    assert result.returncode != 0, result.stdout
    report = result.stdout.split("Broken contracts", 1)[-1]
    assert broken in report, result.stdout
