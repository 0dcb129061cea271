"""The exported set's ``manifest.json``: reading and validating it, and checking a model file against it.

Light island (no TensorFlow). A model is refused (:class:`~spinescan.errors.ModelRefusedError`) when
a ``manifest.json`` beside it records a different sha256, or does not list it: a swapped or
corrupted file must not silently classify patients. A manifest entry may only name plain files
beside the manifest (:func:`is_plain_name`), and an export is read from one version folder
(:func:`export_version`) even while a publish switches ``current``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from spinescan.errors import ModelRefusedError

MANIFEST_NAME = "manifest.json"


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: The most bytes of ``manifest.json`` read (the exporter writes a few kB per model).
MANIFEST_MAX_BYTES = 16 << 20
_HEX = frozenset("0123456789abcdef")


def is_plain_name(name: object) -> bool:
    """Whether ``name`` is one file name inside the export version: no folder part, no ``..``,
    not absolute. A manifest entry naming ``/tmp/other.onnx`` or ``../x.onnx`` would load a file
    the export never wrote (and that the sha256 check of the folder's own manifest never sees)."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(c in name for c in "/\\\0")
        and name == name.strip()
        and not (len(name) > 1 and name[1] == ":")  # C:x.onnx on Windows
    )


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _check_file(where: str, entry: dict[str, Any], key: str = "file") -> None:
    name = entry.get(key)
    if not isinstance(name, str) or not name:
        raise ModelRefusedError(f"{where}: {key!r} must be a file name, got {name!r}")
    if not is_plain_name(name):
        raise ModelRefusedError(
            f"{where}: {key} {name!r} leaves the export folder; a manifest may only name files beside it"
        )


def validate_manifest(data: Any, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check a parsed ``manifest.json`` where it is read, so that no caller meets a ``KeyError`` or
    ``TypeError`` later: ``models`` maps names to objects whose ``file`` is a plain file name with
    a sha256, ``int8`` is absent, ``null`` or an object (a shipped one has its own file and sha256),
    ``card`` and ``predictor`` are plain file names. Raises :class:`ModelRefusedError`, one line."""
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ModelRefusedError(f"{path}: not a Spine Scan export manifest")
    predictor = data.get("predictor")
    if predictor is not None and not is_plain_name(predictor):
        raise ModelRefusedError(f"{path}: predictor {predictor!r} is not a file name beside the manifest")
    for name, entry in data["models"].items():
        where = f"{path}: model {name!r}"
        if not isinstance(entry, dict):
            raise ModelRefusedError(f"{where}: expected an object, got {type(entry).__name__}")
        _check_file(where, entry)
        if not _is_sha256(entry.get("sha256")):
            raise ModelRefusedError(f"{where}: 'sha256' must be 64 hex digits, got {entry.get('sha256')!r}")
        card = entry.get("card")
        if card is not None and not is_plain_name(card):
            raise ModelRefusedError(f"{where}: card {card!r} is not a file name beside the manifest")
        int8 = entry.get("int8")
        if int8 is None:
            continue
        if not isinstance(int8, dict):
            raise ModelRefusedError(f"{where}: 'int8' must be an object or null, got {int8!r}")
        shipped = int8.get("shipped", False)
        if not isinstance(shipped, bool):
            raise ModelRefusedError(f"{where}: int8 'shipped' must be true or false, got {shipped!r}")
        if shipped or int8.get("file") is not None:
            _check_file(f"{where} int8", int8)
        if shipped and not _is_sha256(int8.get("sha256")):
            got = int8.get("sha256")
            raise ModelRefusedError(f"{where}: int8 'sha256' must be 64 hex digits, got {got!r}")
    return data


def read_manifest(models_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``manifest.json`` of an export folder, validated (:func:`validate_manifest`), or ``None``
    when there is none."""
    path = Path(models_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MANIFEST_MAX_BYTES + 1)
        if len(raw) > MANIFEST_MAX_BYTES:
            raise ValueError(f"larger than {MANIFEST_MAX_BYTES >> 20} MB")
        data = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ModelRefusedError(f"{path}: unreadable manifest ({' '.join(str(exc).split())[:200]})") from None
    return validate_manifest(data, path)


def manifest_files(entry: dict[str, Any]) -> dict[str, str]:
    """``{file name: sha256}`` of every model file one (validated) manifest entry ships (fp32,
    int8 if shipped)."""
    files = {entry["file"]: entry["sha256"]} if entry.get("file") else {}
    int8 = entry.get("int8") or {}
    if int8.get("shipped") and int8.get("file"):
        files[int8["file"]] = int8["sha256"]
    return files


def export_version(models_dir: str | os.PathLike[str]) -> Path:
    """The one folder a call reads an export from: where ``models_dir/manifest.json`` resolves to
    now (``exported/current -> .v-<id>`` for a published export, ``models_dir`` itself for a plain
    folder). Resolved once per call, so a publish switching ``current`` in the middle of a call
    cannot pair one version's manifest with another's models."""
    folder = Path(models_dir)
    manifest = folder / MANIFEST_NAME
    if manifest.is_symlink() or manifest.exists():
        return Path(os.path.realpath(manifest)).parent
    return folder


def verify_against_manifest(path: Path) -> None:
    """Refuse a model that the ``manifest.json`` beside it does not list with this exact sha256.

    A symlinked model (``exported/x.onnx -> current/x.onnx``, see the exporter) is checked against
    the manifest beside its target, so a switch to a new export between the two reads cannot pair
    one export's manifest with another's model.
    """
    path = Path(os.path.realpath(path))
    manifest = read_manifest(path.parent)
    if manifest is None:
        return
    expected = None
    for entry in manifest["models"].values():
        expected = manifest_files(entry).get(path.name, expected)
    if expected is None:
        raise ModelRefusedError(
            f"{path}: not listed in {path.parent / MANIFEST_NAME}; refusing a file the export did not write"
        )
    actual = sha256_file(path)
    if actual != expected:
        raise ModelRefusedError(
            f"{path}: sha256 {actual[:12]}... does not match the manifest ({expected[:12]}...); "
            "the file was changed or corrupted after export - export it again"
        )
