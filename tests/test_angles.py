"""Angles from landmarks (spinescan.radiograph.angles): the manifest's definitions, named curves,
availability."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spinescan.radiograph import angles as A
from spinescan.radiograph import coronal, vertebrae
from spinescan.radiograph.thresholds import KYPHOSIS_THRESHOLD, SCOLIOSIS_THRESHOLD
from spinescan.synth import generate
from spinescan.synth import geometry as G


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    out = tmp_path_factory.mktemp("angles")
    generate(out, per_class=6, seed=11, size=256, workers=1, progress=False)
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def _rounding_bound(p: np.ndarray, q: np.ndarray) -> float:
    """Largest orientation error (deg) of the line p-q when each coordinate was rounded to 0.01 px."""
    length = float(np.hypot(*(np.asarray(q) - np.asarray(p))))
    return math.degrees(2 * 0.005 * math.sqrt(2) / (length - 0.02))


def test_definitions_are_the_generators() -> None:
    assert G.kyphosis_from_landmarks is A.kyphosis_from_landmarks
    assert G.lordosis_from_landmarks is A.lordosis_from_landmarks
    assert G.max_cobb_from_landmarks is coronal.max_cobb_from_landmarks
    assert tuple(G.LEVELS) == vertebrae.LEVELS


def test_manifest_landmarks_give_manifest_angles(phantoms: list[dict[str, str]]) -> None:
    """Angles measured from the manifest's (rounded) landmarks equal its exact angles, within the
    error that rounding the landmarks to 0.01 px and the angles to 0.001 deg can cause. The
    manifest keeps the landmarks of vertebrae cut off by the field of view, so the geometry is
    measured without the film's bounds here (what the bounds do is tested below)."""
    n = {"ap": 0, "lateral": 0}
    for r in phantoms:
        pts = np.array(json.loads(r["landmarks"]))
        c = pts.reshape(17, 4, 2)
        n[r["view"]] += 1
        if r["view"] == "lateral":
            sac = np.array(json.loads(r["sacrum"]))
            got = A.lateral_angles(pts, sac)
            t4, t12 = vertebrae.T4, vertebrae.T12
            tol_k = _rounding_bound(c[t4, 0], c[t4, 1]) + _rounding_bound(c[t12, 2], c[t12, 3])
            tol_l = _rounding_bound(c[vertebrae.L1, 0], c[vertebrae.L1, 1]) + _rounding_bound(sac[0], sac[1])
            k, lo = got["thoracic_kyphosis_deg"].value, got["lumbar_lordosis_deg"].value
            assert abs(k - float(r["thoracic_kyphosis_deg"])) <= tol_k + 6e-4
            assert abs(lo - float(r["lumbar_lordosis_deg"])) <= tol_l + 6e-4
            assert A.label_from_angles("lateral", got) == (r["label"], None)
        else:
            got = A.ap_angles(pts)
            cobb = got["cobb_deg"]
            (u, _), (lw, _) = cobb.lines
            tol = _rounding_bound(c[u, 0], c[u, 1]) + _rounding_bound(c[lw, 2], c[lw, 3])
            assert abs(cobb.value - float(r["cobb_deg"])) <= tol + 6e-4
            assert cobb.note is None and cobb.reason is None
            regional = [got[k].value for k in ("cobb_pt_deg", "cobb_mt_deg", "cobb_tl_deg")]
            assert all(v is not None and 0.0 <= v <= cobb.value + 1e-9 for v in regional)
            assert max(regional) == pytest.approx(cobb.value, abs=1e-9)
            assert A.label_from_angles("ap", got) == (r["label"], None)
    assert n["ap"] == 12 and n["lateral"] == 18


def _spine(
    tilts_deg: np.ndarray, width: float = 30.0, pitch: float = 40.0, height: float = 28.0
) -> np.ndarray:
    """AASCE corners of 17 rectangular vertebrae whose mid-lines have the given tilts (image coords).

    The centres follow the tilts (each vertebra stacked along its predecessor's normal), so the
    curve is a plausible spine; both endplates of a vertebra share its tilt.
    """
    corners = np.zeros((17, 4, 2))
    centre = np.array([200.0, 50.0])
    for v, t in enumerate(np.radians(tilts_deg)):
        e = np.array([math.cos(t), math.sin(t)])  # along the endplate, towards +x (y down)
        n = np.array([-math.sin(t), math.cos(t)])  # down the spine
        if v:
            centre = centre + pitch * n
        corners[v] = [
            centre - width / 2 * e - height / 2 * n,
            centre + width / 2 * e - height / 2 * n,
            centre - width / 2 * e + height / 2 * n,
            centre + width / 2 * e + height / 2 * n,
        ]
    return corners.reshape(68, 2)


