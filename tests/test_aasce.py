"""The AASCE challenge's three angles (spinescan.radiograph.aasce), their place among a model's AP
measurements, and the field's figures (SMAPE, largest-Cobb MAE, corners off, sensitivity /
specificity) in spinescan.metrics and spinescan.evaluation.aasce."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from spinescan import metrics as m
from spinescan.errors import DataError
from spinescan.evaluation.aasce import score_aasce
from spinescan.radiograph import aasce as X
from spinescan.radiograph import angles as A
from spinescan.radiograph import coronal, vertebrae

#: Mid-line tilts (deg) with interior extremes: +10 at T4 (U = 3) and -20 at L2 (L = 13).
TILTS = np.array([2, 4, 7, 10, 8, 5, 1, -3, -7, -11, -15, -18, -19, -20, -14, -9, -5], dtype=np.float64)


def _spine(xs: np.ndarray, tilts: np.ndarray = TILTS, top: float = 40.0, pitch: float = 40.0) -> np.ndarray:
    """68 AASCE corners: vertebra v centred at (xs[v], top + pitch * v), 40 x 20 px, its mid-line
    (and both endplates) tilted by tilts[v] degrees (image coordinates, y down)."""
    out = np.zeros((17, 4, 2))
    for v, t in enumerate(np.radians(tilts)):
        e = np.array([math.cos(t), math.sin(t)]) * 20.0
        n = np.array([-math.sin(t), math.cos(t)]) * 10.0
        c = np.array([xs[v], top + pitch * v])
        out[v] = [c - e - n, c + e - n, c - e + n, c + e + n]
    return out.reshape(68, 2)


def _diff(i: int, j: int, tilts: np.ndarray = TILTS) -> float:
    return abs(float(tilts[i] - tilts[j]))


V = np.arange(17)
C_SHAPE = 200 + 80 * np.sin(np.pi * (V + 0.5) / 17)  # one-sided: every point on one side of its chord
S_SHAPE = 200 + 40 * np.sin(2 * np.pi * V / 16)  # crosses its chord


def test_c_shape_angle_2_and_3_run_to_t1_and_l5() -> None:
    got = X.aasce_angles(_spine(C_SHAPE, -TILTS), film_height=1000)  # tilts that follow the bulge
    assert got.rule == "C"
    assert got.pairs == ((3, 13), (0, 3), (13, 16))
    assert got.values() == pytest.approx((_diff(3, 13), _diff(0, 3), _diff(13, 16)), abs=1e-9)


def test_s_shape_in_the_upper_half_looks_above_u_and_below_l() -> None:
    tilts = TILTS.copy()
    tilts[15] = -2.0  # the largest angle below L (L2) is then L4's, not L5's
    got = X.aasce_angles(_spine(S_SHAPE, tilts), film_height=2000)  # U, L bottoms at ~180 and ~580 px
    assert got.rule == "S upper"
    assert got.pairs == ((3, 13), (0, 3), (13, 15))
    assert got.values() == pytest.approx((_diff(3, 13, tilts), _diff(0, 3, tilts), 18.0), abs=1e-9)


def test_s_shape_in_the_lower_half_takes_angle_3_above_angle_2s_end() -> None:
    tilts = TILTS.copy()
    tilts[0] = 6.0  # angle 2: U (T4, +10) against T2 (4 deg) -> K = T2; angle 3: T2 against T1 or T2
    tilts[1] = -4.0
    got = X.aasce_angles(_spine(S_SHAPE, tilts), film_height=600)  # U, L bottoms average > 300 px
    assert got.rule == "S lower"
    assert got.pairs == ((3, 13), (1, 3), (0, 1))
    assert got.values() == pytest.approx((_diff(3, 13, tilts), 14.0, 10.0), abs=1e-9)


def test_first_row_wins_ties_and_the_matrix_is_exactly_symmetric() -> None:
    """The script takes the first row (upper vertebra) of the largest angle; a matrix that is not
    exactly symmetric in floating point would let a later row win by one ulp (U below L)."""
    v = X.midline_vectors(_spine(S_SHAPE, np.linspace(-13.7, 21.3, 17) ** 2 / 20))
    a = X.angle_matrix(v)
    assert np.array_equal(a, a.T) and not np.diag(a).any()
    got = X.aasce_angles(_spine(C_SHAPE, np.r_[0.0, 15.0, np.zeros(13), 15.0, 0.0]), 1000)
    assert got.pairs[0] == (0, 1)  # 15 deg four ways: (T1, T2) is the first


def test_straight_and_vertical_spine_is_a_c_with_zero_angles() -> None:
    """A vertical chord (first and last x equal) divides by zero in the script's formula; the cross
    product form stays defined, and floating-point noise does not make a straight spine an S."""
    got = X.aasce_angles(_spine(np.full(17, 200.0), np.zeros(17)), film_height=None)
    assert got.rule == "C" and got.values() == (0.0, 0.0, 0.0)
    r = np.radians(7.0)  # the same spine, the film turned by 7 degrees
    tilted = _spine(np.full(17, 200.0), np.zeros(17)) @ np.array(
        [[np.cos(r), np.sin(r)], [-np.sin(r), np.cos(r)]]
    )
    got = X.aasce_angles(tilted, None)
    assert got.rule == "C" and got.values() == pytest.approx((0.0, 0.0, 0.0), abs=1e-9)


def test_directed_mid_lines_may_exceed_90_degrees() -> None:
    """The script measures directed mid-lines (left side to right side): 50 and -45 deg are 95 apart
    (two columns of aasce-train exceed 90), which a direction-free orientation would fold to 85."""
    tilts = np.zeros(17)
    tilts[4], tilts[12] = 50.0, -45.0
    assert X.aasce_angles(_spine(C_SHAPE, tilts), 1000).a1 == pytest.approx(95.0)


def test_the_rule_needs_every_corner() -> None:
    lm = _spine(C_SHAPE)
    lm[7] = np.nan
    with pytest.raises(ValueError, match="all 68"):
        X.aasce_angles(lm, 1000)
    with pytest.raises(ValueError, match="68 landmarks"):
        X.aasce_angles(np.zeros((60, 2)), 1000)


def test_ap_angles_reports_the_three_with_reasons() -> None:
    lm = _spine(S_SHAPE)
    got = A.ap_angles(lm, image_size=(2000, 400))
    rule = X.aasce_angles(lm, 2000)
    assert [got[n].value for n in X.AASCE_ANGLES] == list(rule.values())
    assert got["aasce_a1_deg"].lines == ((3, "mid"), (13, "mid"))
    # a vertebra off the film: null with the reason, never a guess
    off = A.ap_angles(lm, image_size=(600, 400))  # L3 (centred at 600 px) and below are cut off
    assert all(off[n].value is None for n in X.AASCE_ANGLES)
    assert off["aasce_a1_deg"].reason == "L3-L5 not visible (the AASCE angles need T1-L5)"
    # an S shape needs the film height for angles 2 and 3; angle 1 does not
    no_size = A.ap_angles(lm)
    assert no_size["aasce_a1_deg"].value == pytest.approx(rule.a1)
    assert no_size["aasce_a2_deg"].value is None and "film height" in no_size["aasce_a3_deg"].reason


def test_model_reading_uses_the_smoothed_mid_lines() -> None:
    """readout="midlines" (a model's reading) puts the smoothed tilts through the same rule, and
    angle 1 is then the reported largest Cobb angle."""
    rng = np.random.default_rng(3)
    lm = _spine(S_SHAPE, TILTS + rng.normal(0, 3, 17))
    got = A.ap_angles(lm, image_size=(2000, 400), readout=coronal.PREDICTION_READOUT)
    tilts = coronal.smoothed_tilts(vertebrae.midline_tilts(lm))
    want = X.aasce_angles(lm, 2000, tilts=tilts)
    assert [got[n].value for n in X.AASCE_ANGLES] == pytest.approx(list(want.values()), abs=1e-12)
    assert got["aasce_a1_deg"].value == pytest.approx(got["cobb_deg"].value, abs=1e-9)
    assert got["aasce_a1_deg"].orientations == (tilts[want.pairs[0][0]], tilts[want.pairs[0][1]])
    raw = A.ap_angles(lm, image_size=(2000, 400))["aasce_a1_deg"].value
    assert raw != pytest.approx(got["aasce_a1_deg"].value, abs=0.1)  # the smoothing does change it


def test_cobb_plugin_measures_them() -> None:
    from spinescan.zoo.registry import get_spec

    assert set(X.AASCE_ANGLES) <= set(get_spec("cobb").measurements)


# -- metrics ---------------------------------------------------------------------------------------


def test_film_smape_is_the_challenges_and_missing_counts_as_zero() -> None:
    true = np.array([[10.0, 10.0, 0.0]] * 3 + [[np.nan, 1.0, 1.0]])
    pred = np.array([[10.0, 5.0, 5.0], [np.nan, 5.0, 5.0], [10.0, 10.0, 0.0], [1.0, 1.0, 1.0]])
    per_film = m.film_smape(pred, true)
    assert per_film[:3] == pytest.approx([100 * 10 / 40, 100 * 20 / 30, 0.0])
    assert np.isnan(per_film[3])  # true angle unknown: not scored
    assert m.smape(pred, true) == pytest.approx((25.0 + 200 / 3) / 3)
    assert m.film_smape(np.zeros((1, 3)), np.zeros((1, 3)))[0] == 0.0


def test_corner_figures_count_missing_corners_as_off() -> None:
    true = np.zeros((68, 2))
    pred = true.copy()
    pred[0] = (0.0, 3.0)  # 3% of a 100 px film: off
    pred[1] = (0.0, 1.5)  # 1.5%: not off
    pred[2] = np.nan
    err, far, known = m.corner_figures(pred, true, 100.0)
    assert (far, known) == (2, 68)
    assert err == pytest.approx(4.5 / 67 / 100)


def _rows(n: int = 6) -> tuple[list[dict[str, str]], list[np.ndarray]]:
    rows, lms = [], []
    for k in range(n):
        tilts = TILTS * (0.2 + 0.3 * k)  # largest Cobb 6 deg (healthy) to 45 deg
        lm = _spine(S_SHAPE, tilts) if k % 2 else _spine(C_SHAPE, -tilts)
        a = X.aasce_angles(lm, 1000)
        rows.append(
            {
                "file": f"f{k}.png",
                "patient_id": f"p{k // 2}",
                "width": "400",
                "height": "1000",
                "landmarks": json.dumps(lm.tolist()),
                **({n: f"{v:.3f}" for n, v in zip(X.AASCE_ANGLES, a.values(), strict=True)} if k % 3 else {}),
            }
        )
        lms.append(lm)
    return rows, lms


def test_score_aasce_expert_against_itself_is_perfect() -> None:
    rows, lms = _rows()
    s = score_aasce(lms, rows, smoothed=False, n_boot=50)
    assert (s.n_films, s.n_patients, s.n_unmeasured) == (6, 3, 0)
    assert s.smape == pytest.approx(0.0, abs=0.01)  # columns rounded to 0.001 deg
    assert s.largest_cobb_mae == pytest.approx(0.0, abs=1e-3)
    assert (s.landmark_error, s.corners_far, s.sensitivity, s.specificity) == (0.0, 0.0, 1.0, 1.0)
    assert s.smape_ci[0] <= s.smape <= s.smape_ci[1]
    d = s.to_dict()
    assert "films" not in d and d["smape_ci"] == list(s.smape_ci)
    json.dumps(d)


def test_score_aasce_counts_errors_and_missing_vertebrae() -> None:
    rows, lms = _rows()
    pred = [lm.copy() for lm in lms]
    pred[0][5] += (0.0, 30.0)  # 3% of the film height: one corner off
    pred[5][64:68] = np.nan  # L5 not found: its film's angles count as 0
    s = score_aasce(pred, rows, smoothed=False, n_boot=50)
    assert s.n_unmeasured == 1
    assert s.corners_far == pytest.approx(5 / (6 * 68))
    assert s.smape >= 100 / 6  # the film without angles scores 100%
    # L5 missing: the largest angle falls back to the model's cobb_deg over T1-L4 (a lower bound)
    assert s.sensitivity == 1.0 and 0 < s.largest_cobb_mae < 45 / 6
    assert s.landmark_error == pytest.approx(30 / 68 / 1000 / 6)
    assert all(lo <= hi for lo, hi in (s.smape_ci, s.corners_far_ci, s.largest_cobb_mae_ci))
    assert score_aasce(pred, rows, n_boot=50, seed=1) == score_aasce(pred, rows, n_boot=50, seed=1)


def test_score_aasce_refuses_bad_input_with_one_line() -> None:
    rows, lms = _rows(2)
    with pytest.raises(DataError, match="1 predictions for 2"):
        score_aasce(lms[:1], rows)
    with pytest.raises(DataError, match="need 68 landmarks"):
        score_aasce([np.zeros((10, 2)), lms[1]], rows)
    bad = [dict(rows[0], height=""), rows[1]]
    with pytest.raises(DataError, match="height and width"):
        score_aasce(lms, bad)
    with pytest.raises(DataError, match="not a list"):
        score_aasce(lms, [dict(rows[0], landmarks="[[1, 2], 3"), rows[1]])


def test_landmark_summary_reports_the_fields_figures() -> None:
    _, lms = _rows(4)
    reads = [A.ap_angles(lm, image_size=(1000, 400)) for lm in lms]
    pred = [{n: r[n].value for n in A.AP_ANGLES} for r in reads]
    true = [dict(p) for p in pred]
    pred[0]["aasce_a2_deg"] = None
    out = m.landmark_summary(
        lms, lms, [1000] * 4, pred, true, ["healthy"] * 4, ["healthy"] * 4,
        smape_angles=X.AASCE_ANGLES, largest="cobb_deg",
    )  # fmt: skip
    a1, a2, a3 = (true[0][n] for n in X.AASCE_ANGLES)
    assert out["smape"] == pytest.approx(100 * a2 / (2 * a1 + a2 + 2 * a3) / 4)  # film 0 only
    figures = ("largest_cobb_mae", "corners_far", "sensitivity", "specificity")
    assert tuple(out[k] for k in figures) == (0, 0, 1, 1)
    assert out["smape_films"] == 4


# -- the real expert landmarks -----------------------------------------------------------------------


@pytest.mark.real
def test_rule_reproduces_the_aasce_train_columns(real_dir) -> None:
    path = real_dir / "aasce-train" / "manifest.csv"
    if not path.is_file():
        pytest.skip("aasce-train is not available")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    experts = [np.array(json.loads(r["landmarks"])) for r in rows]
    got = np.array(
        [X.aasce_angles(lm, float(r["height"])).values() for lm, r in zip(experts, rows, strict=True)]
    )
    want = np.array([[float(r[n]) for n in X.AASCE_ANGLES] for r in rows])
    err = np.abs(got - want)
    assert err.mean() <= 0.03 and err.mean(axis=0).max() <= 0.03, err.mean(axis=0)
    assert err.max() < 0.1  # no film takes another branch of the rule
    self_score = score_aasce(experts, rows, smoothed=False, n_boot=20)
    # ~0: the rounding above, plus one film whose L4-L5 corners the expert put below the film's
    # edge (the read-out does not measure a vertebra off the film: its angles count as 0, 100%).
    assert self_score.n_unmeasured <= 1 and self_score.smape <= 100 / len(rows) + 0.05


def test_model_card_quotes_the_fields_figures() -> None:
    from spinescan.export.modelcard import _landmark_table

    part = {"n": 9, "landmark_error": 0.03, "corners_far": 0.25, "smape": 12.5, "sensitivity": 0.9,
            "specificity": 0.75, "label_accuracy": 0.8, "smape_angles": list(X.AASCE_ANGLES),
            "angles": {"cobb_deg": {"mae": 4.0}}}  # fmt: skip
    rows = _landmark_table({"val": part, "test": part})
    assert "corners > 2% off" in rows[0] and "sensitivity | specificity" in rows[0]
    assert rows[2] == "| val | 9 | 0.030 | 0.250 | 4.000 | 12.500 | 0.900 | 0.750 | 0.800 |"
    assert rows[0].count("|") == rows[2].count("|") == rows[1].count("|")
    assert "aasce_a1_deg, aasce_a2_deg, aasce_a3_deg" in rows[-1]


def test_landmark_benchmark_carries_the_fields_figures_over_seeds() -> None:
    from spinescan.evaluation.landmark_study import seed_figures

    runs = [{"test": {"n": 5, "angles": {}, "corners_far": v, "sensitivity": 1.0}} for v in (0.1, 0.3)]
    got = seed_figures(runs)
    assert got["corners_far"]["mean"] == pytest.approx(0.2) and got["corners_far"]["n_seeds"] == 2
    assert got["largest_cobb_mae"]["n_seeds"] == 0  # a run scored before the figure existed


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_page_port_matches_python(tmp_path) -> None:
    """web/src/landmarks.js gives the AASCE angles, reasons and lines of ap_angles on spines that
    take every branch (seconds, without a browser or a model; tests/test_web.py checks the page)."""
    from test_web import _landmark_cases

    cases = [(c, hw) for c, _, hw in _landmark_cases(120)]
    cases.append((_spine(S_SHAPE), (600, 400)))  # L3-L5 off the film
    payload = [[[None if not np.isfinite(p).all() else p.tolist() for p in c], list(hw)] for c, hw in cases]
    (tmp_path / "cases.json").write_text(json.dumps(payload))
    from spinescan.export.webpage import READOUT_FILE, readout_module

    # the page's sources beside the readout.js the export generates (landmarks.js imports it)
    page_dir = tmp_path / "web"
    shutil.copytree(Path(__file__).resolve().parents[1] / "web" / "src", page_dir)
    (page_dir / READOUT_FILE).write_text(readout_module(), encoding="utf-8")
    module = (page_dir / "landmarks.js").as_uri()
    script = tmp_path / "run.mjs"
    script.write_text(
        f'import {{ apAngles }} from "{module}";\nimport fs from "fs";\n'
        f'const cases = JSON.parse(fs.readFileSync("{tmp_path / "cases.json"}"));\n'
        'const out = cases.map(([p, hw]) => ["endplates", "midlines"].map((r) => apAngles(p, hw, r)));\n'
        "out.push(apAngles(cases[0][0], null));\n"
        "process.stdout.write(JSON.stringify(out));\n"
    )
    got = json.loads(subprocess.run(["node", str(script)], capture_output=True, check=True, text=True).stdout)
    want = [[A.ap_angles(c, hw, readout=r) for r in ("endplates", "midlines")] for c, hw in cases]
    want.append(A.ap_angles(cases[0][0]))
    worst, rules = 0.0, set()
    for page_views, py_views in zip([*got[:-1], [got[-1]]], [*want[:-1], [want[-1]]], strict=True):
        for page, py in zip(page_views, py_views, strict=True):
            assert list(page) == list(py)
            for name in X.AASCE_ANGLES:
                a, b = py[name], page[name]
                assert (b["value"] is None, b["reason"]) == (a.value is None, a.reason), name
                assert b["lines"] == [[v, side] for v, side in a.lines], name
                assert len(b.get("orientations", [])) == len(a.orientations)
                if a.value is not None:
                    worst = max(worst, abs(a.value - b["value"]))
    for c, hw in cases:
        if np.isfinite(c).all() and vertebrae.visible_vertebrae(c, hw).all():
            rules.add(X.aasce_angles(c, hw[0]).rule)
    assert worst <= 1e-9 and rules == {"C", "S upper", "S lower"}
