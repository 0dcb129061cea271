"""An export's ``manifest.json`` as the predictor reads it (issue 26 #10-#12): malformed entries
are refused in one line where the document is read, no entry may name a file outside the export
version, and one call reads the manifest and every model from one resolved version."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

import pytest
from test_predictor import toy_model, write_manifest

from spinescan.edge import manifest, model_files, predictor
from spinescan.edge.predictor import ModelRefusedError, OnnxModel, sha256_file

SHA = "0" * 64


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    d = tmp_path / "exported"
    d.mkdir()
    toy_model(d / "toy.onnx")
    write_manifest(d, "toy.onnx")
    return d


def _rewrite(folder: Path, edit) -> None:
    doc = json.loads((folder / "manifest.json").read_text())
    edit(doc)
    (folder / "manifest.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda d: d["models"]["toy"].update(file=5), "'file' must be a file name"),
        (lambda d: d["models"]["toy"].pop("file"), "'file' must be a file name"),
        (lambda d: d["models"]["toy"].update(file=""), "'file' must be a file name"),
        (lambda d: d["models"].update(toy=["toy.onnx", SHA]), "expected an object, got list"),
        (lambda d: d["models"].update(toy="toy.onnx"), "expected an object, got str"),
        (lambda d: d["models"]["toy"].update(int8=3), "'int8' must be an object or null"),
        (lambda d: d["models"]["toy"].update(int8={"shipped": "yes"}), "'shipped' must be true or false"),
        (lambda d: d["models"]["toy"].update(int8={"shipped": True}), "int8: 'file' must be a file name"),
        (
            lambda d: d["models"]["toy"].update(int8={"shipped": True, "file": "t8.onnx", "sha256": 7}),
            "int8 'sha256' must be 64 hex digits",
        ),
        (lambda d: d["models"]["toy"].update(sha256=None), "'sha256' must be 64 hex digits"),
        (lambda d: d["models"]["toy"].update(sha256="abc"), "'sha256' must be 64 hex digits"),
        (lambda d: d["models"]["toy"].update(card=["x"]), "card"),
        (lambda d: d.update(predictor={"a": 1}), "predictor"),
        (lambda d: d.update(models=[]), "not a Spine Scan export manifest"),
    ],
)
def test_malformed_manifest_entries_are_refused_in_one_line(
    exported: Path, edit, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _rewrite(exported, edit)
    with pytest.raises(ModelRefusedError, match=re.escape(says)) as info:
        predictor.model_paths(exported)
    assert "\n" not in str(info.value)
    with pytest.raises(ModelRefusedError):
        predictor.resolve_model("toy", exported)
    # the command line: exit 2, one line on stderr, no traceback
    assert predictor.main([str(exported / "toy.onnx"), "--models", str(exported)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and says.split("'")[0] in err


@pytest.mark.parametrize("raw", [b"\xff\xfe not utf-8", b"[" * 100_000 + b"]" * 100_000, b"{"])
def test_unreadable_manifest_is_one_line(exported: Path, raw: bytes) -> None:
    (exported / "manifest.json").write_bytes(raw)
    with pytest.raises(ModelRefusedError, match="unreadable manifest") as info:
        predictor.model_paths(exported)
    assert "\n" not in str(info.value)


def test_an_oversized_manifest_is_not_read_whole(exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifest, "MANIFEST_MAX_BYTES", 1000)
    (exported / "manifest.json").write_text(json.dumps({"models": {}, "pad": "x" * 2000}))
    with pytest.raises(ModelRefusedError, match="larger than"):
        predictor.model_paths(exported)


@pytest.mark.parametrize("where", ["absolute", "dotdot", "subfolder", "int8-absolute", "backslash"])
def test_a_file_outside_the_export_version_is_never_loaded(
    tmp_path: Path, exported: Path, where: str
) -> None:
    """Before: an absolute ``file`` skipped the sha256 check (the folder it named had no manifest)
    and another model was loaded under the entry's name."""
    outside = tmp_path / "outside"
    outside.mkdir()
    other = toy_model(outside / "other.onnx", name="toy")
    names = {
        "absolute": str(other),
        "dotdot": "../outside/other.onnx",
        "subfolder": "sub/other.onnx",
        "int8-absolute": str(other),
        "backslash": "..\\outside\\other.onnx",
    }

    def edit(doc: dict) -> None:
        entry = doc["models"]["toy"]
        if where == "int8-absolute":
            entry["int8"] = {"shipped": True, "file": names[where], "sha256": sha256_file(other)}
        else:
            entry.update(file=names[where], sha256=sha256_file(other))

    _rewrite(exported, edit)
    loaded: list[str] = []
    real_init = OnnxModel.__init__

    def spy(self, path, verify=True):
        loaded.append(str(path))
        real_init(self, path, verify)

    with pytest.raises(ModelRefusedError, match=r"leaves the export folder|beside the manifest"):
        for path in predictor.model_paths(exported, int8=True):
            spy(OnnxModel.__new__(OnnxModel), path)
    with pytest.raises(ModelRefusedError, match="leaves the export folder"):
        predictor.predict_image(tmp_path / "x.png", "toy", exported)
    assert loaded == []


