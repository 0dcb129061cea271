"""Shared fixtures: a tiny phantom dataset (generated once per session), one tiny trained cobb run,
one compact generalist run and the real films."""

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
def cobb_int8_export(cobb_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """``cobb_run`` exported once with int8 and every limit of the landmark int8 gate opened (int8
    ships whatever the 1-epoch model does), with the figures the gate was called with. The
    landmark export tests and the landmark zoo tests read it; each used to convert and quantize
    the same run itself."""
    pytest.importorskip("tf2onnx")
    from spinescan.export import landmark_int8
    from spinescan.export.exporter import export_runs

    seen: list = []
    real_gate = landmark_int8.landmark_gate

    def spy(*args, **kwargs):
        seen.append(args)
        return real_gate(*args, **kwargs)

    patch = pytest.MonkeyPatch()
    patch.setattr(landmark_int8, "landmark_gate", spy)
    for limit, value in (("MIN_LABEL_AGREEMENT", 0.0), ("MIN_MEASURED_AGREEMENT", 0.0),
                         ("MAX_MEAN_ANGLE_DIFF_DEG", 1e9), ("MAX_MEAN_SHIFT", 1e9)):  # fmt: skip
        patch.setattr(landmark_int8, limit, value)
    try:
        out = tmp_path_factory.mktemp("lm_int8_shipped")
        export_runs([cobb_run], out, quantize="int8").raise_for_failures()
    finally:
        patch.undo()
    return out, seen


@pytest.fixture(scope="session")
def trained_run(phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A compact generalist fitted one epoch and made to vary with its input
    (``test_export._train_run``), written as a finished run once for the whole suite: the export
    tests and the hardening tests read it (never write to it; a test that needs to change a run
    copies it first). Both files used to fit the same seeded model each."""
    pytest.importorskip("tensorflow")
    from test_export import _train_run

    return _train_run(phantom_dir, tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """The real AP films (healthy vs scoliosis) and the lateral sample; skipped when absent."""
    if not (REAL_DIR / "fraiwan-kauh-dev" / "manifest.csv").is_file():
        pytest.skip("../shared/data/real is not available")
    return REAL_DIR
