"""The export gate for landmark models: their headline angle against the best constant guess."""

from __future__ import annotations

from pathlib import Path

from spinescan.export.selection import AngleGate, Assessment


def _assessment(angle: AngleGate | None) -> Assessment:
    # a clinic's films: 84 of 87 scoliosis, so the derived label cannot clear chance
    return Assessment(
        "cobb", Path("run"), 87, 0.977, (0.943, 1.0), 0.966, 0.966, "geometry", "computed", angle
    )


def test_a_landmark_model_that_reads_the_angle_passes_although_its_label_cannot_beat_chance() -> None:
    assert _assessment(None).weak  # the label rule alone refuses it
    good = _assessment(AngleGate("cobb_deg", 87, 5.5, (4.6, 6.5), 40.0, 13.8))
    assert not good.weak
    assert "reads the angle better than a constant guess" in good.verdict()


def test_a_landmark_model_no_better_than_a_constant_guess_is_weak() -> None:
    bad = _assessment(AngleGate("cobb_deg", 87, 13.0, (11.5, 14.6), 40.0, 13.8))
    assert bad.weak
    assert bad.verdict().startswith("WEAK MODEL") and "constant guess 40.0 deg" in bad.verdict()
