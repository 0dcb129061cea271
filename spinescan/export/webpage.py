"""Write ``exported/web/``: the browser page that runs the exported models locally.

The page's sources live in the repository's ``web/src/`` (HTML, CSS and ES modules, no build
step); its one dependency, onnxruntime-web, comes from npm through ``web/package-lock.json``
(``npm ci`` in ``make install``) and only the three files the wasm backend needs are copied next
to the page. Nothing is fetched from a CDN: the page loads its scripts, the runtime and the models
(``../manifest.json`` and the ``../*.onnx`` it lists, checked against their sha256) from its own
origin, e.g. ``spinescan serve``.

The folder is built beside the old one and swapped in, so a half-written page never replaces a
working one. Without ``web/node_modules`` (``npm ci`` not run) the page is skipped with a note;
the ONNX export itself does not depend on it.
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


def write_web(out_dir: str | Path, source: Path | None = None) -> str:
    """Build ``<out_dir>/web`` from ``source`` (default :func:`web_source`); returns a one-line note."""
    source = source or web_source()
    src, ort_dist = source / "src", source / "node_modules" / "onnxruntime-web" / "dist"
    missing = [
        p for p in (*(src / f for f in SOURCE_FILES), *(ort_dist / f for f in ORT_FILES)) if not p.is_file()
    ]
    if missing:
        return (
            f"browser page not written: {missing[0]} is missing "
            f"(run `npm ci --prefix {source}` once, or `make install`)"
        )
    out_dir = Path(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=".web-", dir=out_dir))
    try:
        for name in SOURCE_FILES:
            shutil.copyfile(src / name, staging / name)
        (staging / "ort").mkdir()
        for name in ORT_FILES:
            shutil.copyfile(ort_dist / name, staging / "ort" / name)
        for path in staging.rglob("*"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        os.chmod(staging, 0o755)
        target = out_dir / WEB_DIR
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=".web-old-", dir=out_dir))
            os.replace(target, old / WEB_DIR)
        os.replace(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return f"browser page written to {target}/ (open it with `spinescan serve --dir {out_dir}`)"