def test_named_curves_follow_their_apex() -> None:
    """A proximal curve of 8 deg, a main thoracic T5-T11 of 40 deg and a lumbar T11-L4 of 25 deg."""
    tilt = np.zeros(17)
    tilt[:4] = 12.0  # T1-T4: a small proximal curve of 8 deg down to T5
    tilt[4] = 20.0  # T5: the upper end vertebra of the main curve
    tilt[5:10] = np.linspace(15.0, -15.0, 5)
    tilt[10] = -20.0  # T11: lower end of the thoracic curve, upper end of the lumbar one
    tilt[11:15] = np.linspace(-12.0, 0.0, 4)
    tilt[15:] = 5.0  # L4, L5
    got = A.ap_angles(_spine(tilt))
    assert got["cobb_deg"].value == pytest.approx(40.0)
    assert got["cobb_mt_deg"].value == pytest.approx(40.0)
    assert got["cobb_mt_deg"].lines == ((4, "superior"), (10, "inferior"))
    assert got["cobb_tl_deg"].value == pytest.approx(25.0)
    assert got["cobb_tl_deg"].lines == ((10, "superior"), (15, "inferior"))
    assert got["cobb_pt_deg"].value == pytest.approx(8.0)
    assert got["cobb_pt_deg"].lines == ((0, "superior"), (4, "inferior"))
    curves = coronal.coronal_curves(_spine(tilt))
    assert [c.upper for c in curves] == sorted(c.upper for c in curves)


def test_manifest_angles_take_the_column_else_measure_the_corners() -> None:
    """The one truth training and ``spinescan val`` score against: a finite manifest column wins,
    an empty, non-numeric or infinite one falls back to the corners, and without corners it is None."""
    assert [A.finite_number(v) for v in ("12.5", 3, "", None, "abc", "inf", "nan", [1])] == [
        12.5, 3.0, None, None, None, None, None, None,
    ]
    tilt = np.zeros(17)
    tilt[8:] = 20.0  # one 20-degree step
    corners = _spine(tilt)
    names = ("cobb_deg", "cobb_mt_deg")
    given = {"cobb_deg": "33.0", "cobb_mt_deg": "inf"}
    got = A.manifest_angles("ap", names, given, corners, None, (900, 400))
    assert got["cobb_deg"] == 33.0  # the manifest's own column
    measured = A.ap_angles(corners, image_size=(900, 400))["cobb_mt_deg"].value
    assert measured == pytest.approx(20.0) and got["cobb_mt_deg"] == pytest.approx(measured)
    none = A.manifest_angles("ap", names, {}, np.full((68, 2), np.nan), None, (900, 400))
    assert none == {"cobb_deg": None, "cobb_mt_deg": None}
    lateral = A.manifest_angles("lateral", ("lumbar_lordosis_deg",), {}, corners, None, (900, 400))
    assert lateral == {"lumbar_lordosis_deg": None}  # no sacrum, no lordosis


def test_straight_spine_measures_zero_and_is_healthy() -> None:
    got = A.ap_angles(_spine(np.full(17, 7.0)))  # tilted film, straight spine
    assert all(got[k].value == pytest.approx(0.0, abs=1e-9) for k in A.AP_ANGLES)
    assert A.label_from_angles("ap", got) == ("healthy", None)
    bent = np.zeros(17)
    bent[8:] = SCOLIOSIS_THRESHOLD  # one 10-degree step: exactly at the SRS threshold
    assert A.label_from_angles("ap", A.ap_angles(_spine(bent)))[0] == "scoliosis"


def test_out_of_frame_vertebrae_give_none_with_a_reason() -> None:
    tilt = np.zeros(17)
    tilt[12:] = 30.0  # a lumbar curve
    pts = _spine(tilt).reshape(17, 4, 2)
    pts[:3] = np.nan  # T1-T3 cut off
    got = A.ap_angles(pts)
    assert got["cobb_pt_deg"].value is None and "T1-T3" in got["cobb_pt_deg"].reason
    assert got["cobb_tl_deg"].value == pytest.approx(30.0)
    assert got["cobb_deg"].value == pytest.approx(30.0) and "lower bound" in got["cobb_deg"].note
    # The same through the film size: a film 300 px tall holds only the upper vertebrae.
    short = A.ap_angles(_spine(tilt), image_size=(300, 600))
    assert short["cobb_tl_deg"].value is None and "L5" in short["cobb_tl_deg"].reason
    straight = _spine(np.zeros(17)).reshape(17, 4, 2)
    straight[:3] = np.nan
    label, why = A.label_from_angles("ap", A.ap_angles(straight))
    assert label == "healthy" and "visible vertebrae only" in why
    none = A.ap_angles(np.full((68, 2), np.nan))
    assert all(a.value is None and a.reason for a in none.values())
    assert A.label_from_angles("ap", none)[0] is None


