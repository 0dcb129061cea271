"""Copy exported models into the package's bundled set (``spinescan/pretrained/``).

The bundled set is an ordinary export folder (``manifest.json`` with each file's sha256, the ONNX
files with their metadata, one model card per model) committed with the package, so that
``spinescan-predict film.png`` works on a fresh install with no training. It is only ever written by
this module, from an export made by ``spinescan export --onnx``; ``scripts/build_models.sh`` (``make
models``) records the command that rebuilds each model.

Why a copy step rather than exporting into the package folder? ``spinescan export`` publishes
through symlinks (``current -> .v-<id>``, see :mod:`spinescan.export.publish`), which a wheel or a
git checkout must not carry; here every file is copied as a plain file, checked against the source
manifest's sha256, and the package manifest is merged model by model (rebuilding ``scoliosis``
keeps ``generalist``). Files go in first, the manifest last (atomically): a build killed in between
leaves a manifest whose sha256 no longer matches, and the predictor refuses that model with one
line until the build is re-run, never loads it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spinescan import __version__
from spinescan.atomic import atomic_write_json
from spinescan.edge.manifest import MANIFEST_NAME, manifest_files, read_manifest, sha256_file
from spinescan.edge.model_files import BUNDLED_DIR
from spinescan.errors import SpineScanError

#: The bundled set's budget (issue #22): the package must stay small enough to install anywhere.
MAX_BUNDLE_BYTES = 20_000_000
#: The one command per model that rebuilds it (recorded in its manifest entry).
RECIPE = "scripts/build_models.sh {model}"


def _copy_checked(src: Path, dst: Path, digest: str) -> None:
    """Copy ``src`` to ``dst`` atomically (temporary name, then rename), refusing a source whose
    sha256 is not ``digest``."""
    if sha256_file(src) != digest:
        raise SpineScanError(f"{src}: sha256 does not match its export manifest; export it again")
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, dst)


def bundle_models(
    export_dir: str | Path, names: Sequence[str], dest: str | Path = BUNDLED_DIR
) -> dict[str, Any]:
    """Copy models ``names`` of the export in ``export_dir`` into ``dest``; returns the new manifest.

    Raises :class:`~spinescan.errors.SpineScanError` (one line) when a model is not in the export,
    a file does not match its sha256, or the set would exceed :data:`MAX_BUNDLE_BYTES`.
    """
    source = Path(os.path.realpath(Path(export_dir) / MANIFEST_NAME)).parent  # through `current`
    exported = read_manifest(source)
    if exported is None:
        raise SpineScanError(f"no {MANIFEST_NAME} in {export_dir}: run `spinescan export --onnx` first")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    bundled = read_manifest(dest) or {"format": 1, "models": {}}
    models = dict(bundled["models"])
    for name in names:
        entry = exported["models"].get(name)
        if entry is None:
            known = ", ".join(sorted(exported["models"])) or "none"
            raise SpineScanError(f"no model {name!r} in {export_dir} (exported: {known})")
        old = models.get(name)
        for fname, digest in manifest_files(entry).items():
            _copy_checked(source / fname, dest / fname, digest)
        if entry.get("card"):
            shutil.copyfile(source / entry["card"], dest / entry["card"])
            os.chmod(dest / entry["card"], 0o644)
        if old:  # an int8 file the new export did not ship must not linger
            for fname in set(manifest_files(old)) - set(manifest_files(entry)):
                (dest / fname).unlink(missing_ok=True)
        models[name] = {**entry, "recipe": RECIPE.format(model=name)}
    total = sum(
        (dest / f).stat().st_size for e in models.values() for f in manifest_files(e) if (dest / f).is_file()
    )
    if total > MAX_BUNDLE_BYTES:
        raise SpineScanError(
            f"the bundled set would be {total / 1e6:.1f} MB, over the {MAX_BUNDLE_BYTES / 1e6:.0f} MB "
            "budget; bundle smaller models (int8, a narrower backbone)"
        )
    manifest = {
        "format": 1,
        "spinescan_version": __version__,
        "updated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "bundled": True,
        "models": dict(sorted(models.items())),
    }
    atomic_write_json(dest / MANIFEST_NAME, manifest)
    os.chmod(dest / MANIFEST_NAME, 0o644)
    return manifest


def main(argv: list[str] | None = None) -> int:
    """``python -m spinescan.export.bundle EXPORT_DIR NAME... [--dest DIR]`` (used by build_models.sh)."""
    parser = argparse.ArgumentParser(prog="python -m spinescan.export.bundle", description=__doc__)
    parser.add_argument("export_dir", help="a folder written by `spinescan export --onnx`")
    parser.add_argument("names", nargs="+", help="models to copy into the bundled set")
    parser.add_argument("--dest", default=str(BUNDLED_DIR), help="the bundled set (default: the package's)")
    args = parser.parse_args(argv)
    try:
        manifest = bundle_models(args.export_dir, args.names, args.dest)
    except (SpineScanError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name in args.names:
        entry = manifest["models"][name]
        files = ", ".join(manifest_files(entry))
        print(f"bundled {name}: {files} -> {args.dest}" + (" (WEAK)" if entry.get("weak") else ""))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
