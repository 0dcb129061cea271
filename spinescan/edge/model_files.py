"""Finding exported models on disk: which folder (``--models``, ``./exported``, the bundled set),
which files in it, and a model given by name.

Light island (no TensorFlow). The manifest, when there is one, says which files make the set
(:mod:`spinescan.edge.manifest`); each call resolves the export version once, so a publish
switching ``current`` meanwhile cannot pair one version's manifest with another's models.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from spinescan.edge.manifest import MANIFEST_NAME, export_version, read_manifest
from spinescan.errors import ModelRefusedError

DEFAULT_MODELS_DIR = "exported"

# What to run when there is nothing to load yet (one line, said wherever models are missing).
EXPORT_HINT = "make them with `spinescan train generalist` then `spinescan export --onnx` (writes exported/)"


def model_paths(models_dir: str | os.PathLike[str], int8: bool = False) -> list[Path]:
    """The model files of an export folder: those its manifest lists (the int8 file where one
    was shipped and ``int8`` is asked for), else every ``*.onnx`` that is not an int8 copy.

    The paths are inside the one export version resolved here (:func:`export_version`), not
    through ``current``: a publish switching ``current`` after this call cannot make a listed file
    vanish or be paired with the other version's manifest."""
    folder = Path(models_dir)
    if not folder.is_dir():
        raise ModelRefusedError(f"models folder not found: {folder}; {EXPORT_HINT}")
    version = export_version(folder)
    manifest = read_manifest(version)
    if manifest is None:
        paths = sorted(p for p in folder.glob("*.onnx") if not p.name.endswith(".int8.onnx"))
    else:
        paths = []
        for entry in manifest["models"].values():
            chosen = entry["file"]
            if int8 and (entry.get("int8") or {}).get("shipped"):
                chosen = entry["int8"]["file"]
            paths.append(version / chosen)
    if not paths:
        raise ModelRefusedError(f"no ONNX models in {folder}; {EXPORT_HINT}")
    return paths


def resolve_model(model: str | os.PathLike[str], models_dir: str | os.PathLike[str] | None = None) -> Path:
    """A model given as a file path, or as a name looked up in ``models_dir`` (manifest first)."""
    as_path = Path(model)
    if as_path.suffix == ".onnx" or as_path.is_file():
        return as_path
    folder = Path(models_dir) if models_dir else choose_models_dir().folder
    version = export_version(folder)  # once: the manifest and the model come from one version
    manifest = read_manifest(version)
    if manifest is not None:
        entry = manifest["models"].get(str(model))
        if entry is None:
            known = ", ".join(sorted(manifest["models"])) or "none"
            raise ModelRefusedError(f"no exported model {str(model)!r} in {folder} (exported: {known})")
        return version / entry["file"]
    if not (folder / f"{model}.onnx").is_file():
        raise ModelRefusedError(
            f"no exported model {str(model)!r} in {folder}: train and export it first "
            f"(`spinescan train {model}` then `spinescan export --onnx --out {folder}`)"
        )
    return folder / f"{model}.onnx"


#: The export set installed with the package (``spinescan/pretrained/``: manifest, ONNX files, cards),
#: used when neither ``--models`` nor ``./exported/`` gives models. Rebuilt by ``make models``.
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "pretrained"


def has_models(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds an export (a manifest or ONNX files), not just a README."""
    folder = Path(folder)
    return folder.is_dir() and ((folder / MANIFEST_NAME).exists() or any(folder.glob("*.onnx")))


@dataclass(frozen=True)
class ModelSource:
    """Which export folder a predictor call uses, and how to name it to the user."""

    folder: Path
    label: str  # "--models DIR" | "./exported" | "bundled set"

    def describe(self) -> str:
        where = "" if self.label.startswith("--models") else f" ({self.folder})"
        return f"models: {self.label}{where}"


def choose_models_dir(models_dir: str | os.PathLike[str] | None = None) -> ModelSource:
    """``models_dir`` when given; else ``./exported/`` when it holds an export; else the bundled set.

    What the user exported always wins over what was installed; the bundled set is the fallback
    that makes ``spinescan-predict film.png`` work on a fresh install with no training.
    """
    if models_dir is not None:
        return ModelSource(Path(models_dir), f"--models {models_dir}")
    if has_models(DEFAULT_MODELS_DIR) or not has_models(BUNDLED_DIR):
        return ModelSource(Path(DEFAULT_MODELS_DIR), f"./{DEFAULT_MODELS_DIR}")
    return ModelSource(BUNDLED_DIR, "bundled set")
