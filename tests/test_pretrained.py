"""The models bundled with the package (spinescan/pretrained/, rebuilt by `make models`): every file
is the one its manifest lists (sha256), still computes the output the export recorded for it
(the parity sample), and the set stays within its size budget. Runs without ../shared: the bundled
models are in the repository."""

from __future__ import annotations

import pytest

from spinescan.edge.manifest import manifest_files, read_manifest, sha256_file
from spinescan.edge.model_files import BUNDLED_DIR
from spinescan.edge.onnxmodel import OnnxModel
from spinescan.edge.parity_sample import check_parity_sample
from spinescan.export.bundle import MAX_BUNDLE_BYTES

MANIFEST = read_manifest(BUNDLED_DIR)
ENTRIES = sorted((MANIFEST or {"models": {}})["models"].items())


def test_the_package_ships_a_bundled_set() -> None:
    assert MANIFEST is not None and ENTRIES, f"no bundled models in {BUNDLED_DIR} (make models)"
    total = sum((BUNDLED_DIR / f).stat().st_size for _, e in ENTRIES for f in manifest_files(e))
    assert total <= MAX_BUNDLE_BYTES


@pytest.mark.parametrize(("name", "entry"), ENTRIES, ids=[n for n, _ in ENTRIES])
def test_bundled_model_matches_its_manifest_and_parity_sample(name: str, entry: dict) -> None:
    files = manifest_files(entry)
    assert set(files) <= set(entry["parity_sample"]), f"{name}: a file without a recorded parity sample"
    for fname, digest in files.items():
        assert sha256_file(BUNDLED_DIR / fname) == digest, f"{fname}: sha256 differs from the manifest"
        model = OnnxModel(BUNDLED_DIR / fname)  # the predictor's own checks (metadata, manifest)
        assert model.name == name and bool(model.info.weak) == bool(entry.get("weak"))
        # the bundled manifests predate the model document: read through the loose keys, or,
        # once rebuilt, through the document the manifest copies (issue 23 #2)
        assert (model.info.document is None) == ("document" not in entry)
        check_parity_sample(model, entry["parity_sample"][fname])
    assert (BUNDLED_DIR / entry["card"]).is_file()
    assert entry["recipe"] == f"scripts/build_models.sh {name}"
