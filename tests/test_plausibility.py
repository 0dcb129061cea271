"""The implausibility flag of a landmark reading (spinescan.radiograph.plausibility) and what it does to
the read-out: a severe flag nulls every angle and the label, with the reason, in the predictor's
JSON (the page's port is compared in tests/test_web.py)."""

from __future__ import annotations

import numpy as np
import pytest

from spinescan.radiograph.landmark_codec import encode
from spinescan.radiograph.measure import read_landmarks
from spinescan.radiograph.plausibility import Plausibility, assess_landmarks
from spinescan.radiograph.preprocess import Placement

HW = (600, 240)


def _spine(tilt_step: float = 0.0) -> np.ndarray:
    """68 corners of an upright spine (vertebrae 24 px high, 40 wide, 8 px discs) in a 600 x 240 film."""
    corners = []
    for k in range(17):
        cx, cy = 120.0 + 10 * np.sin(k / 3), 40.0 + 32.0 * k
        t = np.radians(tilt_step * k)
        for dx, dy in ((-20, -12), (20, -12), (-20, 12), (20, 12)):
            corners.append((cx + dx * np.cos(t) - dy * np.sin(t), cy + dx * np.sin(t) + dy * np.cos(t)))
    return np.array(corners)


def test_an_anatomical_spine_is_plausible() -> None:
    assert assess_landmarks(_spine(), None, HW) == Plausibility("ok", ())
    missing = _spine()
    missing[8:16] = np.nan  # vertebrae the model called not visible are missing, not implausible
    assert assess_landmarks(missing, None, HW).severity == "ok"


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda c: c.reshape(17, 4, 2).__setitem__(slice(None), c.reshape(17, 4, 2)[:, :1]), "collapsed"),
        (lambda c: c.__setitem__(slice(None), c.reshape(17, 4, 2)[::-1].reshape(68, 2)), "out of order"),
        (lambda c: c.__setitem__((slice(None), 1), c[:, 1] * 0.15), "far from anatomy"),
        (lambda c: c.__setitem__((slice(None), 0), c[:, 0] + 400), "off the film"),
    ],
    ids=["collapsed", "upside-down", "squashed", "off-film"],
)
def test_nonsense_readings_are_severe(damage, words: str) -> None:
    c = _spine()
    damage(c)
    p = assess_landmarks(c, None, HW)
    assert p.severe, p
    assert any(words in r for r in p.reasons), p.reasons
    assert p.reason().startswith("implausible landmarks: ")


def test_one_odd_vertebra_is_a_warning_not_severe() -> None:
    c = _spine().reshape(17, 4, 2)
    c[5] = c[5][:1]  # one collapsed vertebra
    p = assess_landmarks(c.reshape(68, 2), None, HW)
    assert p.severity == "warning" and p.reasons == (
        "1 of 17 vertebrae collapsed (two corners closer than a tenth of the width)",
    )


def _output(points: np.ndarray, placement: Placement, input_hw: tuple[int, int]) -> np.ndarray:
    t = encode(points, None, placement, input_hw)
    return np.concatenate([t.coords, np.where(t.visible, 10.0, -10.0)[:, None]], axis=1)


def test_read_landmarks_nulls_angles_and_label_when_severe() -> None:
    """A severe flag: every angle None with the reason, no label, the flag in the reading; a
    plausible reading of the same film keeps its angles and label."""
    placement = Placement(0, 0, HW[0], HW[1], HW[0], HW[1], 0, 0)
    good = read_landmarks(_output(_spine(2.0), placement, HW), placement, "ap", HW, HW)
    assert good["plausibility"].severity == "ok"
    assert good["angles"]["cobb_deg"].value is not None and good["label"] is not None
    upside_down = _spine(2.0).reshape(17, 4, 2)[::-1].reshape(68, 2)
    bad = read_landmarks(_output(upside_down, placement, HW), placement, "ap", HW, HW)
    assert bad["plausibility"].severe
    assert bad["label"] is None and bad["label_reason"] == bad["plausibility"].reason()
    assert all(a.value is None and a.reason == bad["label_reason"] for a in bad["angles"].values())
    lateral = read_landmarks(_output(upside_down, placement, HW), placement, "lateral", HW, HW)
    assert lateral["label"] is None and set(lateral["angles"]) == {
        "thoracic_kyphosis_deg",
        "lumbar_lordosis_deg",
    }
    assert all(a.value is None for a in lateral["angles"].values())


def test_the_table_shows_the_flag() -> None:
    from spinescan.edge.predictor import format_table

    entry = {
        "image": "film.png",
        "model": "cobb",
        "task": "landmarks",
        "label": None,
        "measurements": {"cobb_deg": None},
        "plausibility": {
            "severity": "severe",
            "reasons": ["2 neighbouring vertebrae out of order top to bottom"],
        },
    }
    assert "[severe: 2 neighbouring vertebrae out of order top to bottom]" in format_table([entry])
