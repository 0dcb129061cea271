"""Switch a complete set of exported models into ``exported/`` in one atomic step.

Why not move files one by one? ``manifest.json`` lists every model with its sha256, and the
predictor refuses a file whose hash differs. Moving ``generalist.onnx`` and then ``manifest.json``
leaves, between the two renames (or forever, after a kill or an exception), a new model beside
the old manifest, and every predictor then refuses it. No sequence of renames of several files
is atomic.

The layout (every name below is inside ``exported/``)::

    .v-<id>/               one complete, immutable set: *.onnx, *.md cards, manifest.json, predict.py,
                           and web/ (the browser page, when it could be built)
    current -> .v-<id>     the one pointer: a relative symlink, replaced atomically (rename(2))
    manifest.json -> current/manifest.json
    generalist.onnx -> current/generalist.onnx      (one such link per file of the set)
    predict.py -> current/predict.py
    web -> current/web

The page is part of the set (issue 26 #4): it is written into the staged set before the switch,
so a full disk while writing it fails the export with ``current`` untouched, and after the switch
the page and the models it lists are of one version. A ``web/`` folder an older export wrote as a
plain folder is replaced by the link right after the switch.

The top-level links never change target: they all go through ``current``, so replacing
``current`` switches every file at once. ``spinescan-predict --models exported``,
``--model exported/generalist.onnx``, ``python exported/predict.py`` and a read-only Docker bind
mount of ``exported/`` keep working unchanged (the links are relative). The predictor resolves
the links before reading (:func:`spinescan.edge.predictor.model_paths`), so one call never pairs
one set's manifest with another's model.

Publishing, and what a SIGKILL at each point leaves:

1. build the new set in ``.staging-<id>/set`` (previous models carried over, verified by sha256)
   -> killed: ``current`` untouched; the next export deletes the staging folder;
2. rename it to ``.v-<new>``  -> killed: an unreferenced version, deleted by the next export;
3. add top-level links for new file names (they dangle, or point at the old set's file of the
   same name, until step 4; the predictor only opens names the manifest lists);
4. **replace ``current``** (symlink to a temporary name, then rename over ``current``): the
   commit point. Before it, readers see the old set; after it, the new one;
5. remove links to names the new set lacks and all versions but the new and the previous one.

A folder written by an older export (plain files) is first adopted: its files are copied into a
version, ``current`` is pointed at it, and each plain file is replaced by a link to the identical
content, so every intermediate state serves the old set.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spinescan import __version__
from spinescan.atomic import atomic_write_json, atomic_write_text
from spinescan.edge.predictor import MANIFEST_NAME, manifest_files, read_manifest, sha256_file
from spinescan.errors import SpineScanError
from spinescan.export.standalone import STANDALONE_NAME, write_standalone
from spinescan.export.webpage import WEB_DIR

CURRENT = "current"
VERSION_PREFIX = ".v-"
STAGING_PREFIX = ".staging-"
LOCK_NAME = ".export.lock"
_TMP_PREFIX = ".tmp-link-"

Echo = Callable[[str], None]
#: Writes the browser page into the folder it is given (which it creates); returns ``None``, or
#: why the page was not written (then the folder is not created). See ``webpage.build_web``.
PageWriter = Callable[[Path], "str | None"]


class PublishError(SpineScanError):
    """The export folder cannot take the new set (another export running, no symlinks...)."""


def one_line(exc: BaseException) -> str:
    """A user-facing one-line description of any exception (a SpineScanError's message as is)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, SpineScanError):
        return text
    text = text[:300] + ("..." if len(text) > 300 else "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _new_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


def _replace_with_link(link: Path, target: str) -> None:
    """Make ``link`` a symlink to ``target`` atomically (a temporary link renamed over it)."""
    tmp = link.with_name(f"{_TMP_PREFIX}{uuid.uuid4().hex[:8]}")
    try:
        os.symlink(target, tmp)
    except OSError as exc:
        raise PublishError(f"{link.parent}: cannot create symlinks there ({exc.strerror or exc})") from None
    try:
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def current_dir(out_dir: Path) -> Path:
    """The folder holding the set the predictor currently sees (``out_dir`` for a plain folder)."""
    pointer = out_dir / CURRENT
    if pointer.is_symlink():
        return Path(os.path.realpath(pointer))
    return out_dir


def _set_names(folder: Path, manifest: Mapping[str, Any] | None) -> list[str]:
    """The files that make up the set in ``folder``: manifest, models, cards, predict.py."""
    if manifest is None:
        return []
    names = [MANIFEST_NAME]
    for entry in manifest["models"].values():
        names.extend(manifest_files(entry))
        if entry.get("card"):
            names.append(entry["card"])
    names.append(manifest.get("predictor") or STANDALONE_NAME)
    return [n for n in dict.fromkeys(names) if (folder / n).exists() and "/" not in n]


def _plain_names(out_dir: Path) -> list[str]:
    """Files of the set that are plain files at the top level (a folder an older export wrote)."""
    manifest_path = out_dir / MANIFEST_NAME
    if not manifest_path.exists():
        return []
    manifest = read_manifest(out_dir)
    return [n for n in _set_names(out_dir, manifest) if not (out_dir / n).is_symlink()]


class ExportLock:
    """An exclusive lock on the export folder for one export; and cleaning up after killed ones."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self._fh: Any = None

    def __enter__(self) -> ExportLock:
        try:
            self._fh = open(self.out_dir / LOCK_NAME, "a+")  # held for the whole export
        except OSError as exc:
            raise PublishError(f"cannot write to {self.out_dir} ({exc.strerror or exc})") from None
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._fh.close()
            raise PublishError(
                f"another export is writing to {self.out_dir}; try again when it is done"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        self._fh.close()

    def clean_stale(self, echo: Echo, keep: tuple[Path, ...] = ()) -> None:
        """Delete what killed exports left: staging folders, temporary links, unreferenced versions.

        Only called with the lock held, so nothing here belongs to a running export.
        """
        live = {current_dir(self.out_dir).name, *(p.name for p in keep)}
        removed = []
        for path in self.out_dir.iterdir():
            name = path.name
            if name.startswith(_TMP_PREFIX) and path.is_symlink():
                path.unlink(missing_ok=True)
            elif name.startswith(".web-") and path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)  # a page swap that was interrupted
            elif (
                (name.startswith(STAGING_PREFIX) or name.startswith(VERSION_PREFIX))
                and name not in live
                and path.is_dir()
                and not path.is_symlink()
            ):
                shutil.rmtree(path, ignore_errors=True)
                if name.startswith(STAGING_PREFIX):
                    removed.append(name)
        if removed:
            echo(
                f"Removed {len(removed)} staging folder(s) left by an interrupted export: "
                + ", ".join(removed)
            )


def _copy_into(src: Path, dst: Path) -> None:
    """Hard link where possible (same file system, instant), else copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _adopt_plain(out_dir: Path, staging_root: Path) -> None:
    """Turn a folder of plain files (an older export) into a version behind ``current``, with
    every intermediate state serving the same old set (see the module docstring)."""
    plain = _plain_names(out_dir)
    if not plain:
        return
    names = _set_names(out_dir, read_manifest(out_dir))  # all of them: some may be links already
    version = staging_root / "adopted"
    version.mkdir()
    for name in names:
        shutil.copy2(out_dir / name, version / name)  # follows links; a copy, not a hard link
        _fsync_file(version / name)
    final = out_dir / f"{VERSION_PREFIX}{_new_id()}"
    os.rename(version, final)
    _fsync_dir(out_dir)
    pointer = out_dir / CURRENT
    if pointer.exists() and not pointer.is_symlink():  # e.g. a copy made with links dereferenced
        if pointer.is_dir():
            shutil.rmtree(pointer)
        else:
            pointer.unlink()
    _replace_with_link(pointer, final.name)
    for name in plain:
        _replace_with_link(out_dir / name, f"{CURRENT}/{name}")
    _fsync_dir(out_dir)


def _manifest(models: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "format": 1,
        "spinescan_version": __version__,
        "updated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "predictor": STANDALONE_NAME,
        "models": dict(sorted(models.items())),
    }


def _carry_over(previous: Path, new_set: Path, keep: Mapping[str, Any], echo: Echo) -> dict[str, Any]:
    """Bring the previous set's other models into the new set, each checked against its sha256."""
    carried: dict[str, Any] = {}
    for name, entry in keep.items():
        files = manifest_files(entry)
        try:
            for fname, digest in files.items():
                if sha256_file(previous / fname) != digest:
                    raise ValueError(f"{fname} does not match its sha256")
        except (OSError, ValueError) as exc:
            echo(f"Warning: previous model {name!r} dropped from the export, its files are damaged ({exc})")
            continue
        for fname in files:
            _copy_into(previous / fname, new_set / fname)
        card = entry.get("card")
        if card and (previous / card).is_file():
            _copy_into(previous / card, new_set / card)
        carried[name] = entry
    return carried


def _link_plain_web(out_dir: Path, names: list[str]) -> None:
    """Replace a plain ``web/`` folder (written by an older export, outside any version) with the
    link ``web -> current/web``. A folder cannot be renamed over atomically by a link, so it is
    moved aside first: for that instant there is no ``web``, never a page of the wrong version."""
    plain = out_dir / WEB_DIR
    if WEB_DIR not in names or plain.is_symlink() or not plain.is_dir():
        return
    aside = out_dir / f".web-old-{uuid.uuid4().hex[:8]}"
    os.rename(plain, aside)
    _replace_with_link(plain, f"{CURRENT}/{WEB_DIR}")
    shutil.rmtree(aside, ignore_errors=True)


def publish(
    out_dir: Path,
    new_set: Path,
    entries: Mapping[str, dict[str, Any]],
    files: Mapping[str, Path],
    cards: Mapping[str, str],
    echo: Echo = print,
    page: PageWriter | None = None,
) -> Path:
    """Build the complete new set in ``new_set`` (inside a staging folder of ``out_dir``) and
    switch ``out_dir`` to it in one step. Returns the new version folder.

    ``page`` writes the browser page into the set (``web/``); when it cannot (``npm ci`` not
    run) the previous version's page is carried over, and its reason is echoed."""
    staging_root = new_set.parent
    new_set.mkdir()
    _adopt_plain(out_dir, staging_root)
    previous = current_dir(out_dir)
    old_manifest = read_manifest(previous) if (previous / MANIFEST_NAME).is_file() else None
    old_models = dict(old_manifest["models"]) if old_manifest else {}
    keep = {name: entry for name, entry in old_models.items() if name not in entries}
    models = _carry_over(previous, new_set, keep, echo)
    for fname, path in files.items():
        os.replace(path, new_set / fname)
    for card, text in cards.items():
        atomic_write_text(new_set / card, text)
    models.update(entries)
    atomic_write_json(new_set / MANIFEST_NAME, _manifest(models))
    write_standalone(new_set)
    if page is not None:
        why = page(new_set / WEB_DIR)
        if why is not None:
            echo(why)
            if (previous / WEB_DIR).is_dir():
                shutil.copytree(previous / WEB_DIR, new_set / WEB_DIR, copy_function=_copy_into)
                echo(f"kept the previous export's browser page ({previous.name}/{WEB_DIR})")
    for path in new_set.iterdir():  # atomic writes make 0600 files; exports are read by others
        if path.is_dir():  # web/: its files were written (and made readable) by the page writer
            os.chmod(path, 0o755)
            for inner in path.rglob("*"):
                if inner.is_file():
                    _fsync_file(inner)
            continue
        os.chmod(path, 0o755 if path.name == STANDALONE_NAME else 0o644)
        _fsync_file(path)
    _fsync_dir(new_set)
    names = sorted(p.name for p in new_set.iterdir())

    version = out_dir / f"{VERSION_PREFIX}{_new_id()}"
    os.rename(new_set, version)
    _fsync_dir(out_dir)
    for name in names:  # links for names the old set lacked; existing links already go via current
        link = out_dir / name
        if link.is_dir() and not link.is_symlink():  # an older export's plain web/: after the switch
            continue
        if not (link.is_symlink() and os.readlink(link) == f"{CURRENT}/{name}"):
            _replace_with_link(link, f"{CURRENT}/{name}")
    _fsync_dir(out_dir)
    _replace_with_link(out_dir / CURRENT, version.name)  # the commit point
    _fsync_dir(out_dir)

    # committed: tidying up is best effort (the next export retries), each step on its own, so a
    # failure in one (an old plain web/ that cannot be moved) leaves the others done
    with contextlib.suppress(OSError):
        _link_plain_web(out_dir, names)
    with contextlib.suppress(OSError):
        for path in out_dir.iterdir():  # links to files the new set lacks (e.g. an int8 dropped)
            if path.is_symlink() and path.name not in names and os.readlink(path).startswith(f"{CURRENT}/"):
                path.unlink(missing_ok=True)
        for path in out_dir.iterdir():
            if path.name.startswith(VERSION_PREFIX) and path.name not in (version.name, previous.name):
                shutil.rmtree(path, ignore_errors=True)
    return version
