"""Find the images of a dataset, in the layouts people actually have, and check them.

Three layouts are understood:

* ``DIR/<class>/*`` - the original project's layout. It says nothing about the view, so the
  caller names it (``default_view``; the trainer passes its plugin's view).
* ``DIR/<view>/<class>/*`` - what ``spinescan synth`` writes (view folders ``lateral`` and ``ap``).
* ``DIR/manifest.csv`` with columns ``file, label[, view][, patient_id]`` plus any extra columns
  (kept in :attr:`Sample.extra`). When present it wins over folder names: labels curated in a
  spreadsheet beat whatever folder a file happens to sit in.

Only patient ids make a split leak-free; without them each image counts as its own patient.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from spinescan.errors import DataError
from spinescan.radiograph.imageio import find_images
from spinescan.zoo.spec import VIEWS

MANIFEST = "manifest.csv"
UNSPECIFIED_VIEW = "unspecified"
LAYOUTS = ("class", "view/class", "manifest")
# Above this max/min class-count ratio within a view, `data check` warns about imbalance.


@dataclass(frozen=True)
class Sample:
    """One image of the dataset. ``rel`` (posix, relative to the root) is its identity in splits."""

    path: Path
    rel: str
    label: str
    view: str
    patient_id: str
    extra: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class Dataset:
    """The samples found under ``root`` and the layout they were found in."""

    root: Path
    samples: list[Sample]
    layout: str
    # Class folders that held no image: a needed class being empty is an error the trainer
    # reports by name, so the loader remembers them rather than silently dropping them.
    empty_folders: list[str] = field(default_factory=list)
    # Image files a manifest does not list: ignored, but `data check` says so.
    unlisted: list[str] = field(default_factory=list)
    # What the folder walk had to say (symlink loops it did not follow), one line each.
    walk_warnings: list[str] = field(default_factory=list)

    def select(self, view: str | None = None, classes: Iterable[str] | None = None) -> Dataset:
        wanted = None if classes is None else set(classes)
        kept = [
            s
            for s in self.samples
            if (view is None or s.view == view) and (wanted is None or s.label in wanted)
        ]
        return Dataset(
            self.root,
            kept,
            self.layout,
            list(self.empty_folders),
            list(self.unlisted),
            list(self.walk_warnings),
        )

    def counts(self) -> dict[str, dict[str, int]]:
        """``{view: {label: number of images}}``, both levels sorted by name."""
        counter = Counter((s.view, s.label) for s in self.samples)
        out: dict[str, dict[str, int]] = {}
        for (view, label), n in sorted(counter.items()):
            out.setdefault(view, {})[label] = n
        return out

    def labels(self) -> list[str]:
        return sorted({s.label for s in self.samples})

    def views(self) -> list[str]:
        return sorted({s.view for s in self.samples})

    def __len__(self) -> int:
        return len(self.samples)


# --- discovery -----------------------------------------------------------------------------------


def load_dataset(root: str | Path, default_view: str | None = None) -> Dataset:
    """Discover the dataset under ``root`` (see the module docstring for the layouts).

    ``root`` may also be a ``.csv`` manifest of any name: its ``file`` paths are relative to the
    folder it sits in (``spinescan val`` takes a subset of a dataset this way).
    Raises :class:`DataError` when the folder is missing or holds no images.
    """
    root = Path(root).expanduser()
    if root.is_file() and root.suffix.lower() == ".csv":
        dataset = _from_manifest(root.parent, default_view, root)
        if not dataset.samples:
            raise DataError(f"{root}: lists no images")
        return dataset
    if not root.exists():
        raise DataError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"dataset path is not a folder: {root}")
    if (root / MANIFEST).is_file():
        dataset = _from_manifest(root, default_view)
    else:
        dataset = _from_folders(root, default_view)
    if not dataset.samples:
        raise DataError(
            f"no images found under {root}; expected {root}/<class>/*, {root}/<view>/<class>/* "
            f"(views: {', '.join(VIEWS)}) or a {MANIFEST}"
        )
    return dataset


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_under(folder: Path, warnings: list[str]) -> list[Path]:
    """Image files anywhere below ``folder`` (per-patient subfolders are common), hidden ones
    and anything inside hidden folders excluded; symlink loops are noted in ``warnings``."""
    return find_images(folder, warnings.append, skip_hidden_dirs=True)


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _from_folders(root: Path, default_view: str | None) -> Dataset:
    top = _visible_dirs(root)
    # View folders are recognised by name only: a class folder may well contain per-patient
    # subfolders, which must not be mistaken for classes.
    is_view_layout = bool(top) and all(d.name in VIEWS for d in top)
    view_like = [d.name for d in top if d.name in VIEWS and _visible_dirs(d)]
    if view_like and not is_view_layout:
        others = [d.name for d in top if d.name not in VIEWS]
        raise DataError(
            f"{root} mixes view folders ({', '.join(view_like)}) with other folders ({', '.join(others)}); "
            f"use {root}/<view>/<class>/* throughout, or a {MANIFEST}"
        )
    samples: list[Sample] = []
    empty: list[str] = []
    walk_warnings: list[str] = []
    if is_view_layout:
        pairs = [(view_dir.name, class_dir) for view_dir in top for class_dir in _visible_dirs(view_dir)]
        layout = "view/class"
    else:
        view = default_view or UNSPECIFIED_VIEW
        pairs = [(view, class_dir) for class_dir in top]
        layout = "class"
    for view, class_dir in pairs:
        files = _images_under(class_dir, walk_warnings)
        if not files:
            empty.append(_rel(root, class_dir))
        for path in files:
            rel = _rel(root, path)
            samples.append(Sample(path, rel, class_dir.name, view, rel, {}))
    return Dataset(root, samples, layout, empty, [], walk_warnings)


def _from_manifest(root: Path, default_view: str | None, manifest: Path | None = None) -> Dataset:
    manifest = manifest or root / MANIFEST
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [(c or "").strip() for c in (reader.fieldnames or [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{manifest}: cannot read ({exc})") from None
    missing = [c for c in ("file", "label") if c not in columns]
    if missing:
        raise DataError(f"{manifest}: missing column(s) {', '.join(missing)} (have: {', '.join(columns)})")
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    for line, raw in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        file, label = row.pop("file"), row.pop("label")
        if not file and not label:
            continue  # blank line
        if not file or not label:
            raise DataError(f"{manifest}, line {line}: 'file' and 'label' must both be filled in")
        rel = PurePosixPath(file.replace("\\", "/")).as_posix()
        if rel.startswith("/") or ".." in PurePosixPath(rel).parts:
            raise DataError(f"{manifest}, line {line}: file {file!r} must be a path inside the dataset")
        if rel in seen:
            raise DataError(f"{manifest}, line {line}: {rel} is already listed on line {seen[rel]}")
        seen[rel] = line
        view = row.pop("view", "").lower() or _view_from_path(rel) or default_view or UNSPECIFIED_VIEW
        patient = row.pop("patient_id", "") or rel
        samples.append(Sample(root / rel, rel, label, view, patient, row))
    walk_warnings: list[str] = []
    unlisted = [rel for rel in (_rel(root, p) for p in _images_under(root, walk_warnings)) if rel not in seen]
    return Dataset(root, samples, "manifest", [], unlisted, walk_warnings)


def _view_from_path(rel: str) -> str | None:
    first = PurePosixPath(rel).parts[0]
    return first if first in VIEWS and len(PurePosixPath(rel).parts) > 2 else None
