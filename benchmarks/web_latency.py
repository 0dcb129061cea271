"""The browser page against spinescan-predict on the same films, same machine.

Measures, in headless Chromium (Debian's ``chromium``, onnxruntime-web wasm, one thread):

* time to the first result: from navigation start to the first film's probabilities on the page,
  the film being chosen as soon as the page has loaded (the page loads the runtime and every model,
  checks their sha256, then classifies);
* per-film latency on the page: decode, preprocess, every model of the film's view and drawing the
  film (the page records it per film), and per model: preprocess + inference only (for a landmark
  model also the read-out: points to film pixels, angles, label), overall and by model name;

and, in Python on the same films, the same per-film work with the warm edge predictor
(``read_image`` + ``prepare`` + ``predict`` for every model of the view, plus a landmark model's
read-out), per model the same without ``read_image``, and a cold ``spinescan-predict`` process over
all the films. Reports the page / Python ratios, per film and per model.

Usage::

    .venv/bin/python benchmarks/web_latency.py --models exported --view ap FILM_OR_DIR... [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path


def _python_per_film(
    models_dir: Path, view: str, films: list[Path], repeats: int
) -> tuple[list[float], dict[str, list[float]]]:
    from spinescan.edge import predictor
    from spinescan.radiograph.imageio import read_image

    models = [
        m for m in (predictor.OnnxModel(p) for p in predictor.model_paths(models_dir)) if m.info.view == view
    ]
    times: list[float] = []
    by_model: dict[str, list[float]] = {m.name: [] for m in models}
    for _ in range(repeats):
        for film in films:
            t0 = time.perf_counter()
            image = read_image(film)
            for model in models:
                t1 = time.perf_counter()
                x, context = model.prepare(image)
                out = model.predict(x[None])[0]
                if model.info.task == "landmarks":
                    model.result(out, context)  # the read-out the page does too
                by_model[model.name].append((time.perf_counter() - t1) * 1000)
            times.append((time.perf_counter() - t0) * 1000)
    return times, by_model


def _browser(models_dir: Path, view: str, films: list[Path], repeats: int) -> dict[str, object]:
    from playwright.sync_api import sync_playwright

    from spinescan.cli.serve import make_server

    server = make_server(models_dir, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    firsts, per_film, ready, per_model = [], [], [], []
    by_model: dict[str, list[float]] = {}
    chromium = shutil.which("chromium")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            for _ in range(repeats):
                page = browser.new_page()
                page.goto(f"{origin}/web/")
                while not page.evaluate("window.spineScan && window.spineScan.loadedAt"):
                    page.wait_for_timeout(20)  # the view list is filled once the models are loaded
                page.select_option("#view", view)
                page.set_input_files("#files", [str(f) for f in films])
                while page.evaluate("window.spineScan.results.length") < len(films):
                    page.wait_for_timeout(50)
                results = page.evaluate("window.spineScan.results")
                errors = [r for r in results if r.get("error")]
                if errors:
                    raise SystemExit(f"page errors: {errors[:2]}")
                firsts.append(min(r["finishedAt"] for r in results))
                ready.append(page.evaluate("window.spineScan.loadedAt"))
                per_film += [r["ms"] for r in results[1:]]  # the first film also waited for the models
                per_model += [m["ms"] for r in results[1:] for m in r["results"]]
                for r in results[1:]:
                    for m in r["results"]:
                        by_model.setdefault(m["model"], []).append(m["ms"])
                page.close()
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return {
        "first_result_ms": firsts,
        "models_ready_ms": ready,
        "per_film_ms": per_film,
        "per_model_ms": per_model,
        "per_model_ms_by_name": by_model,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("films", nargs="+")
    parser.add_argument("--models", default="exported")
    parser.add_argument("--view", required=True, choices=["lateral", "ap"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="reports/web-latency.json")
    args = parser.parse_args(argv)
    from spinescan.edge.predictor import expand_inputs

    films = expand_inputs(args.films)
    models_dir = Path(args.models)
    page = _browser(models_dir, args.view, films, args.repeats)
    python_ms, python_by_model = _python_per_film(models_dir, args.view, films, args.repeats)
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "spinescan.edge.predictor",
            *map(str, films),
            "--models",
            str(models_dir),
            "--view",
            args.view,
            "--json",
        ],
        check=True,
        capture_output=True,
    )
    cold_cli_s = time.perf_counter() - t0
    page_med = statistics.median(page["per_film_ms"])
    py_med = statistics.median(python_ms)
    result = {
        "films": len(films),
        "view": args.view,
        "page_first_result_ms_median": statistics.median(page["first_result_ms"]),
        "page_models_ready_ms_median": statistics.median(page["models_ready_ms"]),
        "page_per_film_ms_median": page_med,
        "page_per_model_ms_median": statistics.median(page["per_model_ms"]),
        "python_per_film_ms_median": py_med,
        "ratio_page_over_python_per_film": page_med / py_med,
        "by_model": {
            name: {
                "page_ms_median": statistics.median(page["per_model_ms_by_name"][name]),
                "python_ms_median": statistics.median(python_by_model[name]),
                "ratio_page_over_python": statistics.median(page["per_model_ms_by_name"][name])
                / statistics.median(python_by_model[name]),
            }
            for name in python_by_model
            if page["per_model_ms_by_name"].get(name)
        },
        "spinescan_predict_cold_process_s": cold_cli_s,
        "page_first_result_over_cold_cli": statistics.median(page["first_result_ms"]) / 1000 / cold_cli_s,
        "raw": {**page, "python_per_film_ms": python_ms, "python_per_model_ms_by_name": python_by_model},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2), encoding="utf-8")
    for key, value in result.items():
        if key != "raw":
            print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
