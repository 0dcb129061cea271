"""Where a dataset came from: recorded once, by ``spinescan synth``, and read through one function.

``synth`` writes ``provenance.json`` beside its ``manifest.csv``; everything that needs to know
whether data are synthetic (the benchmark's notes, the model card, phantom pretraining) calls
:func:`read_provenance`. Datasets written before this record existed are recognised by what
``synth`` always wrote: the older ``synth.json`` of a pretraining phantom set, or a manifest with
the generator's ground-truth columns. Nothing is inferred from folder names.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spinescan.atomic import atomic_write_json

PROVENANCE = "provenance.json"
PROVENANCE_SCHEMA = "spinescan.provenance/1"
LEGACY_SYNTH_RECORD = "synth.json"
GENERATOR = "spinescan synth"


@dataclass(frozen=True)
class Provenance:
    """``synthetic`` is the one fact every reader needs; ``settings`` says how it was made."""

    synthetic: bool
    generator: str = ""
    seed: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    source: str = PROVENANCE  # which record this was read from (a legacy one, or none)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("source")
        return {"schema": PROVENANCE_SCHEMA, **out}


UNKNOWN = Provenance(synthetic=False, source="none")


def write_provenance(root: str | Path, provenance: Provenance) -> Path:
    return atomic_write_json(Path(root) / PROVENANCE, provenance.to_dict())


def synthetic_provenance(seed: int, **settings: Any) -> Provenance:
    """What ``spinescan synth`` records about a set it wrote."""
    return Provenance(synthetic=True, generator=GENERATOR, seed=int(seed), settings=settings)


def read_provenance(root: str | Path) -> Provenance:
    """The dataset's provenance; :data:`UNKNOWN` (not synthetic) when nothing was recorded."""
    root = Path(root)
    doc = _read(root / PROVENANCE)
    if doc is not None and doc.get("schema") == PROVENANCE_SCHEMA:
        return Provenance(
            synthetic=bool(doc.get("synthetic")),
            generator=str(doc.get("generator", "")),
            seed=doc.get("seed"),
            settings=dict(doc.get("settings") or {}),
        )
    legacy = _read(root / LEGACY_SYNTH_RECORD)
    if legacy is not None:
        return Provenance(True, GENERATOR, legacy.get("seed"), legacy, source=LEGACY_SYNTH_RECORD)
    if _manifest_has_ground_truth(root):
        return Provenance(True, GENERATOR, None, {}, source="manifest.csv")
    return UNKNOWN


def _read(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def _manifest_has_ground_truth(root: Path) -> bool:
    """A manifest with the phantom generator's own columns (sets written before the record).

    Landmarks and a Cobb angle alone no longer say "phantom": real annotated films carry them too
    (aasce-train: expert corners and the challenge's angles, AP only); the generator always wrote
    both views' angles, so a sagittal angle beside them does."""
    try:
        with open(root / "manifest.csv", encoding="utf-8") as fh:
            columns = {c.strip() for c in fh.readline().split(",")}
    except OSError:
        return False
    return {"landmarks", "cobb_deg", "thoracic_kyphosis_deg"} <= columns
