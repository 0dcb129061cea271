"""Is a dataset usable? ``spinescan data check`` (:func:`check_dataset`: unreadable, too small,
duplicate and conflicting images, class balance) and the usable images a model trains on
(:func:`samples_for_spec`), which read every file the same way so both commands call the same files
unusable."""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from spinescan.data.datasets import MANIFEST, Dataset, Sample, load_dataset
from spinescan.errors import DataError, ImageReadError
from spinescan.progress import Progress, as_progress
from spinescan.radiograph.imageio import MIN_SIDE, decode_image, read_file_bytes

IMBALANCE_WARN = 3.0

T = TypeVar("T")


@dataclass
class CheckReport:
    """What ``spinescan data check`` found. ``ok`` is False only for errors, not warnings."""

    root: str
    layout: str
    counts: dict[str, dict[str, int]]
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    duplicates_within: list[list[str]] = field(default_factory=list)
    duplicates_across: list[list[str]] = field(default_factory=list)
    too_small: list[tuple[str, str]] = field(default_factory=list)
    imbalance: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: One row per image, in dataset order: (file, view, label, status), status ``ok``, ``not read``
    #: (``--no-read``) or why the image is unusable; the per-file lines of ``data check -v``.
    files: list[tuple[str, str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self, files: bool = False) -> dict[str, Any]:
        """The report as ``data check --json`` prints it; ``files`` adds the per-file rows (``-v``)."""
        per_file = (
            {"files": [{"file": f, "view": v, "label": lab, "status": st} for f, v, lab, st in self.files]}
            if files
            else {}
        )
        return {
            "root": self.root,
            "layout": self.layout,
            "ok": self.ok,
            "counts": self.counts,
            "total": sum(n for per_view in self.counts.values() for n in per_view.values()),
            "unreadable": [{"file": rel, "reason": why} for rel, why in self.unreadable],
            "duplicates_within": self.duplicates_within,
            "duplicates_across": self.duplicates_across,
            "too_small": [{"file": rel, "size": size} for rel, size in self.too_small],
            "imbalance": self.imbalance,
            "errors": self.errors,
            "warnings": self.warnings,
            **per_file,
        }


def _reason(exc: ImageReadError, sample: Sample) -> str:
    """The error without its path prefix: the report already names the file by ``rel``."""
    message = str(exc)
    prefix = f"{sample.path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def check_dataset(
    root_or_dataset: str | Path | Dataset,
    default_view: str | None = None,
    min_size: int = MIN_SIDE,
    read: bool = True,
    progress: Progress | bool = False,
) -> CheckReport:
    """Counts, unreadable files, exact duplicates, too-small images and class imbalance.

    Duplicates are exact byte copies (md5). The same file under two labels is an error: one of the
    labels is wrong and, whichever split each copy lands in, the test set is contaminated. Copies
    within a class are a warning (they can still straddle train and test and inflate scores).
    With ``read=False`` images are hashed but not decoded (fast, but corrupt content goes unseen).
    """
    dataset = (
        root_or_dataset
        if isinstance(root_or_dataset, Dataset)
        else load_dataset(root_or_dataset, default_view)
    )
    report = CheckReport(str(dataset.root), dataset.layout, dataset.counts())
    by_md5: dict[str, list[Sample]] = defaultdict(list)
    results = _parallel(lambda s: _inspect(s, min_size, read), dataset.samples, "Checking images", progress)
    for sample, (digest, unreadable, small) in zip(dataset.samples, results, strict=True):
        if digest:
            by_md5[digest].append(sample)
        if unreadable:
            report.unreadable.append((sample.rel, unreadable))
        if small:
            report.too_small.append((sample.rel, small))
        status = "ok" if read else "not read"
        if unreadable or small:
            status = f"unreadable: {unreadable}" if unreadable else f"too small: {small}"
        report.files.append((sample.rel, sample.view, sample.label, status))
    report.duplicates_within, report.duplicates_across = duplicate_groups(by_md5)
    _summarise(dataset, report, min_size)
    if read:  # the rule training applies: every class needs at least one usable image
        reasons = [unreadable for _digest, unreadable, _small in results]
        for view in dataset.views():
            labels = dataset.select(view=view).labels()
            report.errors.extend(unusable_classes(dataset, view, labels, dataset.samples, reasons))
    return report


