"""The eleven ways in that the adversarial pass of issue #12 found, one test (or more) each.

Every numbered test below failed on commit 631966e and passes now; the number is the issue's.
Memory-hungry originals (a 3 GB sparse file, /dev/zero) run in a subprocess under an address-space
limit, and hanging ones (a FIFO) under a timeout, so a regression fails the test instead of the
machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import weakref
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from spinescan.edge import predictor
from spinescan.errors import ImageReadError, SpineScanError
from spinescan.radiograph.imageio import read_image

ROOT = Path(__file__).resolve().parent.parent
RNG = np.random.default_rng(12)


def film(height: int = 96, width: int = 64, dtype: type = np.uint8) -> np.ndarray:
    """A smooth, non-constant grey film."""
    base = np.add.outer(np.linspace(0, 1, height), np.linspace(0, 0.5, width))
    noise = RNG.random((height, width)) * 0.1
    x = (base + noise) / 1.6
    high = 65535 if dtype == np.uint16 else 255
    return (x * high).astype(dtype)


def toy_models(folder: Path) -> list[predictor.OnnxModel]:
    """Two tiny exported models (see tests/test_predictor.py), verified against their manifest."""
    from test_predictor import toy_model, write_manifest

    folder.mkdir(parents=True, exist_ok=True)
    toy_model(folder / "toy.onnx")
    write_manifest(folder, "toy.onnx")
    return [predictor.OnnxModel(p) for p in predictor.model_paths(folder)]


def run_predict_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = predictor.main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def strict_json(text: str) -> object:
    """json.loads that refuses NaN/Infinity (they are not JSON)."""

    def refuse(value: str) -> None:
        raise ValueError(f"invalid JSON constant {value}")

    return json.loads(text, parse_constant=refuse)


def run_limited(
    code: str, timeout: float = 30, address_space: int = 1536 * 2**20
) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with a memory cap and a timeout (kills on expiry)."""
    prelude = textwrap.dedent(
        f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({address_space}, {address_space}))
        """
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


# --- 1 and 10: export is all or nothing; stale staging is cleaned ------------------------------------


@pytest.fixture(scope="module")
def first_export(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from spinescan.export.exporter import export_runs

    out = tmp_path_factory.mktemp("first") / "exported"
    report = export_runs([trained_run], out)
    report.raise_for_failures()
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    """What a reader of ``folder`` sees: top-level names and their content (links followed)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def predictor_accepts(folder: Path) -> dict[str, str]:
    """Load every model the folder's manifest lists, sha256 checked; ``{file name: sha256}``."""
    found = {}
    for path in predictor.model_paths(folder):
        model = predictor.OnnxModel(path)
        found[path.name] = predictor.sha256_file(model.path)
    return found


@pytest.mark.slow
def test_01_failed_multi_model_export_keeps_the_previous_set(
    trained_run: Path, first_export: Path, tmp_path: Path
) -> None:
    from spinescan.export.exporter import export_runs

    out = tmp_path / "exported"
    shutil.copytree(first_export, out, symlinks=True)
    before = snapshot(out)
    accepted = predictor_accepts(out)
    broken = tmp_path / "runs" / "generalist" / "broken"
    shutil.copytree(trained_run, broken)
    model = broken / "model.keras"
    model.write_bytes(model.read_bytes()[: 100 * 1024])  # truncated to 100 kB: a Keras error
    try:
        report = export_runs([trained_run, broken], out)
    except SpineScanError:
        report = None  # a one-line refusal is fine; any other exception type is the bug
    if report is not None:
        assert list(report.failed) == [str(broken)] and not report.exported
        assert "\n" not in report.failed[str(broken)]
        with pytest.raises(SpineScanError, match="previous files kept"):
            report.raise_for_failures()
    assert snapshot(out) == before
    assert predictor_accepts(out) == accepted
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]


@pytest.mark.slow
def test_10_stale_staging_of_a_killed_export_is_cleaned(
    first_export: Path, trained_run: Path, tmp_path: Path
) -> None:
    from spinescan.export.exporter import export_runs

    out = tmp_path / "exported"
    shutil.copytree(first_export, out, symlinks=True)
    stale = out / ".staging-killed1"
    (stale / "run0").mkdir(parents=True)
    (stale / "run0" / "generalist.onnx").write_bytes(b"half a model")
    export_runs([trained_run], out).raise_for_failures()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".staging")]
    assert set(predictor_accepts(out)) == {"generalist.onnx"}


