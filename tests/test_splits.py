"""Splits: deterministic, stratified, patient-grouped, shared between specialists and generalist."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from spinescan.data.datasets import Sample
from spinescan.data.splits import Split, kfold_splits, make_split
from spinescan.errors import DataError


def _samples(per_class: dict[str, int], images_per_patient: int = 1) -> list[Sample]:
    out = []
    for label, n_patients in per_class.items():
        for p in range(n_patients):
            for i in range(images_per_patient):
                rel = f"lateral/{label}/p{p:03d}_{i}.png"
                patient = f"{label}-p{p:03d}" if images_per_patient > 1 else rel
                out.append(Sample(Path(rel), rel, label, "lateral", patient, {}))
    return out


LATERAL = {"healthy": 30, "kyphosis": 20, "lordosis": 12}


def _parts(split: Split) -> dict[str, set[str]]:
    return {"train": set(split.train), "val": set(split.val), "test": set(split.test)}


def test_split_partitions_and_is_deterministic_regardless_of_order() -> None:
    samples = _samples(LATERAL)
    split = make_split(samples, seed=3)
    parts = _parts(split)
    assert set().union(*parts.values()) == {s.rel for s in samples}
    assert sum(len(p) for p in parts.values()) == len(samples)
    shuffled = samples[:]
    random.Random(1).shuffle(shuffled)
    assert make_split(shuffled, seed=3) == split
    assert make_split(samples, seed=4).test != split.test


def test_split_is_stratified() -> None:
    samples = _samples(LATERAL)
    split = make_split(samples, seed=0, val_fraction=0.15, test_fraction=0.15)
    labels = {s.rel: s.label for s in samples}
    for part in ("val", "test"):
        counts = Counter(labels[r] for r in getattr(split, part))
        for label, n in LATERAL.items():
            assert counts[label] == round(n * 0.15), (part, label)


def test_every_class_in_every_part_from_three_patients() -> None:
    samples = _samples({"healthy": 3, "kyphosis": 4, "lordosis": 2})
    split = make_split(samples, seed=0)
    labels = {s.rel: s.label for s in samples}
    for part in ("train", "val", "test"):
        present = {labels[r] for r in getattr(split, part)}
        assert {"healthy", "kyphosis"} <= present, part
    assert any(labels[r] == "lordosis" for r in split.train)  # two patients: kept for training first


def test_no_patient_in_two_parts() -> None:
    samples = _samples(LATERAL, images_per_patient=4)
    patient = {s.rel: s.patient_id for s in samples}
    split = make_split(samples, seed=1)
    owners = [{patient[r] for r in part} for part in _parts(split).values()]
    assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])
    assert all(len(part) % 4 == 0 for part in _parts(split).values())


def test_specialist_and_generalist_share_test_images() -> None:
    """The trainer splits the whole view, then keeps its classes; splitting only the specialist's
    classes must give the same test images too."""
    everything = _samples(LATERAL)
    specialist = [s for s in everything if s.label in ("healthy", "lordosis")]
    whole = make_split(everything, seed=7)
    own = make_split(specialist, seed=7)
    assigned = whole.assign(specialist)
    assert {s.rel for s in assigned["test"]} == set(own.test)
    assert {s.rel for s in assigned["val"]} == set(own.val)
    assert {s.label for s in assigned["test"]} == {"healthy", "lordosis"}


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    split = make_split(_samples(LATERAL), seed=2)
    path = split.save(tmp_path / "run" / "split.json")
    assert Split.load(path) == split
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DataError):
        Split.load(tmp_path / "bad.json")


def test_kfold_test_parts_partition_the_data() -> None:
    samples = _samples(LATERAL, images_per_patient=2)
    patient = {s.rel: s.patient_id for s in samples}
    labels = {s.rel: s.label for s in samples}
    folds = kfold_splits(samples, k=5, seed=0)
    assert [f.fold for f in folds] == list(range(5)) and {f.k for f in folds} == {5}
    tests = [set(f.test) for f in folds]
    assert set().union(*tests) == {s.rel for s in samples}
    assert sum(len(t) for t in tests) == len(samples)
    for fold in folds:
        parts = [{patient[r] for r in part} for part in _parts(fold).values()]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert {labels[r] for r in fold.test} == set(LATERAL)
        assert {labels[r] for r in fold.val} == set(LATERAL)
    sizes = [len(t) for t in tests]
    # Patients are dealt round-robin across labels, so fold sizes differ by one patient at most.
    assert max(sizes) - min(sizes) <= 2
    assert kfold_splits(list(reversed(samples)), k=5, seed=0) == folds


def test_bad_arguments() -> None:
    samples = _samples({"healthy": 3, "kyphosis": 3})
    with pytest.raises(DataError):
        make_split(samples, seed=0, val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(DataError):
        make_split([], seed=0)
    with pytest.raises(DataError):
        kfold_splits(samples, k=1, seed=0)
    with pytest.raises(DataError):
        kfold_splits(samples, k=7, seed=0)
