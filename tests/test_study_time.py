"""The study's second half: time to the target accuracy, generalist against the specialists combined."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spinescan.evaluation.records import Part, RunRecord
from spinescan.evaluation.study import time_to_target
from spinescan.evaluation.study_answer import answer

COMPARISON = {
    "specialist": "kyphosis", "classes": ["healthy", "kyphosis"], "n_images": 20, "specialist_accuracy": 0.9,
    "generalist_accuracy": 0.9, "difference": 0.0, "difference_ci": [-0.1, 0.1], "mcnemar": {"p_value": 1.0},
}  # fmt: skip
EMPTY = Part([], np.zeros(0, int), np.zeros((0, 2)))


def _record(model: str, seed: int, to_target: float | None, train: float, target: float) -> RunRecord:
    classes = ("healthy", "kyphosis", "lordosis") if model == "generalist" else ("healthy", model)
    info = {"seconds_to_target": to_target, "train_seconds": train, "target_accuracy": target}
    return RunRecord(
        model, "compact", seed, None, Path(model), classes, "lateral", "healthy", EMPTY, EMPTY, info
    )


def test_time_to_target_pairs_runs_and_sums_the_specialists() -> None:
    g = [_record("generalist", 0, 30.0, 100, 0.85), _record("generalist", 1, 50.0, 100, 0.85)]
    s = {
        "kyphosis": [_record("kyphosis", 0, 20.0, 60, 0.9), _record("kyphosis", 1, 10.0, 60, 0.9)],
        "lordosis": [_record("lordosis", 0, 25.0, 60, 0.9), _record("lordosis", 1, None, 60, 0.9)],
    }
    t = time_to_target(g, s)
    assert t["n_runs"] == 2 and t["n_both"] == 1  # seed 1: the lordosis specialist never got there
    assert t["per_run"][0]["specialists_seconds"] == 45.0 and t["per_run"][1]["specialists_seconds"] is None
    assert t["generalist_median_seconds"] == 30.0 and t["specialists_median_seconds"] == 45.0
    assert t["generalist_faster_runs"] == 1
    assert t["specialists_median_train_seconds"] == 120.0
    assert t["targets"] == {"generalist": 0.85, "kyphosis": 0.9, "lordosis": 0.9}

    study = {"generalist": "generalist", "comparisons": [COMPARISON], "deployment": None, "time_to_target": t}
    text = answer(study, synthetic=True, dataset_desc="phantoms")
    assert "faster" in text and "30 s" in text and "45 s" in text and "0.67x" in text
    assert "in 1 other slot(s) a model never reached its target" in text


def test_time_sentence_when_nobody_reaches_the_target() -> None:
    g = [_record("generalist", 0, None, 100, 0.85)]
    s = {"kyphosis": [_record("kyphosis", 0, None, 60, 0.9)]}
    t = time_to_target(g, s)
    text = answer(
        {"generalist": "generalist", "comparisons": [COMPARISON], "deployment": None, "time_to_target": t},
        synthetic=False,
        dataset_desc="films",
    )
    assert "cannot be compared" in text and "100 s" in text and "60 s" in text