def test_plain_names_rule() -> None:
    ok = ["a.onnx", "generalist.int8.onnx", "card.md", "predict.py", "..a.onnx"]
    bad = ["", ".", "..", "/a.onnx", "../a.onnx", "a/b.onnx", "a\\b.onnx", "a\0.onnx", " a.onnx"]
    bad += ["C:a.onnx", 5]
    assert all(manifest.is_plain_name(n) for n in ok)
    assert not any(manifest.is_plain_name(n) for n in bad)


# --- one call, one version ------------------------------------------------------------------------


def _two_versions(root: Path) -> Path:
    """An export folder in the published layout with two complete versions: ``.v-a`` lists
    ``m`` and ``a``; ``.v-b`` lists ``m`` (a different file) and ``b``."""
    out = root / "exported"
    for version, (only, width) in {".v-a": ("a", 24), ".v-b": ("b", 20)}.items():
        folder = out / version
        folder.mkdir(parents=True)
        toy_model(folder / "m.onnx", name="m", input_size=(32, width, 1))
        toy_model(folder / f"{only}.onnx", name=only)
        write_manifest(folder, "m.onnx", f"{only}.onnx")
    os.symlink(".v-a", out / "current")
    for name in ("manifest.json", "m.onnx", "a.onnx", "b.onnx"):
        os.symlink(f"current/{name}", out / name)
    return out


def _flip(out: Path) -> None:
    target = ".v-b" if os.readlink(out / "current") == ".v-a" else ".v-a"
    tmp = out / ".tmp-link-test"
    os.symlink(target, tmp)
    os.replace(tmp, out / "current")


def test_current_switched_right_after_the_manifest_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic: ``current`` flips just after each manifest read. Before the fix the
    manifest came from one version and the models through ``current`` from the other."""
    out = _two_versions(tmp_path)
    real = manifest.read_manifest
    armed = [False]

    def read_then_flip(folder):
        doc = real(folder)
        if armed[0]:  # the call's first read only (a model's own check reads it again)
            armed[0] = False
            _flip(out)
        return doc

    # the call's own read (model_paths, resolve_model), not the model's check
    monkeypatch.setattr(model_files, "read_manifest", read_then_flip)
    for _ in range(4):
        armed[0] = True
        paths = predictor.model_paths(out)
        models = [OnnxModel(p) for p in paths]
        names = {m.name for m in models}
        assert names in ({"m", "a"}, {"m", "b"})
        armed[0] = True
        path = predictor.resolve_model("m", out)
        assert OnnxModel(path).name == "m"


def test_predictor_calls_while_current_flips_in_a_loop(tmp_path: Path) -> None:
    """A publisher thread flips ``current`` as fast as it can while the predictor loads the
    export again and again (bounded: 40 calls); every call sees one complete version."""
    out = _two_versions(tmp_path)
    stop = threading.Event()

    def flipper() -> None:
        while not stop.is_set():
            _flip(out)
            time.sleep(0.0005)  # let the predictor run between flips

    thread = threading.Thread(target=flipper, daemon=True)
    thread.start()
    failures: list[str] = []
    try:
        for _ in range(40):
            try:
                models = [OnnxModel(p) for p in predictor.model_paths(out)]
                assert {m.name for m in models} in ({"m", "a"}, {"m", "b"})
            except ModelRefusedError as exc:
                failures.append(str(exc))
    finally:
        stop.set()
        thread.join(timeout=10)
    assert failures == []


# --- fuzz: any JSON document is either a valid manifest or one ModelRefusedError ---------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_names = st.sampled_from(["toy.onnx", "/etc/passwd", "../x.onnx", "a/b.onnx", "", ".", "x.md", "t.int8.onnx"])
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8), _names
)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(["file", "sha256", "int8", "shipped", "card", "models", "predictor", "x"]),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entry=_json, top=_json)
def test_any_manifest_document_is_valid_or_one_refusal(tmp_path: Path, entry: object, top: object) -> None:
    with_int8 = {"models": {"toy": {"file": "toy.onnx", "sha256": SHA, "int8": entry}}}
    for doc in ({"models": {"toy": entry}}, top, with_int8):
        try:
            valid = manifest.validate_manifest(doc, tmp_path / "manifest.json")
        except ModelRefusedError as exc:
            assert "\n" not in str(exc)
            continue
        for item in valid["models"].values():  # what callers do with a valid one never fails
            for name in manifest.manifest_files(item):
                assert manifest.is_plain_name(name)
