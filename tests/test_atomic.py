"""Atomic writes: a failure mid-write leaves the previous good file untouched."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from spinescan.atomic import atomic_path, atomic_write_json, atomic_write_text


def test_failed_write_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "model.keras"
    atomic_write_text(target, "good")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half-writ")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]  # no temp file left


def test_success_replaces_and_is_world_readable(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "report.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert target.read_text().strip().endswith("}") and '"a": 2' in target.read_text()
    mode = stat.S_IMODE(os.stat(target).st_mode)
    assert mode & stat.S_IRGRP and mode & stat.S_IROTH


def test_temp_keeps_suffix_for_writers_that_check_it(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "m.keras") as tmp:
        assert tmp.suffix == ".keras" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