def test_lateral_angles_need_their_vertebrae() -> None:
    tilt = np.zeros(17)
    tilt[vertebrae.T4] = -25.0
    tilt[vertebrae.T12] = 25.0
    tilt[vertebrae.L1] = 10.0
    pts = _spine(tilt)
    sacrum = np.array([[180.0, 760.0], [220.0, 760.0 - 40.0 * math.tan(math.radians(60.0))]])
    got = A.lateral_angles(pts, sacrum)
    assert got["thoracic_kyphosis_deg"].value == pytest.approx(50.0)
    assert got["lumbar_lordosis_deg"].value == pytest.approx(70.0)
    assert got["thoracic_kyphosis_deg"].value > KYPHOSIS_THRESHOLD
    # both abnormal: no class, and the rule says why
    label, why = A.label_from_angles("lateral", got)
    assert label is None and why.startswith("kyphosis-lordosis posture: hyperkyphosis + hyperlordosis")
    lumbar_only = pts.reshape(17, 4, 2).copy()
    lumbar_only[: vertebrae.L1] = np.nan
    got = A.lateral_angles(lumbar_only, sacrum)
    assert got["thoracic_kyphosis_deg"].value is None and "T4" in got["thoracic_kyphosis_deg"].reason
    assert got["lumbar_lordosis_deg"].value == pytest.approx(70.0)
    assert A.label_from_angles("lateral", got)[0] is None
    no_sacrum = A.lateral_angles(pts, None)
    assert no_sacrum["lumbar_lordosis_deg"].value is None and "S1" in no_sacrum["lumbar_lordosis_deg"].reason
    hidden = A.lateral_angles(pts, sacrum, visible=np.arange(17) != vertebrae.T12)
    assert hidden["thoracic_kyphosis_deg"].value is None and "T12" in hidden["thoracic_kyphosis_deg"].reason


def test_angle_json_names_the_endplates() -> None:
    got = A.ap_angles(_spine(np.linspace(-10, 10, 17)))
    js = got["cobb_deg"].to_json()
    assert js["value"] == pytest.approx(20.0, abs=0.01)
    assert js["lines"] == [["T1", "superior"], ["L5", "inferior"]]


