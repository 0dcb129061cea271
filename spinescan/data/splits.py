"""Train/validation/test splits that are a property of the dataset, not of the model.

A split is computed from ``(the set of samples, seed)`` alone: stratified by label, grouped by
``patient_id`` (no patient in two splits). Group order within a label comes from a hash of
``(seed, label, patient_id)``, not from a shuffled list, which gives three useful properties:

* the input order of the samples does not matter;
* each label's assignment depends only on that label's own patients, so a specialist that keeps
  two classes of a view gets exactly the test images the generalist gets for those classes,
  whether it splits the whole view (what the trainer does) or only its own classes;
* adding patients of one class does not reshuffle the other classes.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spinescan.atomic import atomic_write_json
from spinescan.data.datasets import Sample
from spinescan.errors import DataError

PARTS = ("train", "val", "test")


@dataclass
class Split:
    """Lists of sample ``rel`` paths per part; ``fold``/``k`` are set for cross-validation folds."""

    seed: int
    train: list[str]
    val: list[str]
    test: list[str]
    fold: int | None = None
    k: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "fold": self.fold,
            "k": self.k,
            "counts": {part: len(getattr(self, part)) for part in PARTS},
            "train": self.train,
            "val": self.val,
            "test": self.test,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Split:
        try:
            return cls(
                seed=int(data["seed"]),
                train=[str(r) for r in data["train"]],
                val=[str(r) for r in data["val"]],
                test=[str(r) for r in data["test"]],
                fold=data.get("fold"),
                k=data.get("k"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"not a valid split: {exc}") from None

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Split:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read split {path}: {exc}") from None
        return cls.from_dict(data)

    def assign(self, samples: Sequence[Sample]) -> dict[str, list[Sample]]:
        """The given samples sorted into parts (samples the split does not list are left out:
        a specialist passes only its own classes' samples)."""
        where = {rel: part for part in PARTS for rel in getattr(self, part)}
        out: dict[str, list[Sample]] = {part: [] for part in PARTS}
        for sample in sorted(samples, key=lambda s: s.rel):
            part = where.get(sample.rel)
            if part is not None:
                out[part].append(sample)
        return out


def _key(seed: int, *parts: str) -> str:
    return hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).hexdigest()


def _groups_by_label(samples: Sequence[Sample]) -> dict[str, dict[str, list[str]]]:
    """``{label: {patient_id: [rel, ...]}}``. A patient whose images carry several labels is
    filed under its most frequent label (ties: alphabetical) so the patient stays whole."""
    if not samples:
        raise DataError("cannot split an empty set of samples")
    rels_by_patient: dict[str, list[str]] = defaultdict(list)
    labels_by_patient: dict[str, Counter[str]] = defaultdict(Counter)
    seen: set[str] = set()
    for s in samples:
        if s.rel in seen:
            raise DataError(f"sample {s.rel} is listed twice")
        seen.add(s.rel)
        rels_by_patient[s.patient_id].append(s.rel)
        labels_by_patient[s.patient_id][s.label] += 1
    out: dict[str, dict[str, list[str]]] = defaultdict(dict)
    for patient, counts in labels_by_patient.items():
        label = min(counts, key=lambda lab: (-counts[lab], lab))
        out[label][patient] = sorted(rels_by_patient[patient])
    return out


def _ordered(seed: int, label: str, patients: dict[str, list[str]], salt: str = "") -> list[str]:
    return sorted(patients, key=lambda p: (_key(seed, salt, label, p), p))


def _sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Group counts for (val, test). With >= 3 groups every part gets at least one."""
    n_test, n_val = round(n * test_fraction), round(n * val_fraction)
    if n >= 3:
        n_test = max(n_test, 1) if test_fraction > 0 else 0
        n_val = max(n_val, 1) if val_fraction > 0 else 0
    while n_test + n_val >= n and n_test + n_val > 0:  # keep at least one group for training
        if n_val >= n_test and n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def _check_fractions(val_fraction: float, test_fraction: float = 0.0) -> None:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(
            f"split fractions must be in [0, 1) and sum below 1 (val {val_fraction}, test {test_fraction})"
        )


def make_split(
    samples: Sequence[Sample], seed: int, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> Split:
    """Stratified (by label), patient-grouped train/val/test split; see the module docstring.

    Fractions count patients, not images. A class with at least three patients is present in all
    three parts.
    """
    _check_fractions(val_fraction, test_fraction)
    parts: dict[str, list[str]] = {part: [] for part in PARTS}
    for label, patients in sorted(_groups_by_label(samples).items()):
        order = _ordered(seed, label, patients)
        n_val, n_test = _sizes(len(order), val_fraction, test_fraction)
        for i, patient in enumerate(order):
            part = "test" if i < n_test else "val" if i < n_test + n_val else "train"
            parts[part].extend(patients[patient])
    return Split(seed, *(sorted(parts[p]) for p in PARTS))


def kfold_splits(samples: Sequence[Sample], k: int, seed: int, val_fraction: float = 0.15) -> list[Split]:
    """``k`` splits whose test parts partition the samples (stratified, patient-grouped).

    Within each label, patients are dealt round-robin into folds in hash order, continuing where
    the previous label stopped so fold sizes stay even. Validation is carved per fold from the
    remaining patients of each label.
    """
    if k < 2:
        raise DataError(f"k-fold cross-validation needs k >= 2, got {k}")
    _check_fractions(val_fraction)
    groups = _groups_by_label(samples)
    n_patients = sum(len(p) for p in groups.values())
    if k > n_patients:
        raise DataError(f"cannot make {k} folds from {n_patients} patients")
    fold_of: dict[str, dict[str, int]] = {}
    offset = 0
    for label, patients in sorted(groups.items()):
        order = _ordered(seed, label, patients)
        fold_of[label] = {p: (offset + i) % k for i, p in enumerate(order)}
        offset = (offset + len(order)) % k
    splits = []
    for fold in range(k):
        parts: dict[str, list[str]] = {part: [] for part in PARTS}
        for label, patients in sorted(groups.items()):
            rest = {p: rels for p, rels in patients.items() if fold_of[label][p] != fold}
            for p, rels in patients.items():
                if fold_of[label][p] == fold:
                    parts["test"].extend(rels)
            order = _ordered(seed, label, rest, salt=f"fold{fold}")
            n_val, _ = _sizes(len(order), val_fraction, 0.0)
            if len(order) >= 2 and val_fraction > 0:
                n_val = max(n_val, 1)
            for i, patient in enumerate(order):
                parts["val" if i < n_val else "train"].extend(rest[patient])
        splits.append(Split(seed, *(sorted(parts[p]) for p in PARTS), fold=fold, k=k))
    return splits
