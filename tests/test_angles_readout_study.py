"""The AP read-out study's tool (benchmarks/readout_study.py) measures what ships: its baseline is
the shipped read-out, its smoother generalises the shipped one, and its self-check catches a drift.
Numpy only (the cached model outputs come from the ``cache`` step, not from here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from spinescan.radiograph import angles as A
from spinescan.radiograph import coronal

STUDY = Path(__file__).resolve().parents[1] / "benchmarks" / "readout_study.py"


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("readout_study", STUDY)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["readout_study"] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("readout_study", None)


def spine(tilts_deg: np.ndarray, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """(68, 2) corners of 17 rectangular vertebrae (30 x 14 px) with the given tilts, stacked down a
    film, plus Gaussian corner noise (px)."""
    rng = np.random.default_rng(seed)
    out = []
    x = 100.0
    for k, t in enumerate(np.radians(tilts_deg)):
        x += 20.0 * np.sin(t)
        centre = np.array([x, 40.0 + 22.0 * k])
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        for dx, dy in ((-15, -7), (15, -7), (-15, 7), (15, 7)):
            out.append(centre + rot @ np.array([dx, dy]))
    return np.array(out) + rng.normal(0.0, noise, (68, 2))


def test_local_quadratic_over_five_is_the_shipped_smoother(study) -> None:
    rng = np.random.default_rng(3)
    for first, last in ((0, 16), (2, 11), (5, 9)):
        t = rng.normal(0.0, 10.0, 17)
        got = study.local_quadratic(t, first, last, 2)
        assert np.allclose(got, coronal.smoothed_tilts(t, first, last), atol=1e-9)
    wider = study.local_quadratic(t, 0, 16, 3)
    assert not np.allclose(wider, coronal.smoothed_tilts(t))


def test_bridge_interpolates_dropped_vertebrae_only(study) -> None:
    t = np.arange(17, dtype=float) * 2.0
    t[5], t[6] = 90.0, -90.0
    keep = np.ones(17, dtype=bool)
    keep[[5, 6]] = False
    got = study.bridge(t, keep, 0, 16)
    assert np.allclose(got, np.arange(17) * 2.0)
    assert np.array_equal(study.bridge(t, np.zeros(17, dtype=bool), 0, 16), t)  # nothing to bridge from


def test_baseline_equals_shipped_readout_and_self_check_catches_a_drift(study, monkeypatch) -> None:
    rng = np.random.default_rng(5)
    films = []
    for i in range(12):
        lm = spine(25.0 * np.sin(np.linspace(0, np.pi * rng.uniform(0.5, 2), 17)), noise=1.5, seed=i)
        if i % 3 == 0:
            lm[: 4 * (i % 5 + 1)] = np.nan  # upper vertebrae out of frame: a partial reading
        films.append((lm, (500, 300), rng.uniform(20, 80, 17)))
    assert study.self_check({"x": films}) < 1e-9
    monkeypatch.setitem(study.CANDIDATES, study.BASELINE, study.t_sg(3))
    with pytest.raises(AssertionError, match="differs from the shipped read-out"):
        study.self_check({"x": films})


def test_crossfit_reads_a_noisy_straight_spine_lower_and_a_clean_curve_the_same(study) -> None:
    clean = spine(30.0 * np.sin(np.linspace(0, np.pi, 17)))
    today = A.ap_angles(clean, (500, 300), readout=coronal.PREDICTION_READOUT)["cobb_deg"].value
    assert study.read_crossfit(clean, (500, 300))["cobb_deg"].value == pytest.approx(today, abs=1e-6)
    lower = []
    for seed in range(20):
        noisy = spine(np.zeros(17), noise=1.5, seed=seed)
        lower.append(
            study.read_crossfit(noisy, (500, 300))["cobb_deg"].value
            < A.ap_angles(noisy, (500, 300), readout=coronal.PREDICTION_READOUT)["cobb_deg"].value
        )
    assert np.mean(lower) >= 0.8