# A SIGKILL at every step of a publish, in a forked child: afterwards the predictor must accept
# either the complete old set or the complete new set, and the next publish must succeed.
_STEPS = {os: ("replace", "rename", "symlink", "link", "unlink"), shutil: ("rmtree", "copy2")}


def _new_set(folder: Path, names: tuple[str, ...], seed: int) -> tuple[dict, dict, dict]:
    from test_predictor import toy_model

    folder.mkdir(parents=True)
    entries, files = {}, {}
    for i, name in enumerate(names):
        path = toy_model(folder / f"{name}.onnx", name=name, input_size=(32, 30 + seed + i, 1))
        entries[name] = {"file": path.name, "sha256": predictor.sha256_file(path), "card": f"{name}.md"}
        files[path.name] = path
    return entries, files, {f"{name}.md": f"card of {name}" for name in names}


def _publish(out: Path, new: Path, seed: int, kill_at: int = 0) -> int:
    """Publish a new set (models a and c) into ``out``; with ``kill_at``, in a child that SIGKILLs
    itself right after that file-system step. Returns the number of steps (0 when killed)."""
    from spinescan.export import publish as pub

    entries, files, cards = _new_set(new, ("a", "c"), seed)
    pid = os.fork() if kill_at else 0
    if pid:
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
        return 0
    calls = [0]
    real = {(mod, name): getattr(mod, name) for mod, names in _STEPS.items() for name in names}

    def counting(fn):
        def step(*args, **kwargs):
            result = fn(*args, **kwargs)
            calls[0] += 1
            if calls[0] == kill_at:  # killed right after this step
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        return step

    for (mod, name), fn in real.items():
        setattr(mod, name, counting(fn))
    try:
        with pub.ExportLock(out) as lock:
            lock.clean_stale(lambda _m: None)
            staging = out / f".staging-test{seed}"
            staging.mkdir()
            pub.publish(out, staging / "set", entries, files, cards, echo=lambda _m: None)
            real[(shutil, "rmtree")](staging)
    finally:
        for (mod, name), fn in real.items():
            setattr(mod, name, fn)
    return calls[0]


def test_01_sigkill_at_any_step_of_an_export_leaves_one_complete_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_predictor import toy_model, write_manifest

    monkeypatch.setattr(os, "fsync", lambda fd: None)  # durability is not under test; speed is

    old = tmp_path / "old"  # an export as the previous version wrote it: plain files
    old.mkdir()
    toy_model(old / "a.onnx", name="a")
    toy_model(old / "b.onnx", name="b", input_size=(32, 20, 1))
    write_manifest(old, "a.onnx", "b.onnx")
    old_set = predictor_accepts(old)

    first = tmp_path / "first"
    shutil.copytree(old, first)
    steps = _publish(first, tmp_path / "new-first", 0)  # adopts the plain files, then switches
    new_set = predictor_accepts(first)
    assert set(new_set) == {"a.onnx", "b.onnx", "c.onnx"} and new_set["b.onnx"] == old_set["b.onnx"]
    assert new_set["a.onnx"] != old_set["a.onnx"] and steps > 5
    later = tmp_path / "later"  # a folder already in the new layout, switched again
    shutil.copytree(first, later, symlinks=True)
    later_steps = _publish(later, tmp_path / "new-later", 1)
    cases = [(old, k) for k in range(1, steps + 1)] + [(first, k) for k in range(1, later_steps + 1)]
    outcomes = set()
    for n, (start, kill_at) in enumerate(cases):
        out = tmp_path / f"out{n}"
        shutil.copytree(start, out, symlinks=True)
        before = predictor_accepts(out)
        _publish(out, tmp_path / f"new{n}", 1 if start is first else 0, kill_at)
        seen = predictor_accepts(out)
        after = predictor_accepts(later) if start is first else new_set
        assert seen in (before, after), f"killed at step {kill_at} of {start.name}: a mixed set {seen}"
        outcomes.add("new" if seen == after else "old")
        _publish(out, tmp_path / f"again{n}", 2)  # the next export recovers and cleans up
        assert not [p for p in out.iterdir() if p.name.startswith((".staging", ".tmp-link"))]
        assert len([p for p in out.iterdir() if p.name.startswith(".v-")]) <= 2
        assert set(predictor_accepts(out)) == {"a.onnx", "b.onnx", "c.onnx"}
    assert outcomes == {"old", "new"}


# --- 2: non-finite pixels -------------------------------------------------------------------------