def unusable_classes(
    dataset: Dataset,
    view: str,
    classes: Sequence[str],
    samples: Sequence[Sample],
    reasons: Sequence[str | None],
) -> list[str]:
    """One message per class of ``view`` with no usable image among ``samples`` (images of
    ``dataset``); ``reasons[i]`` says why ``samples[i]`` cannot be read (``None``: usable). The one rule that
    ``data check`` (an error, exit 1) and ``train`` (refuses to start) share, so a dataset that
    ``data check`` calls OK is one that ``train`` accepts (issue 26 #8)."""
    usable = Counter(
        s.label for s, why in zip(samples, reasons, strict=True) if why is None and s.view == view
    )
    problems = []
    for cls in classes:
        if usable[cls]:
            continue
        present = dataset.select(view=view).labels()
        hint = (
            f"classes found for view {view!r}: {', '.join(present)}"
            if present
            else f"no images of view {view!r} at all (views found: {', '.join(dataset.views())})"
        )
        unreadable = sum(1 for s in samples if s.label == cls and s.view == view)
        why = f"all {unreadable} of its images are unreadable" if unreadable else "it has no images"
        problems.append(f"class {cls!r} ({view} view) cannot be used: {why} in {dataset.root}; {hint}")
    return problems


def duplicate_groups(by_digest: Mapping[str, Sequence[Sample]]) -> tuple[list[list[str]], list[list[str]]]:
    """``(within a class, across labels)``: sorted groups of ``rel`` paths of identical files."""
    within: list[list[str]] = []
    across: list[list[str]] = []
    for group in by_digest.values():
        if len(group) < 2:
            continue
        rels = sorted(s.rel for s in group)
        (across if len({s.label for s in group}) > 1 else within).append(rels)
    return sorted(within), sorted(across)


def cross_label_errors(samples: Sequence[Sample], across: Sequence[Sequence[str]]) -> list[str]:
    """One message per group of identical files filed under different labels (an error for
    ``data check`` and ``train`` alike: one of the labels is wrong, and the test set is
    contaminated whichever split each copy lands in)."""
    label_of = {s.rel: s.label for s in samples}
    return [
        f"identical files under different labels ({', '.join(sorted({label_of[r] for r in group}))}): "
        + ", ".join(group)
        for group in across
    ]


def _parallel(
    fn: Callable[[Sample], T], samples: Sequence[Sample], label: str, progress: Progress | bool
) -> list[T]:
    """``[fn(s) for s in samples]`` on a few threads (OpenCV and hashlib release the GIL), in
    order, reporting to ``progress``."""
    if not samples:
        return []
    workers = min(4, os.cpu_count() or 1, len(samples))
    out = []
    with ThreadPoolExecutor(workers) as pool, as_progress(progress).bar(len(samples), label) as advance:
        for result in pool.map(fn, samples):
            out.append(result)
            advance(1)
    return out


def _inspect(sample: Sample, min_size: int, read: bool) -> tuple[str | None, str | None, str | None]:
    """``(md5, why unreadable, "WxH" if too small)`` for one file, reading it only once (through
    the shared reader: regular files only, format and size checked before the bytes are read)."""
    try:
        data = read_file_bytes(sample.path)
    except ImageReadError as exc:
        return None, _reason(exc, sample), None
    digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if not read:
        return digest, None, None
    try:  # small images are reported on their own (too_small), not as unreadable
        image = decode_image(data, str(sample.path))
    except ImageReadError as exc:
        return digest, _reason(exc, sample), None
    height, width = image.shape[:2]
    return digest, None, (f"{width}x{height}" if min(height, width) < min_size else None)


