"""Write ``exported/web/``: the browser page that runs the exported models locally.

The page's sources live in the repository's ``web/src/`` (HTML, CSS and ES modules, no build
step); its one dependency, onnxruntime-web, comes from npm through ``web/package-lock.json``
(``npm ci`` in ``make install``) and only the three files the wasm backend needs are copied next
to the page. Nothing is fetched from a CDN: the page loads its scripts, the runtime and the models
(``../manifest.json`` and the ``../*.onnx`` it lists, checked against their sha256) from its own
origin, e.g. ``spinescan serve``.

The page is part of the export version (:mod:`spinescan.export.publish`): :func:`build_web`
writes it into the staged set, and it is switched in with the models, in the same one step, so a
full disk while writing it leaves ``current`` (models and page) as it was. Without
``web/node_modules`` (``npm ci`` not run) the page is not built, with a note, and the previous
version's page is carried over; the ONNX export itself does not depend on it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

WEB_DIR = "web"
#: The onnxruntime-web files the single-threaded wasm backend loads (ESM build, no WebGPU/WebGL).
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
SOURCE_FILES = ("index.html", "app.js", "decode.js", "preprocess.js", "landmarks.js", "style.css")


def web_source() -> Path:
    """The repository's ``web/`` folder (the package is installed editable from the repository)."""
    return Path(__file__).resolve().parents[2] / WEB_DIR


def _missing(source: Path) -> str | None:
    src, ort_dist = source / "src", source / "node_modules" / "onnxruntime-web" / "dist"
    missing = [
        p for p in (*(src / f for f in SOURCE_FILES), *(ort_dist / f for f in ORT_FILES)) if not p.is_file()
    ]
    if not missing:
        return None
    return (
        f"browser page not written: {missing[0]} is missing "
        f"(run `npm ci --prefix {source}` once, or `make install`)"
    )


def build_web(target: str | Path, source: Path | None = None) -> str | None:
    """Write the page into the new folder ``target`` (it must not exist): the page's sources and
    the onnxruntime-web files. Returns ``None`` when done, else the one-line reason it was not
    written (``npm ci`` not run; ``target`` is then not created). ``OSError`` (a full disk)
    propagates: the caller builds ``target`` inside a staging folder it throws away."""
    source = source or web_source()
    why = _missing(source)
    if why is not None:
        return why
    target = Path(target)
    src, ort_dist = source / "src", source / "node_modules" / "onnxruntime-web" / "dist"
    (target / "ort").mkdir(parents=True)
    for name in SOURCE_FILES:
        shutil.copyfile(src / name, target / name)
    for name in ORT_FILES:
        shutil.copyfile(ort_dist / name, target / "ort" / name)
    for path in target.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    os.chmod(target, 0o755)
    return None


def write_web(out_dir: str | Path, source: Path | None = None) -> str:
    """Build ``<out_dir>/web`` on its own (outside an export version: a folder the export does
    not manage), swapping an old one out; returns a one-line note. Exports use :func:`build_web`
    inside the staged set instead."""
    source = source or web_source()
    why = _missing(source)
    if why is not None:
        return why
    out_dir = Path(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=".web-", dir=out_dir))
    try:
        build_web(staging / WEB_DIR, source)
        target = out_dir / WEB_DIR
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=".web-old-", dir=out_dir))
            os.replace(target, old / WEB_DIR)
        os.replace(staging / WEB_DIR, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return f"browser page written to {target}/ (open it with `spinescan serve --dir {out_dir}`)"