def test_angles_module_stays_light() -> None:
    code = (
        "import sys, spinescan.radiograph.angles; "
        "bad = [m for m in ('tensorflow', 'keras', 'click', 'spinescan.synth') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_wrong_landmark_count_is_refused() -> None:
    with pytest.raises(ValueError, match="68"):
        A.ap_angles(np.zeros((60, 2)))
    assert Path(A.__file__).parent.name == "radiograph"


def test_midline_readout_matches_the_manifest_on_exact_corners(phantoms: list[dict[str, str]]) -> None:
    """The predictor's mid-line reading agrees with the endplate definition on exact landmarks
    (wedged phantom vertebrae make them differ a little, never by much)."""
    gaps = []
    for row in (r for r in phantoms if r["view"] == "ap"):
        lm = np.asarray(json.loads(row["landmarks"]), dtype=np.float64)
        if not np.isfinite(lm).all():
            continue
        size = (int(row["height"]), int(row["width"]))
        mid = A.ap_angles(lm, image_size=size, readout="midlines")["cobb_deg"]
        if mid.note:  # a partial film: compare whole spines only
            continue
        gaps.append(abs(mid.value - float(row["cobb_deg"])))
        assert {side for _, side in mid.lines} == {"mid"}
    assert len(gaps) >= 4
    assert np.mean(gaps) < 1.5 and max(gaps) < 6.0


def test_midline_readout_ignores_a_vertebra_whose_corners_cross() -> None:
    """The failure seen on real films: one vertebra's left corners swap top and bottom. The endplate
    reading jumps by tens of degrees; the mid-line reading does not move."""
    tilts = np.concatenate([np.linspace(0, 12, 9), np.linspace(12, 0, 8)])
    good = _spine(tilts)
    bad = good.reshape(17, 4, 2).copy()
    bad[8, [0, 2]] = bad[8, [2, 0]]  # T9: top-left <-> bottom-left
    for readout, moves in (("endplates", True), ("midlines", False)):
        a = A.ap_angles(good, readout=readout)["cobb_deg"].value
        b = A.ap_angles(bad, readout=readout)["cobb_deg"].value
        assert (abs(a - b) > 10.0) is moves, (readout, a, b)
    assert A.ap_angles(good, readout="midlines")["cobb_deg"].value == pytest.approx(12.0, abs=1.0)
    with pytest.raises(ValueError, match="readout"):
        coronal.cobb_matrix(good, readout="corners")


def test_tilt_smoothing_keeps_a_smooth_spine_and_damps_noise() -> None:
    """A quadratic tilt profile passes through unchanged (Savitzky-Golay keeps quadratics), runs
    shorter than five are left alone, and independent per-vertebra noise shrinks."""
    levels = np.arange(17, dtype=np.float64)
    smooth = 0.3 * (levels - 8.0) ** 2 - 10.0
    np.testing.assert_allclose(coronal.smoothed_tilts(smooth), smooth, atol=1e-9)
    np.testing.assert_allclose(coronal.smoothed_tilts(smooth, 3, 12)[3:13], smooth[3:13], atol=1e-9)
    short = np.random.default_rng(0).normal(size=17)
    np.testing.assert_array_equal(coronal.smoothed_tilts(short, 5, 8), short)
    noise = np.random.default_rng(1).normal(size=(400, 17))
    residual = np.array([coronal.smoothed_tilts(n) for n in noise])
    assert residual[:, 2:15].std() < 0.8 * noise.std()
    angle = A.ap_angles(_spine(smooth), readout="midlines")["cobb_deg"]
    assert len(angle.orientations) == 2 and angle.to_json()["orientations"]


@pytest.mark.parametrize(
    ("kyphosis", "lordosis", "label", "finding"),
    [
        (30.0, 50.0, "healthy", "normal sagittal alignment"),
        (20.0, 40.0, "healthy", "normal sagittal alignment"),  # the lower limits are normal
        (45.0, 65.0, "healthy", "normal sagittal alignment"),  # so are the upper ones
        (50.0, 50.0, "kyphosis", "hyperkyphosis"),
        (30.0, 70.0, "lordosis", "hyperlordosis"),
        (50.0, 70.0, None, "kyphosis-lordosis posture: hyperkyphosis + hyperlordosis"),
        (10.0, 50.0, None, "flat back: hypokyphosis"),
        (30.0, 30.0, None, "flat back: hypolordosis"),
        (10.0, 30.0, None, "flat back: hypokyphosis + hypolordosis"),
        (50.0, 30.0, None, "hyperkyphosis + hypolordosis"),
        (10.0, 70.0, None, "hypokyphosis + hyperlordosis"),
    ],
)
def test_every_lateral_reading_gets_a_label_or_a_named_finding(
    kyphosis: float, lordosis: float, label: str | None, finding: str
) -> None:
    """Issue 24: flat back and the combined case are named findings with their thresholds, so a
    lateral film with both angles never ends with no label and no reason."""
    from spinescan.radiograph.thresholds import lateral_finding, lateral_label

    got = lateral_finding(kyphosis, lordosis)
    assert (got.label, got.finding) == (label, finding)
    assert lateral_label(kyphosis, lordosis) == label  # the synth labels are unchanged
    angles = {
        "thoracic_kyphosis_deg": A.Angle("thoracic_kyphosis_deg", kyphosis),
        "lumbar_lordosis_deg": A.Angle("lumbar_lordosis_deg", lordosis),
    }
    got_label, why = A.label_from_angles("lateral", angles)
    assert got_label == label
    if label is None:
        assert why.startswith(finding + " (")
        assert f"{kyphosis:.1f} deg" in why and f"{lordosis:.1f} deg" in why
    else:
        assert why is None


def test_human_table_shows_the_finding() -> None:
    from spinescan.edge.predictor import format_table

    row = {
        "image": "film.png",
        "model": "sagittal",
        "label": None,
        "label_reason": "flat back: hypolordosis (thoracic kyphosis 30.0 deg: normal 20-45; ...)",
        "measurements": {"thoracic_kyphosis_deg": 30.0, "lumbar_lordosis_deg": 30.0},
    }
    assert "flat back: hypolordosis" in format_table([row])
