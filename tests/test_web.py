"""The browser page, in headless Chromium: same probabilities, landmarks, angles and labels as
spinescan-predict, nothing leaves the page's origin, bad files get a message on the page.

Two tiny compact classifiers (a lateral generalist and an AP scoliosis model with ``spine_crop`` on
a non-square input) are built without training and made to vary with the input (the export tests'
trick), and the two landmark models (``cobb`` AP, ``sagittal`` lateral, ``spine_band``) are trained
for a few epochs at 64 x 64 on the session's phantoms (meaningless angles, but points that vary
with the film and confident enough visibility for some angles to be measured); all four are
written as run directories and exported through the CLI, which writes ``exported/web``.
The films: phantoms written here as PNG (8/16-bit, grey/RGB/RGBA/palette) and JPEG (grey and
colour), plus, when ``../shared/data/real`` is present, real AP films and the lateral sample.
The browser is Debian's ``chromium`` driven by Playwright (``.ci/run`` installs it); the test is
skipped only where neither exists, which CI never is.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from spinescan.edge import predictor
from spinescan.radiograph.imageio import read_image
from spinescan.radiograph.preprocess import Preprocessing, film_placement, preprocess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: CI (``.ci/run``) sets it: there a missing browser is a failure, never a skip.
REQUIRE_BROWSER = os.environ.get("SPINESCAN_REQUIRE_BROWSER") == "1"


@pytest.fixture(scope="module", autouse=True)
def _browser() -> None:
    """Skip (before any model is built) where Debian's chromium is missing, or fail under
    ``SPINESCAN_REQUIRE_BROWSER=1``."""
    if CHROMIUM is None:
        why = "Debian chromium is not installed (.ci/run and scripts/install-system-deps.sh install it)"
        if REQUIRE_BROWSER:
            pytest.fail(f"SPINESCAN_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)


TOLERANCE = 1e-3
#: Landmarks, page against the CLI's JSON (which rounds to 0.01 px): film pixels. The model runs in
#: onnxruntime-web's wasm kernels there and the native CPU ones here (float32 either way); the
#: measured gap is printed, and far below this.
POINT_TOLERANCE_PX = 0.5
#: Angles against the CLI's JSON (rounded to 0.01 deg).
ANGLE_TOLERANCE_DEG = 0.05
#: A point whose visibility probability is this close to 0.5 may be read as visible by one runtime
#: and not by the other (float32 noise between two correct implementations); a film with such a
#: point is excused from the exact null comparison, and counted.
VISIBILITY_MARGIN = 1e-5
#: The landmark models' tiny training (few epochs, raised learning rate so the visibility logits
#: leave 0 and some angles get measured).
LANDMARK_TRAINING = {"epochs": 3, "learning_rate": 1e-2}
N_MODELS = 5  # a classifier and a landmark model per view, and the view guard


def _guard_data(phantom_dir: Path, out: Path) -> Path:
    """A view-guard dataset (``manifest.csv``, view ``any``): phantoms labelled by their view and
    rotated copies of some labelled ``other``, enough for an untrained guard's export."""
    import csv

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for view in ("ap", "lateral"):
        for i, src in enumerate(sorted((phantom_dir / view).rglob("*.png"))[:24]):
            name = f"{view}-{i}.png"
            shutil.copyfile(src, out / name)
            rows.append({"file": name, "label": view, "view": "any"})
            if i % 2 == 0:
                grey = cv2.imread(str(src), cv2.IMREAD_GRAYSCALE)
                cv2.imwrite(str(out / f"other-{name}"), cv2.rotate(grey, cv2.ROTATE_90_CLOCKWISE))
                rows.append({"file": f"other-{name}", "label": "other", "view": "any"})
    with open(out / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "label", "view"])
        writer.writeheader()
        writer.writerows(rows)
    return out


def _write_run(phantom_dir: Path, runs_dir: Path, name: str, input_size: tuple[int, int, int], prep) -> Path:
    """An untrained compact model whose outputs vary with the film, saved as a finished run
    (``phantom_dir``: any dataset holding the spec's view)."""
    import keras
    from test_export import _make_outputs_vary

    from spinescan.data.datasets import load_dataset
    from spinescan.data.splits import make_split
    from spinescan.training import inference
    from spinescan.training.runs import RunDir
    from spinescan.zoo.backbones import build_classifier
    from spinescan.zoo.registry import get_spec

    keras.utils.set_random_seed(0)
    spec = replace(get_spec(name), input_size=input_size, preprocessing=prep)
    dataset = load_dataset(phantom_dir, default_view=spec.view).select(view=spec.view, classes=spec.classes)
    split = make_split(dataset.samples, seed=0)
    parts = split.assign(dataset.samples)
    index = {c: i for i, c in enumerate(spec.classes)}

    def arrays(part: str) -> tuple[np.ndarray, np.ndarray]:
        samples = parts[part]
        x = np.stack([preprocess(read_image(s.path), spec.input_size, spec.preprocessing) for s in samples])
        return x, np.array([index[s.label] for s in samples])

    model = build_classifier(spec, "compact")
    _make_outputs_vary(model, arrays("train")[0], scale=4.0)
    run_dir = runs_dir / spec.name / "20250101-000000-s0"
    run_dir.mkdir(parents=True)
    rundir = RunDir(run_dir)
    model.save(rundir.model_file)
    split.save(rundir.file(RunDir.SPLIT))
    config = {
        "run_id": run_dir.name,
        "arguments": {"model": spec.name, "backbone": "compact", "seed": 0},
        "spec": spec.summary(),
        "dataset": {"root": str(phantom_dir)},
    }
    rundir.write_json(RunDir.CONFIG, config)
    results, predictions = {}, {}
    for part in ("val", "test"):
        x, y = arrays(part)
        probs = inference.predict_arrays(model, x)
        results[part] = inference.summarize_predictions(y, probs, spec.classes)
        predictions[part] = ([s.rel for s in parts[part]], [s.label for s in parts[part]], probs)
    rundir.write_predictions(spec.classes, predictions)
    metrics = {
        "finished": True,
        "run_id": run_dir.name,
        "backbone": "compact",
        "classes": list(spec.classes),
        "counts": {p: len(v) for p, v in parts.items()},
        **results,
    }
    rundir.write_json(RunDir.METRICS, metrics)
    return run_dir


