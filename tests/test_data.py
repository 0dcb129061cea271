"""Dataset discovery, checks and the samples a model trains on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from spinescan.data.checks import check_dataset, samples_for_spec
from spinescan.data.datasets import UNSPECIFIED_VIEW, load_dataset
from spinescan.errors import DataError


def _img(path: Path, seed: int, size: tuple[int, int] = (48, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 255, size=size, dtype=np.uint8)
    assert cv2.imwrite(str(path), image)
    return path


def _tree(root: Path, layout: dict[str, int], start: int = 0) -> Path:
    """``{"lateral/healthy": 3, ...}`` -> that many distinct PNGs in each folder."""
    seed = start
    for folder, n in layout.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            _img(root / folder / f"{i:03d}.png", seed)
            seed += 1
    return root


def test_class_layout_takes_the_default_view(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"healthy": 3, "lordosis": 2})
    ds = load_dataset(root, default_view="lateral")
    assert ds.layout == "class"
    assert ds.counts() == {"lateral": {"healthy": 3, "lordosis": 2}}
    sample = ds.samples[0]
    assert sample.rel == "healthy/000.png" and sample.patient_id == sample.rel
    assert load_dataset(root).views() == [UNSPECIFIED_VIEW]


def test_view_class_layout_and_select(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"lateral/healthy": 2, "lateral/kyphosis": 3, "ap/healthy": 1, "ap/scoliosis": 2})
    ds = load_dataset(root, default_view="ap")  # the folders name the view; the default is unused
    assert ds.layout == "view/class"
    assert ds.counts() == {"ap": {"healthy": 1, "scoliosis": 2}, "lateral": {"healthy": 2, "kyphosis": 3}}
    assert ds.views() == ["ap", "lateral"]
    lateral = ds.select(view="lateral", classes=["kyphosis"])
    assert len(lateral) == 3 and lateral.labels() == ["kyphosis"]


def test_per_patient_subfolders_are_not_mistaken_for_classes(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"healthy/p01": 2, "scoliosis/p02": 2})
    ds = load_dataset(root, default_view="ap")
    assert ds.layout == "class" and ds.labels() == ["healthy", "scoliosis"]


def test_hidden_files_ignored_and_extensionless_images_found(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"healthy": 1, "kyphosis": 1})
    _img(root / "healthy" / ".hidden.png", 99)
    _img(root / ".cache" / "x.png", 98)
    shutil.copy(_img(tmp_path / "tmp.png", 97), root / "kyphosis" / "IM0002")
    (tmp_path / "tmp.png").unlink()
    (root / "kyphosis" / "README").write_text("notes")
    ds = load_dataset(root, "lateral")
    assert sorted(s.rel for s in ds.samples) == ["healthy/000.png", "kyphosis/000.png", "kyphosis/IM0002"]


def test_manifest_wins_over_folders_and_keeps_extra_columns(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"lateral/healthy": 3})
    (root / "manifest.csv").write_text(
        "file,label,view,patient_id,cobb\n"
        "lateral/healthy/000.png,lordosis,lateral,P1,65\n"
        "lateral/healthy/001.png,healthy,,P1,45\n"
        "lateral/healthy/002.png,healthy,lateral,,50\n"
    )
    ds = load_dataset(root)
    assert ds.layout == "manifest"
    by_rel = {s.rel: s for s in ds.samples}
    assert by_rel["lateral/healthy/000.png"].label == "lordosis"
    assert by_rel["lateral/healthy/001.png"].view == "lateral"  # blank view: taken from the path
    assert by_rel["lateral/healthy/000.png"].patient_id == "P1"
    assert by_rel["lateral/healthy/002.png"].patient_id == "lateral/healthy/002.png"
    assert by_rel["lateral/healthy/000.png"].extra == {"cobb": "65"}
    _img(root / "lateral/healthy/003.png", 10)
    assert len(load_dataset(root)) == 3
    assert any("not listed" in w and "003.png" in w for w in check_dataset(root).warnings)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,label\na.png,healthy\n", "missing column"),
        ("file,label\na.png,healthy\na.png,healthy\n", "already listed"),
        ("file,label\n../a.png,healthy\n", "inside the dataset"),
    ],
)
def test_bad_manifests(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "manifest.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        load_dataset(tmp_path)


def test_mixed_view_and_class_folders_are_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"lateral/healthy": 1, "kyphosis": 1})
    with pytest.raises(DataError, match="mixes view folders"):
        load_dataset(root)


def test_missing_folder_and_no_images(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "healthy").mkdir()
    (tmp_path / "healthy" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no images found"):
        load_dataset(tmp_path)


def test_check_reports_duplicates_unreadable_small_and_empty(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"ap/healthy": 4, "ap/scoliosis": 3})
    (root / "ap" / "empty").mkdir()
    shutil.copy(root / "ap/healthy/000.png", root / "ap/healthy/copy.png")
    (root / "ap/healthy/text.png").write_text("not an image")
    (root / "ap/healthy/zero.png").write_bytes(b"")
    _img(root / "ap/scoliosis/tiny.png", 50, size=(10, 40))
    report = check_dataset(root, min_size=32)
    assert report.ok
    assert report.duplicates_within == [["ap/healthy/000.png", "ap/healthy/copy.png"]]
    assert report.duplicates_across == []
    assert dict(report.unreadable).keys() == {"ap/healthy/text.png", "ap/healthy/zero.png"}
    assert report.too_small == [("ap/scoliosis/tiny.png", "40x10")]
    assert any("ap/empty" in w for w in report.warnings)
    assert report.counts == {"ap": {"healthy": 7, "scoliosis": 4}}
    assert report.imbalance == {"ap": 1.75}

    shutil.copy(root / "ap/healthy/001.png", root / "ap/scoliosis/same.png")
    report = check_dataset(root)
    assert not report.ok
    assert report.duplicates_across == [["ap/healthy/001.png", "ap/scoliosis/same.png"]]
    assert "different labels" in report.errors[0]
    json.dumps(report.to_dict())


def test_samples_for_spec_skips_unreadable_and_names_empty_class(tmp_path: Path) -> None:
    root = _tree(
        tmp_path, {"lateral/healthy": 3, "lateral/lordosis": 2, "lateral/kyphosis": 0, "ap/healthy": 1}
    )
    (root / "lateral/lordosis/bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    ds = load_dataset(root)
    usable, skipped = samples_for_spec(ds, "lateral", ["healthy", "lordosis"])
    assert len(usable) == 5 and {s.view for s in usable} == {"lateral"}
    assert [rel for rel, _ in skipped] == ["lateral/lordosis/bad.png"]
    with pytest.raises(DataError, match="unreadable"):
        samples_for_spec(ds, "lateral", ["healthy", "lordosis"], skip_unreadable=False)
    with pytest.raises(DataError, match="'kyphosis'"):
        samples_for_spec(ds, "lateral", ["healthy", "kyphosis"])
    for path in (root / "lateral/lordosis").glob("0*.png"):
        path.write_bytes(b"")
    with pytest.raises(DataError, match=r"'lordosis'.*unreadable"):
        samples_for_spec(ds, "lateral", ["healthy", "lordosis"])


def test_cli_data_check(tmp_path: Path) -> None:
    from spinescan.cli import build_cli

    root = _tree(tmp_path / "ds", {"healthy": 3, "kyphosis": 2})
    (root / "healthy/broken.png").write_text("nope")
    runner = CliRunner()
    result = runner.invoke(build_cli(), ["data", "check", str(root), "--view", "lateral"])
    assert result.exit_code == 0, result.output
    assert "lateral: 6 images" in result.output and "healthy/broken.png" in result.output

    shutil.copy(root / "healthy/000.png", root / "kyphosis/dup.png")
    result = runner.invoke(build_cli(), ["data", "check", str(root), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["duplicates_across"] == [["healthy/000.png", "kyphosis/dup.png"]]

    result = runner.invoke(build_cli(), ["data", "check", str(tmp_path / "missing")])
    assert result.exit_code != 0 and "not found" in str(result.exception)


@pytest.mark.real
def test_real_films_load_through_the_manifest(real_dir: Path) -> None:
    ds = load_dataset(real_dir / "fraiwan-kauh-dev")
    assert ds.layout == "manifest" and ds.views() == ["ap"]
    assert set(ds.labels()) == {"healthy", "scoliosis"} and len(ds) >= 90
    assert {"framing", "md5"} <= set(ds.samples[0].extra)
    usable, skipped = samples_for_spec(ds, "ap", ["healthy", "scoliosis"])
    assert skipped == [] and len(usable) == len(ds)


# --- one rule for `data check` and `train` (issue 26 #8) -------------------------------------------


def _constant_png(path: Path, value: int = 0, size: tuple[int, int] = (48, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full(size, value, np.uint8))


@pytest.mark.parametrize("kind", ["empty", "constant", "one-pixel", "one-class-constant", "good"])
def test_data_check_and_training_agree_on_what_is_usable(tmp_path: Path, kind: str) -> None:
    """Before: 150 empty PNGs in three class folders were `ok: true` for `data check` (exit 0) and
    refused by `train`. Now both apply `unusable_classes` to the same per-file inspection."""
    from spinescan.cli import build_cli

    classes = ("healthy", "kyphosis", "lordosis")
    root = tmp_path / "ds"
    for c, cls in enumerate(classes):
        for i in range(50 if kind != "good" else 3):
            path = root / cls / f"{i:03d}.png"
            if kind == "empty":
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")
            elif kind == "constant" or (kind == "one-class-constant" and cls == "kyphosis"):
                _constant_png(path, value=(i * 7 + c) % 256)  # distinct files: no duplicate errors
            elif kind == "one-pixel":
                _constant_png(path, value=(i * 7 + c) % 256, size=(1, 1))
            else:
                _img(path, seed=100 * c + i)
    report = check_dataset(root, default_view="lateral")
    try:
        samples_for_spec(load_dataset(root, "lateral"), "lateral", classes)
        train_accepts = True
    except DataError as exc:
        train_accepts = False
        assert any(str(exc) == e for e in report.errors), (str(exc), report.errors)
    assert report.ok == train_accepts == (kind == "good"), report.errors
    result = CliRunner().invoke(build_cli(), ["data", "check", str(root), "--view", "lateral", "--json"])
    assert result.exit_code == (0 if kind == "good" else 1), result.output
    assert json.loads(result.stdout)["ok"] is (kind == "good")


def test_no_read_check_cannot_judge_content_and_keeps_its_old_answer(tmp_path: Path) -> None:
    """--no-read hashes without decoding: constant images are not judged (documented as fast but
    blind to content); empty files are still unreadable there, and still only warnings."""
    for cls in ("healthy", "kyphosis"):
        for i in range(3):
            _constant_png(tmp_path / cls / f"{i}.png", value=i + (cls == "kyphosis") * 10)
    assert check_dataset(tmp_path, default_view="lateral", read=False).ok
    assert not check_dataset(tmp_path, default_view="lateral").ok
