"""The shortcut probe finds a shortcut where one exists and finds none on phantoms."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from spinescan import metrics
from spinescan.evaluation.probes import FEATURE_NAMES, features_for, image_features, run_probes

pytest.importorskip("sklearn")


def test_image_features_by_hand() -> None:
    image = np.zeros((200, 100), dtype=np.uint8)
    image[:, 50:] = 255  # half black, half white
    f = dict(zip(FEATURE_NAMES, image_features(image), strict=True))
    assert f["aspect"] == pytest.approx(0.5) and f["width"] == 100 and f["height"] == 200
    assert f["mean"] == pytest.approx(0.5) and f["std"] == pytest.approx(0.5)
    assert f["hist_00"] == pytest.approx(0.5) and f["hist_15"] == pytest.approx(0.5)
    sixteen = (image.astype(np.uint16) * 257)[:, :, None]  # same picture, 16-bit, channel axis
    np.testing.assert_allclose(image_features(sixteen), image_features(image))


def _size_decides(root: Path, per_class: int = 30) -> tuple[list[Path], list[int]]:
    """Identical noise statistics in both classes; only the width differs (120 vs 160 px)."""
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for label, width in ((0, 120), (1, 160)):
        for i in range(per_class):
            image = rng.integers(0, 256, size=(200 + int(rng.integers(-10, 10)), width), dtype=np.uint8)
            path = root / f"c{label}_{i:03d}.png"
            cv2.imwrite(str(path), image)
            paths.append(path)
            labels.append(label)
    return paths, labels


def test_probe_scores_near_one_when_size_decides_the_label(tmp_path: Path) -> None:
    paths, labels = _size_decides(tmp_path)
    feats = features_for(paths)
    results = {r.name: r for r in run_probes([p.name for p in paths], labels, feats, ["a", "b"], folds=5)}
    for name in ("geometry", "geometry+intensity"):
        r = results[name]
        assert r.folds == 5 and not np.isnan(r.probs).any()
        acc = metrics.accuracy(r.labels, r.probs.argmax(axis=1))
        assert acc >= 0.95, (name, acc)
        assert metrics.ovr_auc(r.labels, r.probs)[0] >= 0.95


def test_probe_is_near_chance_on_shuffled_labels(tmp_path: Path) -> None:
    paths, labels = _size_decides(tmp_path)
    shuffled = np.random.default_rng(1).permutation(labels)  # now size says nothing
    results = run_probes([p.name for p in paths], shuffled, features_for(paths), ["a", "b"], folds=5)
    for r in results:
        assert metrics.accuracy(r.labels, r.probs.argmax(axis=1)) <= 0.75


def test_probe_is_near_chance_on_phantoms(phantom_dir: Path) -> None:
    from spinescan.data.datasets import load_dataset

    dataset = load_dataset(phantom_dir).select(view="lateral")
    classes = sorted({s.label for s in dataset.samples})
    labels = [classes.index(s.label) for s in dataset.samples]
    feats = features_for([s.path for s in dataset.samples])
    chance = 1.0 / len(classes)
    for r in run_probes([s.rel for s in dataset.samples], labels, feats, classes, folds=5):
        acc = metrics.accuracy(r.labels, r.probs.argmax(axis=1))
        assert acc <= chance + 0.25, (r.name, acc)


@pytest.mark.real
def test_probe_finds_the_framing_shortcut_on_real_films(real_dir: Path) -> None:
    """The real AP set's framing bias (issue 7): width/height alone separates its classes."""
    from spinescan.data.datasets import load_dataset

    dataset = load_dataset(real_dir / "fraiwan-kauh-dev", default_view="ap")
    classes = ["healthy", "scoliosis"]
    labels = [classes.index(s.label) for s in dataset.samples]
    feats = features_for([s.path for s in dataset.samples])
    geometry = run_probes([s.rel for s in dataset.samples], labels, feats, classes)[0]
    assert geometry.name == "geometry"
    assert metrics.ovr_auc(geometry.labels, geometry.probs)[0] >= 0.7