def _train_landmarks(phantom_dir: Path, runs_dir: Path, name: str) -> Path:
    """A landmark model from a tiny training through the shared loop (as tests/test_landmark_zoo)."""
    from spinescan.training.loop import TrainConfig, train
    from spinescan.training.settings import RunSettings

    config = TrainConfig(
        model=name,
        data=phantom_dir,
        runs_dir=runs_dir,
        settings=RunSettings(image_size=64),
        hparams=dict(LANDMARK_TRAINING),
    )
    return train(config).run_dir


@pytest.fixture(scope="module")
def exported(phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from spinescan.cli import main
    from spinescan.export.exporter import export_runs

    runs_dir = tmp_path_factory.mktemp("web-runs")
    lateral = _write_run(phantom_dir, runs_dir, "generalist", (64, 64, 1), Preprocessing())
    ap = _write_run(
        phantom_dir, runs_dir, "scoliosis", (96, 32, 1), Preprocessing(resize="spine_crop", crop_aspect=0.2)
    )
    guard_data = _guard_data(phantom_dir, tmp_path_factory.mktemp("guard-data"))
    guard = _write_run(guard_data, runs_dir, "view", (64, 64, 1), Preprocessing())
    t0 = time.perf_counter()
    landmark_runs = [_train_landmarks(phantom_dir, runs_dir, name) for name in ("cobb", "sagittal")]
    out = tmp_path_factory.mktemp("web-exported")
    for run in (lateral, ap, guard):
        with contextlib.suppress(SystemExit):
            main(["export", "--onnx", "--run", str(run), "--out", str(out), "--allow-weak"])
    # The landmark runs through the exporter itself, as tests/test_landmark_zoo.py does: the CLI's
    # weak-model gate (export.selection.assess) reads a classifier's predictions.csv only.
    t1 = time.perf_counter()
    export_runs(landmark_runs, out).raise_for_failures()
    print(f"\nlandmark models: trained in {t1 - t0:.1f} s, exported in {time.perf_counter() - t1:.1f} s")
    assert (out / "web" / "index.html").is_file(), (
        "the export must write the page (is web/node_modules there?)"
    )
    return out


def _phantom_films(phantom_dir: Path, out: Path) -> dict[str, list[Path]]:
    """Phantoms in the formats the page must read exactly like OpenCV does."""
    out.mkdir(parents=True, exist_ok=True)
    films: dict[str, list[Path]] = {"lateral": [], "ap": []}
    for view in ("lateral", "ap"):
        sources = sorted((phantom_dir / view).rglob("*.png"))[::5][:10]
        for i, src in enumerate(sources):
            grey = cv2.imread(str(src), cv2.IMREAD_GRAYSCALE)
            grey = cv2.resize(
                grey, (grey.shape[1] + 37 * i, grey.shape[0] + 53 * (i % 3)), interpolation=cv2.INTER_LINEAR
            )
            variants = {
                "grey8.png": grey,
                "grey16.png": (
                    grey.astype(np.uint16) * 257
                    + np.arange(grey.size, dtype=np.uint16).reshape(grey.shape) % 97
                ),
                "rgb.png": cv2.merge([grey, (grey * 0.9).astype(np.uint8), grey // 2]),
                "rgba.png": cv2.merge([grey, grey, grey, np.full_like(grey, 128)]),
                "grey.jpg": grey,
                "colour.jpg": cv2.merge([grey, (grey * 0.8).astype(np.uint8), grey]),
            }
            name, image = list(variants.items())[i % len(variants)]
            path = out / f"{view}-{i}-{name}"
            cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90] if name.endswith(".jpg") else [])
            films[view].append(path)
    return films


def _real_films() -> dict[str, list[Path]]:
    """Every 6th real AP film and the lateral sample (``SPINESCAN_REAL_DIR`` overrides where)."""
    from conftest import REAL_DIR as default

    REAL_DIR = Path(os.environ.get("SPINESCAN_REAL_DIR") or default)
    if not (REAL_DIR / "fraiwan-kauh-dev").is_dir():
        return {"lateral": [], "ap": []}
    ap = sorted((REAL_DIR / "fraiwan-kauh-dev").rglob("*.jpg"))
    return {"lateral": sorted((REAL_DIR / "lateral-sample").glob("*.png")), "ap": ap[::6]}


def _bad_files(out: Path, good_png: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    data = good_png.read_bytes()
    files = {
        "truncated.png": data[: len(data) // 2],
        "notes.png": b"these are not pixels\n",
        "empty.jpg": b"",
        "film.bmp": cv2.imencode(".bmp", np.zeros((8, 8), np.uint8))[1].tobytes(),
    }
    for name, content in files.items():
        (out / name).write_bytes(content)
    return [out / n for n in files]


@contextlib.contextmanager
def _serving(folder: Path):
    from spinescan.cli.serve import make_server

    server = make_server(folder, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _wait(page, expression: str, timeout_s: float) -> None:
    """Poll ``expression`` (page.wait_for_function evaluates strings with eval, which the page's
    Content-Security-Policy rightly forbids)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}: status {page.inner_text('#status')!r}")
        page.wait_for_timeout(100)


def _predict_cli(models: Path, view: str, films: list[Path]) -> dict[str, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = predictor.main([*map(str, films), "--models", str(models), "--view", view, "--json"])
    assert code == 0
    return {(Path(r["image"]).name, r["model"]): r for r in json.loads(out.getvalue())}


def test_page_matches_spinescan_predict(exported: Path, phantom_dir: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    films = _phantom_films(phantom_dir, tmp_path / "films")
    real = _real_films()
    for view in films:
        films[view] += real[view]
    bad = _bad_files(tmp_path / "bad", films["lateral"][0])
    n_films = sum(len(v) for v in films.values())
    assert n_films >= 20
    expected = {view: _predict_cli(exported, view, paths) for view, paths in films.items()}

    requests: list[str] = []
    console_errors: list[str] = []
    with _serving(exported) as origin, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()

        def route(r):  # every request the page makes; anything off-origin is refused and recorded
            requests.append(r.request.url)
            if r.request.url.startswith(origin + "/"):
                r.continue_()
            else:
                r.abort()

        page.route("**/*", route)
        page.on("console", lambda m: m.type == "error" and console_errors.append(m.text))
        page.on("pageerror", lambda e: console_errors.append(str(e)))
        page.goto(f"{origin}/")
        _wait(page, f"window.spineScan && window.spineScan.models.length === {N_MODELS}", 60)
        submitted = 0
        for view in ("ap", "lateral"):
            page.select_option("#view", view)
            page.set_input_files("#files", [str(p) for p in films[view]])
            submitted += len(films[view])
            _wait(page, f"window.spineScan.results.length === {submitted}", 120)
        page.set_input_files("#files", [str(p) for p in bad])
        submitted += len(bad)
        _wait(page, f"window.spineScan.results.length === {submitted}", 60)
        results = page.evaluate("window.spineScan.results")
        models_line = page.inner_text("#models")
        page_errors = page.evaluate("window.spineScan.errors")
        error_texts = page.locator(".film.error .error-message").all_inner_texts()
        # A card's view picker reads the film again from its file (no decoded film is kept).
        page.locator(".film").nth(0).locator("select").select_option("lateral")
        _wait(page, "!!document.querySelector('.film').querySelector('tr[data-model=generalist]')", 60)
        assert page.locator(".film").nth(0).locator(".error-message").count() == 0
        # The tensor itself, for one PNG and one JPEG per view: the port, not just its outcome.
        tensors = {}
        for view, model in (("lateral", "generalist"), ("ap", "scoliosis")):
            for path in (films[view][0], films[view][-1]):
                got = page.evaluate(
                    "([b, m]) => window.spineScan.preprocessBytes(b, m)", [list(path.read_bytes()), model]
                )
                tensors[path.name] = (got, model, path)
        unflagged = _unflagged_angles(page, results, {p.name: p for v in films.values() for p in v})
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        screenshot = os.environ.get("SPINESCAN_WEB_SCREENSHOT")  # docs/ figure, on request
        if screenshot:
            page.locator(".film").nth(0).screenshot(path=screenshot)
        browser.close()

    assert all(u.startswith(origin + "/") for u in requests), [
        u for u in requests if not u.startswith(origin)
    ]
    assert any(u.endswith(".wasm") for u in requests) and any(u.endswith(".onnx") for u in requests)
    assert console_errors == []

    assert page_errors == []
    assert "cobb (ap, landmarks and angles)" in models_line
    assert "sagittal (lateral, landmarks and angles)" in models_line
    by_file = {r["file"]: r for r in results}
    worst = 0.0
    compared = 0
    landmark_check = _LandmarkParity(exported, unflagged)
    for view, paths in films.items():
        for path in paths:
            page_result = by_file[path.name]
            assert not page_result.get("error"), page_result
            # a classifier and a landmark model per view were exported; only that view's run
            assert sorted(r["model"] for r in page_result["results"]) == sorted(
                m for v, m in expected[view] if v == path.name
            )
            assert len(page_result["results"]) == 2
            for r in page_result["results"]:
                cli = expected[view][(path.name, r["model"])]
                assert r.get("weak") == cli.get("weak"), r["model"]  # --allow-weak marks on both
                if r.get("task") == "landmarks":
                    landmark_check.compare(path, r, cli)
                    continue
                diff = max(abs(r["probabilities"][c] - p) for c, p in cli["probabilities"].items())
                worst = max(worst, diff)
                assert diff <= TOLERANCE, (path.name, r["probabilities"], cli["probabilities"])
                assert r["label"] == cli["label"], path.name
                assert r["heatmap"] and r["heatmap"]["class"] == r["label"]
                compared += 1
    assert compared == n_films
    print(f"\n{compared} films, page vs spinescan-predict: max |dp| = {worst:.2e}")
    landmark_check.report(n_films, [p.name for v in real.values() for p in v])

    for name, (got, model, path) in tensors.items():
        paths = predictor.model_paths(exported)
        onnx_model = next(predictor.OnnxModel(p) for p in paths if predictor.OnnxModel(p).name == model)
        want = onnx_model.prepare(read_image(path))[0].ravel()
        diff = np.abs(np.asarray(got["tensor"], dtype=np.float32) - want).max()
        limit = 1e-5 if path.suffix == ".png" else 1e-4  # JPEG: the browser decodes it (measured 1.2e-7)
        print(f"{name}: max |dx| page vs numpy tensor {diff:.2e}")
        assert diff <= limit, (name, diff)

    for path in bad:
        message = by_file[path.name].get("error", "")
        assert message.startswith(path.name + ": "), message
    assert len(error_texts) == len(bad)
    assert any("truncated" in t for t in error_texts) and any("empty file" in t for t in error_texts)
    assert any("BMP films are not read by this page" in t for t in error_texts)


def test_page_view_guard_matches_spinescan_predict(exported: Path, phantom_dir: Path, tmp_path: Path) -> None:
    """The view menu's "auto" runs the guard first, as spinescan-predict does without --view: the
    same guard label (probabilities within TOLERANCE), the same models run, the same skipped
    models with the same reasons (a film called "other": every model skipped, "not a spine
    radiograph"), and the same readings from the models that ran."""
    from playwright.sync_api import sync_playwright

    out = tmp_path / "films"
    out.mkdir()
    films = []
    for view in ("ap", "lateral"):
        for i, src in enumerate(sorted((phantom_dir / view).rglob("*.png"))[1::9][:4]):
            films.append(out / f"{view}-{i}.png")
            shutil.copyfile(src, films[-1])
    rng = np.random.default_rng(0)
    grey = cv2.imread(str(films[0]), cv2.IMREAD_GRAYSCALE)
    extra = {
        "noise.png": rng.integers(0, 256, (200, 150)).astype(np.uint8),
        "rotated.png": cv2.rotate(grey, cv2.ROTATE_90_CLOCKWISE),
        "upside-down.png": cv2.flip(grey, 0),
        "inverted.png": 255 - grey,
    }
    for name, image in extra.items():
        films.append(out / name)
        cv2.imwrite(str(films[-1]), image)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert predictor.main([*map(str, films), "--models", str(exported), "--json"]) == 0
    cli: dict[str, list[dict]] = {}
    for r in json.loads(buf.getvalue()):
        cli.setdefault(Path(r["image"]).name, []).append(r)
    with _serving(exported) as origin, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{origin}/web/")
        _wait(page, f"window.spineScan && window.spineScan.models.length === {N_MODELS}", 60)
        assert page.input_value("#view") == "auto"  # the guard picks by default
        page.set_input_files("#files", [str(p) for p in films])
        _wait(page, f"window.spineScan.results.length === {len(films)}", 120)
        results = page.evaluate("window.spineScan.results")
        browser.close()
    landmark_check = _LandmarkParity(exported)
    verdicts = []
    for entry in results:
        want = cli[entry["file"]]
        assert [r["model"] for r in entry["results"]] == [r["model"] for r in want], entry["file"]
        guard, guard_cli = entry["results"][0], want[0]
        assert guard["task"] == guard_cli["task"] == "view"
        assert guard["label"] == guard_cli["label"] and guard.get("reason") == guard_cli.get("reason")
        for c, p in guard_cli["probabilities"].items():
            assert abs(guard["probabilities"][c] - p) <= TOLERANCE
        verdicts.append(guard["label"])
        for got, exp in zip(entry["results"][1:], want[1:], strict=True):
            assert got.get("skipped") == exp.get("skipped"), (entry["file"], got, exp)
            if exp.get("skipped"):
                assert got["label"] is None and exp["label"] is None
            elif exp.get("task") == "landmarks":
                landmark_check.compare(out / entry["file"], got, exp)
            else:
                assert got["label"] == exp["label"]
    print(f"\nview guard on {len(films)} films (untrained guard): page and CLI agree; verdicts {verdicts}")


def _unflagged_angles(page, results: list[dict], films: dict[str, Path]) -> dict[tuple[str, str], dict]:
    """The page's angles measured from its own points of each film, without the implausibility
    flag (``measureLandmarks``): the tiny test models' readings are rightly flagged severe, which
    nulls their angles, so the angle parity on model output is checked on these."""
    items = []
    for entry in results:
        for r in entry.get("results") or []:
            if r.get("task") == "landmarks" and "error" not in r and entry["file"] in films:
                items.append(
                    [
                        entry["file"],
                        r["model"],
                        r["landmarks"],
                        list(read_image(films[entry["file"]]).shape[:2]),
                    ]
                )
    got = page.evaluate(
        "(items) => items.map(([f, m, p, hw]) => { const model = window.spineScan.models.find((x) => "
        "x.name === m); return window.spineScan.measureLandmarks(p, model.view, hw, model.view === 'ap' "
        "? 'midlines' : 'endplates').angles; })",
        items,
    )
    return {(f, m): a for (f, m, _p, _hw), a in zip(items, got, strict=True)}


class _LandmarkParity:
    """A landmark model's page reading against spinescan-predict --json for the same film: the same
    points (within POINT_TOLERANCE_PX; null for the same points), angles within
    ANGLE_TOLERANCE_DEG, the same nulls, reasons, notes, label and label reason."""

    def __init__(self, exported: Path, unflagged: dict[tuple[str, str], dict] | None = None) -> None:
        self.unflagged = unflagged or {}
        self.flagged = 0
        self.models = {
            m.name: m
            for m in (predictor.OnnxModel(p) for p in predictor.model_paths(exported))
            if m.info.task == "landmarks"
        }
        self.worst_px = self.worst_px_raw = 0.0
        self.worst_deg = self.worst_deg_raw = 0.0
        self.worst_visibility = 0.0
        self.compared: list[str] = []
        self.excused: list[str] = []
        self.measured = {"ap": 0, "lateral": 0}
        self.labelled = 0

    def compare(self, path: Path, page: dict, cli: dict) -> None:
        assert "error" not in cli, cli
        model = self.models[page["model"]]
        x, context = model.prepare(read_image(path))
        output = model.predict(x[None])[0]
        reading = model.read(output, context)  # unrounded, for the printed figures
        prob = 1.0 / (1.0 + np.exp(-output[:, 2].astype(np.float64)))
        self.worst_visibility = max(
            self.worst_visibility, float(np.abs(np.asarray(page["visibility"][: len(prob)]) - prob).max())
        )
        if np.abs(prob - 0.5).min() < VISIBILITY_MARGIN:
            self.excused.append(path.name)
            return
        name = f"{path.name} {page['model']}"
        assert page["label"] == cli["label"], (name, page, cli)
        assert page["label_reason"] == cli.get("label_reason"), name
        assert page["reasons"] == cli["reasons"], name
        assert page["notes"] == cli.get("notes", {}), name
        assert page["plausibility"] == cli["plausibility"], name
        assert list(page["measurements"]) == list(cli["measurements"]), name
        if cli["plausibility"]["severity"] == "severe" and (path.name, page["model"]) in self.unflagged:
            self._compare_unflagged(path, page, model, reading, name)
        for key, want in cli["measurements"].items():
            got = page["measurements"][key]
            assert (got is None) == (want is None), (name, key, got, want)
            if want is not None:
                self.worst_deg = max(self.worst_deg, abs(got - want))
                assert abs(got - want) <= ANGLE_TOLERANCE_DEG, (name, key, got, want)
                self.worst_deg_raw = max(self.worst_deg_raw, abs(got - reading["angles"][key].value))
                self.measured[model.info.view] += 1
        raw = np.concatenate([reading["landmarks"], reading["sacrum"]])
        assert len(page["landmarks"]) == len(cli["landmarks"]) == 70
        for got, want, exact in zip(page["landmarks"], cli["landmarks"], raw, strict=True):
            assert (got is None) == (want is None), name
            if want is not None:
                self.worst_px = max(self.worst_px, abs(got[0] - want[0]), abs(got[1] - want[1]))
                self.worst_px_raw = max(self.worst_px_raw, float(np.abs(np.asarray(got) - exact).max()))
        assert self.worst_px <= POINT_TOLERANCE_PX, (name, self.worst_px)
        self.labelled += cli["label"] is not None
        self.compared.append(name)

    def _compare_unflagged(self, path: Path, page: dict, model, reading: dict, name: str) -> None:
        """A severely flagged reading: the angles the page measures from its points without the
        flag against the Python's from its points, as before the flag existed."""
        from spinescan.radiograph.angles import ap_angles, lateral_angles
        from spinescan.radiograph.coronal import PREDICTION_READOUT

        hw = read_image(path).shape[:2]
        if model.info.view == "ap":
            want = ap_angles(reading["landmarks"], image_size=hw, readout=PREDICTION_READOUT)
        else:
            want = lateral_angles(reading["landmarks"], reading["sacrum"], image_size=hw)
        got = self.unflagged[(path.name, page["model"])]
        self.flagged += 1
        for key in model.info.measurements:
            a, b = got[key]["value"], want[key].value
            assert (a is None) == (b is None), (name, key, a, b)
            if b is not None:
                self.worst_deg = max(self.worst_deg, abs(a - b))
                assert abs(a - b) <= ANGLE_TOLERANCE_DEG, (name, key, a, b)
                self.measured[model.info.view] += 1

    def report(self, n_films: int, real: list[str]) -> None:
        print(
            f"landmarks on {len(self.compared)} films, page vs spinescan-predict: max |dxy| = "
            f"{self.worst_px:.2e} px, max |d angle| = {self.worst_deg:.2e} deg (the JSON rounds to 0.01; "
            f"unrounded: {self.worst_px_raw:.2e} px, {self.worst_deg_raw:.2e} deg), "
            f"max |d visibility| = {self.worst_visibility:.1e}; {sum(self.measured.values())} angles "
            f"measured {self.measured}, {self.labelled} labels; excused (visibility within "
            f"{VISIBILITY_MARGIN} of 0.5): {self.excused}; {self.flagged} readings flagged severe "
            "(their angles compared without the flag)"
        )
        assert len(self.excused) <= 2, self.excused  # noise, not a habit
        assert len(self.compared) + len(self.excused) == n_films  # n_films >= 20, asserted above
        # The tiny training must leave something to compare: measured angles in both views.
        assert self.measured["ap"] > 0 and self.measured["lateral"] > 0, self.measured
        done = {c.split(" ")[0] for c in self.compared} | set(self.excused)
        assert set(real) <= done, set(real) - done  # the real AP films and the lateral sample


def _interlaced_png(grey: np.ndarray) -> bytes:
    """An Adam7-interlaced 8-bit grey PNG (neither OpenCV nor Pillow writes one), filters cycling
    through all five types so the page's unfiltering is exercised on every one."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    def filtered(line: np.ndarray, prev: np.ndarray, kind: int) -> bytes:
        x, b = line.astype(np.int32), prev.astype(np.int32)
        a = np.concatenate([[0], x[:-1]])
        c = np.concatenate([[0], b[:-1]])
        if kind == 4:
            p = a + b - c
            pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
            pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        else:
            pred = [np.zeros_like(x), a, b, (a + b) // 2][kind]
        return bytes([kind]) + ((x - pred) % 256).astype(np.uint8).tobytes()

    h, w = grey.shape
    raw = b""
    row = 0
    for x0, y0, dx, dy in (
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ):
        sub = grey[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        prev = np.zeros(sub.shape[1], dtype=np.uint8)
        for line in sub:
            raw += filtered(line, prev, row % 5)
            prev, row = line, row + 1
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 1)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def _odd_films(phantom_dir: Path, out: Path) -> list[Path]:
    """Layouts and sizes the first test does not cover: palette, 1-bit, grey+alpha, 16-bit RGB,
    a film smaller than the model input (OpenCV's enlarging INTER_AREA) and a very wide one."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    src = sorted((phantom_dir / "ap").rglob("*.png"))[3]
    grey = cv2.imread(str(src), cv2.IMREAD_GRAYSCALE)
    paths = []

    def save(name: str, write) -> None:
        paths.append(out / name)
        write(paths[-1])

    save("palette.png", lambda p: Image.fromarray(grey).convert("P", palette=Image.Palette.ADAPTIVE).save(p))
    save("onebit.png", lambda p: Image.fromarray(grey).convert("1").save(p))
    save("grey-alpha.png", lambda p: Image.fromarray(np.dstack([grey, 255 - grey]), "LA").save(p))
    rgb16 = np.dstack(
        [grey.astype(np.uint16) * 250, grey.astype(np.uint16) * 200, grey.astype(np.uint16) * 100]
    )
    save("rgb16.png", lambda p: cv2.imwrite(str(p), rgb16))
    save("tiny.png", lambda p: cv2.imwrite(str(p), cv2.resize(grey, (11, 23), interpolation=cv2.INTER_AREA)))
    save("wide.jpg", lambda p: cv2.imwrite(str(p), cv2.resize(grey, (700, 90))))
    save("interlaced.png", lambda p: p.write_bytes(_interlaced_png(cv2.resize(grey, (77, 131)))))
    assert np.array_equal(cv2.imread(str(paths[-1]), cv2.IMREAD_UNCHANGED), cv2.resize(grey, (77, 131)))
    return paths


SETTINGS = [
    ((64, 64, 1), Preprocessing()),
    ((48, 40, 3), Preprocessing(intensity="percentile", pad_value=0.25)),
    ((80, 24, 1), Preprocessing(resize="spine_crop", crop_aspect=0.3, intensity="divide255")),
    ((40, 56, 1), Preprocessing(resize="spine_crop", crop_aspect=2.0)),
    # the landmark models' resize: columns cut only from films wider than the aspect, rows kept
    ((64, 64, 1), Preprocessing(resize="spine_band", crop_aspect=0.375)),
    ((72, 40, 1), Preprocessing(resize="spine_band", crop_aspect=1.5, intensity="percentile")),
]


def test_port_matches_preprocess_for_every_setting(exported: Path, phantom_dir: Path, tmp_path: Path) -> None:
    """The JS port against the numpy function on every intensity mode, resize mode, padding,
    channel count, enlarging and shrinking, and the PNG layouts OpenCV expands differently."""
    from playwright.sync_api import sync_playwright

    films = _odd_films(phantom_dir, tmp_path)
    worst: dict[str, float] = {}
    with _serving(exported) as origin, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{origin}/web/")
        _wait(page, f"window.spineScan && window.spineScan.models.length === {N_MODELS}", 60)
        for path in films:
            data = list(path.read_bytes())
            for input_size, prep in SETTINGS:
                spec = {"input_size": list(input_size), "preprocessing": prep.to_dict()}
                got = page.evaluate("([b, s]) => window.spineScan.preprocessBytes(b, s)", [data, spec])
                want = preprocess(read_image(path), input_size, prep)
                diff = float(np.abs(np.asarray(got["tensor"], dtype=np.float32) - want.ravel()).max())
                worst[path.name] = max(worst.get(path.name, 0.0), diff)
                film = read_image(path)
                placement = film_placement(film, input_size, prep)
                assert got["geometry"] == placement.to_geometry(film.shape[:2], input_size[:2]), (
                    path.name,
                    prep,
                )
        browser.close()
    print("\nworst |dx| per film over the settings:", {k: f"{v:.1e}" for k, v in worst.items()})
    assert max(worst.values()) <= 1e-5, worst


def _landmark_cases(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, tuple[int, int]]]:
    """Synthetic spines (corners and S1 endplate in film pixels) that take every branch of the
    angle read-out: all vertebrae visible, one vertebra or scattered corners missing, the spine
    partly off the film (rows), the sacrum missing, straight and strongly curved spines."""
    rng = np.random.default_rng(seed)
    h, w = 300, 120
    cases = []
    for n_case in range(n):
        xs = 60 + 20 * np.sin(np.linspace(0, rng.uniform(1, 6), 17) + rng.uniform(0, 6)) * rng.uniform(0, 2)
        ys = np.linspace(20, 260, 17)
        tilt = rng.normal(0, rng.uniform(0, 0.4), 17) * (n_case % 9 != 0)  # every 9th: straight
        offsets = np.array([(-8, -5), (8, -5), (-8, 5), (8, 5)], dtype=np.float64)
        cos, sin = np.cos(tilt)[:, None], np.sin(tilt)[:, None]
        corners = np.stack(
            [
                xs[:, None] + offsets[:, 0] * cos - offsets[:, 1] * sin,
                ys[:, None] + offsets[:, 0] * sin + offsets[:, 1] * cos,
            ],
            axis=-1,
        ).reshape(68, 2)
        mode = n_case % 4
        if mode == 1:
            k = int(rng.integers(0, 17))
            corners[4 * k : 4 * k + 4] = np.nan
        elif mode == 2:
            corners[rng.choice(68, int(rng.integers(1, 30)))] = np.nan
        elif mode == 3:
            corners[:, 1] += rng.uniform(-150, 150)
        sacrum = np.array([[50.0, 280.0], [75.0, 285.0]]) + rng.normal(0, 5, (2, 2))
        if n_case % 7 == 0:
            sacrum[:] = np.nan
        cases.append((corners, sacrum, (h, w)))
    return cases


def _implausible_cases(n: int, seed: int = 1) -> list[tuple[np.ndarray, np.ndarray, tuple[int, int]]]:
    """Spines damaged the ways spinescan.radiograph.plausibility looks for: collapsed vertebrae (one to
    five: warnings and severe), order reversed, squashed spacing, tilt jumps, points off the film."""
    rng = np.random.default_rng(seed)
    out = []
    for k, (corners, sacrum, hw) in enumerate(_landmark_cases(n, seed)):
        c = corners.reshape(17, 4, 2).copy()
        mode = k % 5
        if mode == 0:
            for v in rng.choice(17, int(rng.integers(1, 6)), replace=False):
                c[v] = c[v][:1]
        elif mode == 1:
            c = c[::-1].copy()
        elif mode == 2:
            c[..., 1] = c[..., 1] * rng.uniform(0.1, 0.6)
        elif mode == 3:
            for v in range(int(rng.integers(0, 2)), 17, 2):
                centre = c[v].mean(axis=0)
                t = np.radians(rng.uniform(35, 60))
                rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
                c[v] = (c[v] - centre) @ rot.T + centre
        else:
            c[..., 0] += rng.uniform(-400, 400)
        out.append((c.reshape(68, 2), sacrum, hw))
    return out


def test_angles_port_matches_python(exported: Path) -> None:
    """landmarks.js's angles, reasons, notes, end vertebrae and labels against spinescan.radiograph.angles
    on spines that take every branch (the tiny models above see only some of them)."""
    from playwright.sync_api import sync_playwright

    from spinescan.radiograph.aasce import aasce_angles
    from spinescan.radiograph.angles import ap_angles, label_from_angles, lateral_angles
    from spinescan.radiograph.plausibility import assess_landmarks

    cases = _landmark_cases(240) + _implausible_cases(60)
    payload = [
        [[None if not np.isfinite(p).all() else p.tolist() for p in np.concatenate([c, s])], list(hw)]
        for c, s, hw in cases
    ]
    with _serving(exported) as origin, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{origin}/web/")
        _wait(page, f"window.spineScan && window.spineScan.models.length === {N_MODELS}", 60)
        got = page.evaluate(
            "(cases) => cases.map(([pts, hw]) => [['ap', 'endplates'], ['ap', 'midlines'], ['lateral']].map("
            "([v, r]) => window.spineScan.measureLandmarks(pts, v, hw, r)))",
            payload,
        )
        browser.close()
    worst, values, labels, reasons, severities, findings = 0.0, 0, set(), set(), set(), set()
    for (corners, sacrum, hw), page_views in zip(cases, got, strict=True):
        flag = assess_landmarks(corners, sacrum, hw).to_json()
        assert all(page["plausibility"] == flag for page in page_views), (flag, page_views[0]["plausibility"])
        severities.add(flag["severity"])
        readouts = (("ap", "endplates"), ("ap", "midlines"), ("lateral", None))
        for (view, readout), page in zip(readouts, page_views, strict=True):
            angles = (
                ap_angles(corners, image_size=hw, readout=readout)
                if view == "ap"
                else lateral_angles(corners, sacrum, image_size=hw)
            )
            label, reason = label_from_angles(view, angles)
            assert (page["label"], page["label_reason"]) == (label, reason)
            labels.add((view, label))
            if view == "lateral" and label is None and reason and not reason.startswith("not measured"):
                findings.add(reason.split(" (")[0])
            assert list(page["angles"]) == list(angles)
            for name, angle in angles.items():
                mine = page["angles"][name]
                lines = [[v if isinstance(v, str) else int(v), side] for v, side in angle.lines]
                assert (mine["reason"], mine["note"], mine["lines"]) == (angle.reason, angle.note, lines), (
                    name
                )
                assert (mine["value"] is None) == (angle.value is None), name
                assert len(mine.get("orientations", [])) == len(angle.orientations), name
                for got_o, want_o in zip(mine.get("orientations", []), angle.orientations, strict=True):
                    worst = max(worst, abs(got_o - want_o))
                if angle.value is not None:
                    worst = max(worst, abs(mine["value"] - angle.value))
                    values += 1
                reasons.add(angle.reason is not None or angle.note is not None)
    print(f"\n{len(cases)} spines x 3 readings: {values} angles, max |d angle| = {worst:.1e} deg")
    assert worst <= 1e-9
    # the AASCE angles' rule took each of its branches (C; S with the main curve high or low)
    rules = {aasce_angles(c, hw[0]).rule for c, _, hw in cases if np.isfinite(c).all()}
    assert rules == {"C", "S upper", "S lower"}
    assert reasons == {True, False}  # measured and unmeasured (or partial) angles both occurred
    assert severities == {"ok", "warning", "severe"}, severities
    assert {("ap", "healthy"), ("ap", "scoliosis"), ("ap", None), ("lateral", None)} <= labels
    print(f"lateral findings without a class: {sorted(findings)}")
    assert any(f.startswith("flat back") for f in findings)  # issue 24's named findings, both sides


# --- the model document: thresholds swept, a toy angle (issue 23 #2) ------------------------------------


@pytest.fixture(scope="module")
def toy_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export folder with the toy landmark model (tests/toy_landmarks.py: a fixed spine, one
    angle no JS names) and the page, built in a second without training."""
    from toy_landmarks import write_toy_export

    from spinescan.export.webpage import build_web

    folder = write_toy_export(tmp_path_factory.mktemp("toy-site"))
    assert build_web(folder / "web") is None, "the page needs web/node_modules (npm ci)"
    return folder


def _spine(tilts: dict[int, float], sacrum_deg: float = 50.0) -> list[list[float]]:
    """70 points of a vertical spine (film 400 x 160), every vertebra level except ``tilts``
    (vertebra index -> degrees), the S1 endplate at ``sacrum_deg`` to the horizontal."""
    points = []
    for v in range(17):
        t = np.radians(tilts.get(v, 0.0))
        cx, cy = 80.0, 30.0 + 18.0 * v
        for dx, dy in ((-10.0, -5.0), (10.0, -5.0), (-10.0, 5.0), (10.0, 5.0)):
            points.append([cx + dx * np.cos(t) - dy * np.sin(t), cy + dx * np.sin(t) + dy * np.cos(t)])
    s = np.radians(sacrum_deg)
    points += [[70.0, 350.0], [70.0 + 20.0 * np.cos(s), 350.0 - 20.0 * np.sin(s)]]
    return points


def _threshold_cases() -> list[tuple[str, list[list[float]]]]:
    """Spines whose angles sit just below and above every clinical threshold: lateral T4-T12 at
    20 and 45 deg (T12 tilted; T4 level), L1-S1 at 40 and 65 (the S1 endplate tilted; L1 level),
    crossed with each other; AP largest Cobb at 10 (L5 tilted against the level rest)."""
    from spinescan.radiograph import thresholds as th

    eps = 0.01
    near = lambda *limits: sorted({v for t in limits for v in (t - eps, t + eps)})  # noqa: E731
    kyphosis = [10.0, 30.0, 60.0, *near(th.KYPHOSIS_NORMAL_MIN, th.KYPHOSIS_THRESHOLD)]
    lordosis = [30.0, 50.0, 80.0, *near(th.LORDOSIS_NORMAL_MIN, th.LORDOSIS_THRESHOLD)]
    cases = [("lateral", _spine({11: k}, lo)) for k in kyphosis for lo in lordosis]
    cases += [("ap", _spine({16: c})) for c in (0.0, 5.0, 20.0, *near(th.SCOLIOSIS_THRESHOLD))]
    return cases


def test_page_labels_follow_python_across_every_clinical_threshold(toy_site: Path) -> None:
    """The page's labels and reasons equal Python's on spines just either side of 10, 20, 40, 45
    and 65 deg, read with the built-in definitions (readout.js) and with a model's document: a
    threshold that drifts on either side by 0.01 deg or more fails here, whether or not a film sits
    near it."""
    from playwright.sync_api import sync_playwright

    from spinescan.radiograph.angles import ap_angles, label_from_angles, lateral_angles

    cases = _threshold_cases()
    document = json.loads((toy_site / "manifest.json").read_text())["models"]["toyangle"]["document"]
    hw = [400, 160]
    with _serving(toy_site) as origin, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{origin}/web/")
        _wait(page, "window.spineScan && window.spineScan.models.length === 1", 60)
        got = page.evaluate(
            "([cases, hw, doc]) => cases.map(([v, pts]) => [null, doc].map((d) =>"
            " window.spineScan.measureLandmarks(pts, v, hw, 'endplates', v === 'lateral' ? d : null)))",
            [cases, hw, document],
        )
        browser.close()
    seen = set()
    for (view, points), both in zip(cases, got, strict=True):
        p = np.array(points)
        angles = (
            ap_angles(p[:68], image_size=tuple(hw))
            if view == "ap"
            else lateral_angles(p[:68], p[68:], image_size=tuple(hw))
        )
        want = label_from_angles(view, angles)
        for page_reading in both:
            assert (page_reading["label"], page_reading["label_reason"]) == want, (view, angles)
        seen.add((view, want[0], want[1].split(" (")[0] if want[1] else None))
    # every side of every threshold was met: the labels and the named findings
    assert {("ap", "healthy", None), ("ap", "scoliosis", None)} <= seen
    assert {("lateral", label, None) for label in ("healthy", "kyphosis", "lordosis")} <= seen
    findings = {f for v, _, f in seen if f}
    assert {"flat back: hypokyphosis", "flat back: hypolordosis",
            "kyphosis-lordosis posture: hyperkyphosis + hyperlordosis"} <= findings  # fmt: skip
    print(f"\n{len(cases)} spines at the thresholds: {len(seen)} distinct (label, finding) pairs")


def _read_on_page(site: Path, film: Path) -> tuple[dict, str]:
    """The page's reading of one lateral film with the export in ``site`` (one model): its result
    and the film card's text."""
    from playwright.sync_api import sync_playwright

    with _serving(site) as origin, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{origin}/web/")
        _wait(page, "window.spineScan && window.spineScan.models.length === 1", 60)
        page.select_option("#view", "lateral")
        page.set_input_files("#files", [str(film)])
        _wait(page, "window.spineScan.results.length === 1", 60)
        (result,) = page.evaluate("window.spineScan.results")[0]["results"]
        text = page.inner_text(".film")
        browser.close()
    return result, text


def test_an_export_without_a_document_still_reads_on_the_page(tmp_path: Path) -> None:
    """A manifest and file older than the document (loose keys only, like the bundled set): the
    page reads them through the manifest's fields, as spinescan-predict through the metadata's."""
    from toy_landmarks import write_toy_export

    from spinescan.export.webpage import build_web

    site = write_toy_export(tmp_path / "legacy", legacy=True)
    assert "document" not in json.loads((site / "manifest.json").read_text())["models"]["toyangle"]
    assert build_web(site / "web") is None
    film = tmp_path / "film.png"
    cv2.imwrite(str(film), (np.random.default_rng(4).random((300, 120)) * 255).astype(np.uint8))
    (want,) = _predict_cli(site, "lateral", [film]).values()
    result, _ = _read_on_page(site, film)
    assert list(result["measurements"]) == list(want["measurements"]) == [
        "thoracic_kyphosis_deg", "lumbar_lordosis_deg"
    ]  # fmt: skip
    for name, value in want["measurements"].items():
        assert abs(result["measurements"][name] - value) <= ANGLE_TOLERANCE_DEG, name
    assert result["label"] == want["label"] == "healthy"


def test_toy_angle_shows_on_the_page_without_a_js_edit(toy_site: Path, tmp_path: Path) -> None:
    """A plugin's new angle (tests/toy_landmarks.py: T2-T8, which no JS file names) is measured,
    listed and labelled by the page from the model's document, as spinescan-predict reports it."""
    from toy_landmarks import TOY_ANGLE

    film = tmp_path / "film.png"
    cv2.imwrite(str(film), (np.random.default_rng(3).random((300, 120)) * 255).astype(np.uint8))
    for source in Path(__file__).resolve().parents[1].joinpath("web", "src").iterdir():
        assert TOY_ANGLE.name not in source.read_text(encoding="utf-8") and "T2-T8" not in source.read_text()
    (want,) = _predict_cli(toy_site, "lateral", [film]).values()
    result, text = _read_on_page(toy_site, film)
    assert list(result["measurements"]) == list(want["measurements"])
    assert list(want["measurements"])[-1] == TOY_ANGLE.name
    for name, value in want["measurements"].items():
        assert abs(result["measurements"][name] - value) <= ANGLE_TOLERANCE_DEG, name
    assert (result["label"], result["plausibility"]) == (want["label"], want["plausibility"])
    assert f"{TOY_ANGLE.name} {want['measurements'][TOY_ANGLE.name]:.1f} deg" in text
