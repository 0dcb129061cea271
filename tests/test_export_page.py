"""The browser page is part of the export version (issue 26 #4): written into the staged set,
switched in with the models in one step; a full disk while writing it leaves ``current`` (models
and page) as it was, with one line and no traceback.

The runs are staged by a stand-in for ``stage_run`` that writes the tiny hand-built ONNX models of
test_predictor, so nothing here trains or converts (TensorFlow is not needed)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
from test_predictor import toy_model
from test_serve import _fake_source

from spinescan.edge import predictor
from spinescan.errors import SpineScanError
from spinescan.export import exporter
from spinescan.export.webpage import GENERATED_FILES, SOURCE_FILES, build_web


@pytest.fixture
def staged_by_toys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """``stage_run(run_dir, ...)`` writes a toy model named after ``run_dir``; the page comes from
    a fake ``web/`` whose ``index.html`` says which export wrote it (``source/stamp``)."""
    source = _fake_source(tmp_path / "web-source")

    def stage_run(run_dir: Path, staging: Path, **_kwargs: object) -> exporter.Staged:
        name = run_dir.name
        path = toy_model(staging / f"{name}.onnx", name=name)
        entry = {"file": path.name, "sha256": predictor.sha256_file(path), "card": f"{name}.md"}
        return exporter.Staged(name, {path.name: path}, entry, f"card of {name}")

    monkeypatch.setattr(exporter, "stage_run", stage_run)
    monkeypatch.setattr(exporter, "build_web", lambda target: build_web(target, source))
    return source


def _stamp(source: Path, text: str) -> None:
    (source / "src" / "index.html").write_text(text)


def _state(out: Path) -> tuple[str, str, dict[str, str]]:
    """What a reader sees: the version ``current`` names, the page's index.html, the models."""
    page = (out / "web" / "index.html").read_text()
    models = {p.name: predictor.sha256_file(p) for p in predictor.model_paths(out)}
    return os.readlink(out / "current"), page, models


def test_the_page_is_in_the_version_and_switched_with_it(staged_by_toys: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    _stamp(staged_by_toys, "page one")
    exporter.export_runs([tmp_path / "runs" / "a"], out).raise_for_failures()
    assert (out / "web").is_symlink() and os.readlink(out / "web") == "current/web"
    version = Path(os.path.realpath(out / "current"))
    assert (version / "web" / "index.html").read_text() == "page one"
    assert sorted(p.name for p in (version / "web").iterdir()) == sorted(
        [*SOURCE_FILES, *GENERATED_FILES, "ort"]
    )
    _stamp(staged_by_toys, "page two")
    exporter.export_runs([tmp_path / "runs" / "b"], out).raise_for_failures()
    current, page, models = _state(out)
    assert page == "page two" and set(models) == {"a.onnx", "b.onnx"} and current != version.name
    assert not [p.name for p in out.iterdir() if p.name.startswith((".staging", ".web", ".tmp-link"))]


@pytest.mark.parametrize("fail_at", [1, 3, len(SOURCE_FILES) + 2])
def test_a_full_disk_while_writing_the_page_leaves_current_as_it_was(
    staged_by_toys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int
) -> None:
    """Before: `current` was switched first, then write_web failed: exit 1 with a traceback and
    no web/. Now the page is staged with the models, so the export fails before the switch."""
    out = tmp_path / "exported"
    _stamp(staged_by_toys, "old page")
    exporter.export_runs([tmp_path / "runs" / "a"], out).raise_for_failures()
    before = _state(out)
    _stamp(staged_by_toys, "new page")
    real_copy = shutil.copyfile
    calls = [0]

    def full_disk(src, dst, *args, **kwargs):
        if "web" in str(dst) or "ort" in str(dst):
            calls[0] += 1
            if calls[0] == fail_at:
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_copy(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", full_disk)
    with pytest.raises(SpineScanError) as info:
        exporter.export_runs([tmp_path / "runs" / "b"], out)
    message = str(info.value)
    assert "No space left" in message and "previous set is unchanged" in message and "\n" not in message
    assert _state(out) == before
    assert not [p.name for p in out.iterdir() if p.name.startswith((".staging", ".web", ".tmp-link"))]
    monkeypatch.setattr(shutil, "copyfile", real_copy)
    exporter.export_runs([tmp_path / "runs" / "b"], out).raise_for_failures()  # the disk has room again
    assert _state(out)[1] == "new page"


def test_without_npm_the_previous_page_is_carried_over(staged_by_toys: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    _stamp(staged_by_toys, "page one")
    echoed: list[str] = []
    exporter.export_runs([tmp_path / "runs" / "a"], out).raise_for_failures()
    shutil.rmtree(staged_by_toys / "node_modules")  # `npm ci` not run any more
    exporter.export_runs([tmp_path / "runs" / "b"], out, echo=echoed.append).raise_for_failures()
    _current, page, models = _state(out)
    assert page == "page one" and set(models) == {"a.onnx", "b.onnx"}
    assert any("npm ci" in line for line in echoed) and any("kept the previous" in line for line in echoed)


def test_an_older_export_s_plain_page_folder_becomes_the_link(staged_by_toys: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported"
    out.mkdir()
    (out / "web").mkdir()
    (out / "web" / "index.html").write_text("plain old page")
    _stamp(staged_by_toys, "versioned page")
    exporter.export_runs([tmp_path / "runs" / "a"], out).raise_for_failures()
    assert os.readlink(out / "web") == "current/web"
    assert _state(out)[1] == "versioned page"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".web")]


def test_the_page_s_read_out_constants_are_generated_from_python(tmp_path: Path) -> None:
    """``readout.js`` is written from spinescan.radiograph (levels, smoothing kernel, plausibility
    numbers, the built-in angles with their thresholds and sources), and web/src holds no copy of
    a threshold or of a number the Python names (issue 23 #2)."""
    import json
    import re

    from spinescan.export.webpage import READOUT_FILE, readout_module, web_source
    from spinescan.radiograph import plausibility, thresholds
    from spinescan.radiograph.angle_defs import readout_constants

    build_web(tmp_path / "web", _fake_source(tmp_path / "source"))
    written = (tmp_path / "web" / READOUT_FILE).read_text(encoding="utf-8")
    assert written == readout_module()
    body = json.loads(written.split("Object.freeze(", 1)[1].rsplit(");", 1)[0])
    assert {k: v for k, v in body.items() if k != "document"} == json.loads(json.dumps(readout_constants()))
    kyphosis = body["angles"]["thoracic_kyphosis_deg"]["thresholds"]
    assert [t["limit"] for t in kyphosis] == [thresholds.KYPHOSIS_NORMAL_MIN, thresholds.KYPHOSIS_THRESHOLD]
    assert body["plausibility"]["collapsed_severe"] == plausibility.COLLAPSED_SEVERE
    src = web_source() / "src"
    NUMBERS = [rf"(?<![\d.]){n}(\.0)?\b" for n in ("45", "65", "35")]  # 0.45 (an alpha) is no copy
    for name in ("landmarks.js", "app.js", "modeldoc.js"):
        text = (src / name).read_text(encoding="utf-8")
        for copied in (*NUMBERS, r">= ?9\b", r"THRESHOLD =", r'"T4-T12"', r'"#00c800"'):
            assert not re.search(copied, text), f"{name} holds a hand copy ({copied})"
