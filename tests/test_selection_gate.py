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


def test_the_verdict_says_how_many_films_had_no_reading() -> None:
    """A model that answers almost nothing has a huge MAE (misses count as 0 deg): the message must
    say that the error is missing readings, not a bad measurement."""
    mostly_missing = _assessment(AngleGate("thoracic_kyphosis_deg", 450, 42.8, (41.3, 44.3), 37.9, 11.1, 439))
    assert mostly_missing.weak
    assert "439 of 450 test films not measured, each counted as 0 deg" in mostly_missing.verdict()
    assert "not measured" not in _assessment(AngleGate("cobb_deg", 87, 5.5, (4.6, 6.5), 40.0, 13.8)).verdict()
    assert mostly_missing.to_dict()["angle"]["not_measured"] == 439
