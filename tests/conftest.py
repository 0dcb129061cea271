"""Shared fixtures: a tiny phantom dataset (generated once per session), one tiny trained cobb run
and the real films."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests see only the built-in plugins unless a test opts in to more.
os.environ.setdefault("SPINESCAN_DISABLE_PLUGIN_AUTOLOAD", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
# ../shared/data/real beside the checkout; SPINESCAN_REAL_DIR points elsewhere (e.g. from a git worktree).
REAL_DIR = Path(os.environ.get("SPINESCAN_REAL_DIR") or REPO.parent / "shared" / "data" / "real")


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset, both views, shared by all tests (read-only for them). 160 px high,
    so lateral films are 36 px wide: the predictor refuses films under 32 px on a side."""
    from spinescan.synth import generate

    out = tmp_path_factory.mktemp("phantoms")
    generate(out, per_class=40, seed=0, size=160, views=("lateral", "ap"), workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def cobb_run(phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cobb landmark run (64 px, one epoch) trained once for the whole suite: the landmark zoo
    and the landmark export tests read it (never write to it)."""
    pytest.importorskip("tensorflow")
    from spinescan.training.loop import TrainConfig, train
    from spinescan.training.settings import RunSettings

    runs = tmp_path_factory.mktemp("cobb_runs")
    result = train(
        TrainConfig(
            model="cobb",
            data=phantom_dir,
            runs_dir=runs,
            settings=RunSettings(image_size=64),
            hparams={"epochs": 1},
        )
    )
    return result.run_dir


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """The real AP films (healthy vs scoliosis) and the lateral sample; skipped when absent."""
    if not (REAL_DIR / "fraiwan-kauh-dev" / "manifest.csv").is_file():
        pytest.skip("../shared/data/real is not available")
    return REAL_DIR