def _summarise(dataset: Dataset, report: CheckReport, min_size: int) -> None:
    for view, per_label in report.counts.items():
        if len(per_label) < 2:
            report.warnings.append(
                f"view {view!r} has a single class ({next(iter(per_label))}): nothing to classify"
            )
        ratio = max(per_label.values()) / max(1, min(per_label.values()))
        report.imbalance[view] = round(ratio, 3)
        if ratio > IMBALANCE_WARN:
            report.warnings.append(
                f"view {view!r} is imbalanced ({ratio:.1f}:1 largest to smallest class); "
                "training uses class weights"
            )
    for folder in dataset.empty_folders:
        report.warnings.append(f"class folder {folder} holds no images")
    if dataset.unlisted:
        shown = ", ".join(dataset.unlisted[:3]) + (", ..." if len(dataset.unlisted) > 3 else "")
        report.warnings.append(
            f"{len(dataset.unlisted)} image file(s) not listed in {MANIFEST}, ignored: {shown}"
        )
    if report.unreadable:
        report.warnings.append(f"{len(report.unreadable)} unreadable file(s); training skips them")
    if report.too_small:
        report.warnings.append(f"{len(report.too_small)} image(s) smaller than {min_size} px on a side")
    if report.duplicates_within:
        report.warnings.append(
            f"{len(report.duplicates_within)} group(s) of identical files within a class "
            "(copies can straddle train and test)"
        )
    report.warnings.extend(dataset.walk_warnings)
    report.errors.extend(cross_label_errors(dataset.samples, report.duplicates_across))


# --- what a model trains on ----------------------------------------------------------------------


def _read_for_training(sample: Sample) -> tuple[str | None, str | None]:
    """``(md5, why unreadable)``: the same inspection ``data check`` makes (:func:`_inspect`),
    so both commands call the same files unusable."""
    digest, why, _small = _inspect(sample, 1, True)
    return digest, why


def samples_for_spec(
    dataset: Dataset,
    view: str,
    classes: Sequence[str],
    skip_unreadable: bool = True,
    progress: Progress | bool = False,
) -> tuple[list[Sample], list[tuple[str, str]]]:
    """The usable images of one view and some classes, and the ``(rel, reason)`` of those skipped.

    Every image is decoded once here, so a corrupt file is reported before training starts
    rather than crashing the input pipeline mid-epoch. Raises :class:`DataError` naming the class
    when a needed class has no usable image (or, with ``skip_unreadable=False``, when any image
    is unreadable).
    """
    subset = dataset.select(view=view, classes=classes)
    read = _parallel(_read_for_training, subset.samples, "Reading images", progress)
    by_md5: dict[str, list[Sample]] = defaultdict(list)
    for sample, (digest, _why) in zip(subset.samples, read, strict=True):
        if digest:
            by_md5[digest].append(sample)
    conflicts = cross_label_errors(subset.samples, duplicate_groups(by_md5)[1])
    if conflicts:
        more = f" (and {len(conflicts) - 1} more group(s))" if len(conflicts) > 1 else ""
        raise DataError(f"{conflicts[0]}{more}; fix the labels (see spinescan data check {dataset.root})")
    reasons = [why for _digest, why in read]
    usable = [s for s, why in zip(subset.samples, reasons, strict=True) if why is None]
    skipped = [(s.rel, why) for s, why in zip(subset.samples, reasons, strict=True) if why is not None]
    if skipped and not skip_unreadable:
        listed = "; ".join(f"{rel}: {why}" for rel, why in skipped[:5])
        more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
        raise DataError(f"{len(skipped)} unreadable image(s) in {dataset.root}: {listed}{more}")
    problems = unusable_classes(dataset, view, classes, subset.samples, reasons)
    if problems:
        raise DataError(problems[0])
    return usable, skipped