def _float_tiff(path: Path, bad: float) -> Path:
    image = film().astype(np.float32)
    image[10, 10] = bad
    ok, buf = cv2.imencode(".tiff", image)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_02_non_finite_pixels_are_refused_and_json_stays_json(
    tmp_path: Path, bad: float, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _float_tiff(tmp_path / "film.tif", bad)
    with pytest.raises(ImageReadError, match="non-finite"):
        read_image(path)
    toy_models(tmp_path / "exported")
    code, out, _err = run_predict_cli([str(path), "--models", str(tmp_path / "exported"), "--json"], capsys)
    assert code == 1
    results = strict_json(out)
    assert [r.get("error", "") for r in results] and "non-finite" in results[0]["error"]


def test_02_data_check_lists_a_nan_film_as_unreadable(tmp_path: Path) -> None:
    from spinescan.data.checks import check_dataset

    for label in ("healthy", "kyphosis"):
        (tmp_path / label).mkdir()
        for i in range(2):
            cv2.imwrite(str(tmp_path / label / f"{i}.png"), film() + i + (label == "kyphosis"))
    _float_tiff(tmp_path / "healthy" / "nan.tif", np.nan)
    report = check_dataset(tmp_path, default_view="lateral")
    assert ("healthy/nan.tif", "non-finite pixel values (NaN or infinity)") in report.unreadable


@pytest.mark.slow
def test_02_training_never_records_a_nan_model(
    phantom_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Non-finite values that get past the reader (here injected into the decoded arrays) stop
    training with one line before any model is saved."""
    from spinescan.cli import main
    from spinescan.training import pipeline

    real = pipeline.load_arrays

    def poisoned(samples, spec, *args, **kwargs):
        x = real(samples, spec, *args, **kwargs)
        x[:] = np.nan
        return x

    monkeypatch.setattr(pipeline, "load_arrays", poisoned)
    runs = tmp_path / "runs"
    args = ["train", "generalist", "--data", str(phantom_dir), "--runs", str(runs), "--epochs", "2"]
    with pytest.raises(SystemExit) as info:
        main([*args, "--image-size", "32", "--batch-size", "16", "--quiet"])
    assert info.value.code != 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Error")]
    assert len(err) == 1 and "loss is nan" in err[0], err
    assert not list(runs.rglob("model.keras"))
    assert not [p for p in runs.rglob("metrics.json") if json.loads(p.read_text()).get("finished")]


# --- 3: duplicated TIFF tags ----------------------------------------------------------------------


def _tiff_with_duplicate_size(path: Path, big: int, small: int) -> Path:
    """An 8-bit deflate TIFF whose IFD declares ImageWidth and ImageLength twice: big, then small."""
    pixels = (np.add.outer(np.arange(big), np.arange(big)) % 251).astype(np.uint8)
    strip = zlib.compress(pixels.tobytes(), 9)
    entries = [
        (256, 4, 1, big),
        (256, 4, 1, small),
        (257, 4, 1, big),
        (257, 4, 1, small),
        (258, 3, 1, 8),
        (259, 3, 1, 8),  # Adobe deflate
        (262, 3, 1, 1),
        (273, 4, 1, 0),  # strip offset, patched below
        (277, 3, 1, 1),
        (278, 4, 1, big),
        (279, 4, 1, len(strip)),
    ]
    ifd_offset = 8
    data_offset = ifd_offset + 2 + 12 * len(entries) + 4
    entries[7] = (273, 4, 1, data_offset)
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        ifd += struct.pack("<HHI", tag, typ, count) + (
            struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
        )
    ifd += struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", ifd_offset) + ifd + strip)
    return path


def test_03_tiff_declaring_its_size_twice_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPINESCAN_MAX_PIXELS", "1000000")  # 2000 x 2000 is over it, 40 x 40 is not
    path = _tiff_with_duplicate_size(tmp_path / "twice.tif", 2000, 40)
    with pytest.raises(ImageReadError, match="ImageWidth appears more than once"):
        read_image(path)


# --- 4: memory bounded in bytes; the predictor streams --------------------------------------------


def _png_header_only(width: int, height: int, depth: int, colour: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_04_decoded_bytes_not_only_pixels_are_limited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 9999 x 9999 is under the 100 Mpx pixel limit, but 16-bit RGBA makes it 800 MB decoded.
    bomb = tmp_path / "rgba16.png"
    bomb.write_bytes(_png_header_only(9999, 9999, 16, 6))
    with pytest.raises(ImageReadError, match="decoded, over the"):
        read_image(bomb)
    # The same rule on a real file with a lowered limit: 16-bit RGBA refused, 8-bit grey accepted.
    monkeypatch.setenv("SPINESCAN_MAX_IMAGE_BYTES", str(1_000_000))
    rgba = cv2.cvtColor(film(300, 300, np.uint16), cv2.COLOR_GRAY2BGRA)
    cv2.imwrite(str(tmp_path / "big.png"), cv2.resize(rgba, (400, 400)))  # 1.28 MB decoded
    cv2.imwrite(str(tmp_path / "grey.png"), film(400, 400))  # 160 kB decoded
    assert read_image(tmp_path / "grey.png").shape == (400, 400)
    with pytest.raises(ImageReadError, match="decoded, over the"):
        read_image(tmp_path / "big.png")


def test_04_predictor_holds_one_decoded_image_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = tmp_path / "films"
    images.mkdir()
    for i in range(20):
        cv2.imwrite(str(images / f"{i:02d}.png"), film() + i)
    models = toy_models(tmp_path / "exported")
    real = predictor.read_image
    alive: list[weakref.ref] = []
    most = [0]

    def tracking(*args, **kwargs):
        image = real(*args, **kwargs)
        alive.append(weakref.ref(image))
        most[0] = max(most[0], sum(ref() is not None for ref in alive))
        return image

    monkeypatch.setattr(predictor, "read_image", tracking)
    results = predictor.classify_files(predictor.expand_inputs([str(images)]), models)
    assert len(results) == 20 and all("label" in r for r in results)
    assert most[0] == 1


# --- 5: regular files only, format and size before reading ----------------------------------------


def test_05_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "film.png"
    os.mkfifo(fifo)
    try:
        done = run_limited(
            f"""
            from spinescan.radiograph.imageio import read_image
            from spinescan.errors import ImageReadError
            try:
                read_image({str(fifo)!r})
            except ImageReadError as exc:
                print("REFUSED", exc)
            """,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("reading a FIFO hangs")
    assert "REFUSED" in done.stdout and "FIFO" in done.stdout, done.stderr


@pytest.mark.parametrize("kind", ["dev_zero", "sparse_3gb"])
def test_05_huge_or_endless_files_are_refused_before_reading(tmp_path: Path, kind: str) -> None:
    if kind == "dev_zero":
        target = "/dev/zero"
    else:
        sparse = tmp_path / "huge.png"
        with open(sparse, "wb") as fh:
            fh.write(b"\x89PNG\r\n\x1a\n")
            fh.truncate(3 * 2**30)  # 3 GB, no disk used
        target = str(sparse)
    try:
        done = run_limited(
            f"""
            from spinescan.radiograph.imageio import read_image
            from spinescan.errors import ImageReadError
            try:
                read_image({target!r})
            except ImageReadError as exc:
                print("REFUSED", exc)
            """,
            timeout=60,
            address_space=1024 * 2**20,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading {target} does not end")
    assert "REFUSED" in done.stdout, done.stderr[-500:]
    assert "MemoryError" not in done.stderr


# --- 6: a JPEG cut mid-scan, closed with an end-of-image marker ----------------------------------


def _jpeg(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.9])
def test_06_jpeg_cut_mid_scan_with_eoi_appended_is_refused(tmp_path: Path, fraction: float) -> None:
    data = _jpeg(film(200, 160))
    sos = data.index(b"\xff\xda")
    cut = data[: sos + int((len(data) - 2 - sos) * fraction)]
    path = tmp_path / "cut.jpg"
    path.write_bytes(cut.rstrip(b"\xff") + b"\xff\xd9")
    with pytest.raises(ImageReadError, match="truncated jpeg"):
        read_image(path)


def test_06_a_jpeg_that_really_ends_in_mid_grey_is_accepted(tmp_path: Path) -> None:
    image = film(200, 160)
    image[-40:, -40:] = 128  # genuinely mid-grey corner: the libjpeg confirmation must clear it
    path = tmp_path / "grey-corner.jpg"
    path.write_bytes(_jpeg(image))
    assert read_image(path).shape == (200, 160)


# --- 7: corrupt or unsafe model.keras ----------------------------------------------------------


def _lambda_model(path: Path) -> None:
    import keras

    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="logits")(x)
    keras.Model(inputs, outputs).save(path)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "lambda"])
@pytest.mark.parametrize("command", ["export", "init-from"])
def test_07_corrupt_or_unsafe_model_file_is_one_line(
    trained_run: Path,
    phantom_dir: Path,
    tmp_path: Path,
    damage: str,
    command: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from spinescan.cli import main

    run = tmp_path / "runs" / "generalist" / "damaged"
    shutil.copytree(trained_run, run)
    model = run / "model.keras"
    if damage == "truncated":
        model.write_bytes(model.read_bytes()[: 100 * 1024])
    else:
        _lambda_model(model)
    if command == "export":
        # --allow-weak: the one-epoch model may sit at chance; this test is about the damaged file.
        args = ["export", "--onnx", "--run", str(run), "--out", str(tmp_path / "exported"), "--allow-weak"]
    else:
        args = ["train", "generalist", "--data", str(phantom_dir), "--runs", str(tmp_path / "new")]
        args += ["--init-from", str(run), "--epochs", "1", "--image-size", "48", "--quiet"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code != 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Error")]
    assert len(err) == 1, err
    assert str(model) in err[0] and "File not found" not in err[0]
    if damage == "lambda":
        assert "safe mode" in err[0]


# --- 8: tiny and constant images ------------------------------------------------------------------


@pytest.mark.parametrize("image", [np.full((1, 1), 200, np.uint8), np.full((120, 80), 90, np.uint8)])
def test_08_tiny_or_constant_images_are_refused(
    tmp_path: Path, image: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "film.png"
    cv2.imwrite(str(path), image)
    toy_models(tmp_path / "exported")
    code, out, _err = run_predict_cli([str(path), "--models", str(tmp_path / "exported"), "--json"], capsys)
    assert code == 1
    (result,) = strict_json(out)
    assert "smaller than the minimum of 32 px" in result["error"] or "constant image" in result["error"]


# --- 9: the same file under two labels stops training ---------------------------------------------


@pytest.mark.slow
def test_09_train_refuses_a_file_filed_under_two_labels(
    phantom_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from spinescan.cli import main

    data = tmp_path / "data"
    for label in ("healthy", "kyphosis", "lordosis"):
        source = sorted((phantom_dir / "lateral" / label).glob("*.png"))[:12]
        (data / label).mkdir(parents=True)
        for path in source:
            shutil.copy(path, data / label / path.name)
    shutil.copy(data / "healthy" / "lateral_healthy_00000.png", data / "kyphosis" / "copy.png")
    args = ["train", "generalist", "--data", str(data), "--runs", str(tmp_path / "runs"), "--epochs", "1"]
    with pytest.raises(SystemExit) as info:
        main([*args, "--image-size", "32", "--quiet"])
    assert info.value.code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Error")]
    assert len(err) == 1 and "identical files under different labels (healthy, kyphosis)" in err[0]
    assert not list((tmp_path / "runs").rglob("model.keras"))


# --- 11: symlink loops are reported -------------------------------------------------------------


def _looping_folder(root: Path) -> Path:
    (root / "healthy").mkdir(parents=True)
    (root / "kyphosis").mkdir()
    for i, label in enumerate(("healthy", "healthy", "kyphosis", "kyphosis")):
        cv2.imwrite(str(root / label / f"{i}.png"), film() + i)
    (root / "healthy" / "again").symlink_to("..")  # a folder pointing back up
    (root / "kyphosis" / "a.png").symlink_to("b.png")  # a chain that never ends
    (root / "kyphosis" / "b.png").symlink_to("a.png")
    return root


def test_11_symlink_loops_are_reported_by_the_predictor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _looping_folder(tmp_path / "films")
    toy_models(tmp_path / "exported")
    _code, out, err = run_predict_cli([str(folder), "--models", str(tmp_path / "exported"), "--json"], capsys)
    loops = [line for line in err.splitlines() if "symlink loop" in line]
    assert len(loops) >= 2 and all("warning" in line for line in loops)
    assert any("again" in line for line in loops) and any("a.png" in line for line in loops)
    assert len([r for r in strict_json(out) if "label" in r]) == 4


def test_11_symlink_loops_are_reported_by_data_check(tmp_path: Path) -> None:
    from spinescan.data.checks import check_dataset

    report = check_dataset(_looping_folder(tmp_path / "data"), default_view="lateral")
    loops = [w for w in report.warnings if "symlink loop" in w]
    assert len(loops) >= 2
    assert sum(report.counts["lateral"].values()) == 4
