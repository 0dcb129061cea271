"""Provenance is recorded once, by synth, and read through one function."""

from __future__ import annotations

import json
from pathlib import Path

from spinescan.data.provenance import PROVENANCE, Provenance, read_provenance, write_provenance
from spinescan.progress import QUIET, Plain, as_progress


def test_synth_records_provenance(phantom_dir: Path) -> None:
    doc = json.loads((phantom_dir / PROVENANCE).read_text())
    assert doc["schema"] == "spinescan.provenance/1" and doc["synthetic"] is True
    made = read_provenance(phantom_dir)
    assert made.synthetic and made.seed == 0 and made.settings["per_class"] == 40
    assert made.settings["views"] == ["lateral", "ap"]


def test_unrecorded_data_is_not_called_synthetic_by_its_name(tmp_path: Path) -> None:
    folder = tmp_path / "phantoms-but-real"  # a name is not evidence
    (folder / "healthy").mkdir(parents=True)
    assert not read_provenance(folder).synthetic
    (folder / "manifest.csv").write_text(  # a set synth wrote before the record: both views' angles
        "file,label,thoracic_kyphosis_deg,lumbar_lordosis_deg,landmarks,cobb_deg\n"
    )
    assert read_provenance(folder).synthetic and read_provenance(folder).source == "manifest.csv"
    write_provenance(folder, Provenance(synthetic=False, generator="scanner export"))
    assert not read_provenance(folder).synthetic  # the record wins


def test_progress_defaults_to_quiet(capsys) -> None:
    QUIET.info("nothing")
    with QUIET.bar(3, "x") as advance:
        advance(1)
    assert capsys.readouterr().err == ""
    assert as_progress(False) is QUIET and isinstance(as_progress(True), Plain)
    as_progress(True).info("shown")
    assert capsys.readouterr().err == "shown\n"


def test_a_real_landmark_manifest_is_not_taken_for_phantoms(tmp_path: Path) -> None:
    """Expert landmarks and Cobb angles (aasce-train's columns) do not make a set synthetic; the
    generator's own columns in a set written before the provenance record still do."""
    from spinescan.data.provenance import read_provenance

    real = tmp_path / "real"
    real.mkdir()
    (real / "manifest.csv").write_text(
        "file,view,label,patient_id,aasce_a1_deg,aasce_a2_deg,aasce_a3_deg,cobb_deg,width,height,landmarks\n"
    )
    assert read_provenance(real).synthetic is False
    old = tmp_path / "old-phantoms"
    old.mkdir()
    (old / "manifest.csv").write_text(
        "file,view,label,patient_id,thoracic_kyphosis_deg,lumbar_lordosis_deg,cobb_deg,landmarks\n"
    )
    assert read_provenance(old).synthetic is True
