"""Edge predictor vs the TensorFlow path, measured on this machine in one run.

What it measures (issue 6, "Done when"):

* cold start: a fresh process from launch to its first JSON result, for ``spinescan-predict``
  (and the standalone ``predict.py``) against a fresh process that imports TensorFlow, loads the
  Keras model and predicts the same image;
* batch-1 latency in a warm process: onnxruntime fp32 and int8 against Keras ``model.predict``
  and a direct ``model(x)`` call;
* int8 size, argmax agreement with fp32 and accuracy on the run's test split (from the export's
  own gate evaluation).

Targets: cold start <= 0.1x the TensorFlow path; onnxruntime batch-1 <= 0.05x ``model.predict``.

Usage (from the repository root)::

    .venv/bin/python benchmarks/predictor_latency.py --run runs/generalist/<run-id>
    .venv/bin/python benchmarks/predictor_latency.py --train     # phantoms + a compact generalist first

Results are printed and written to ``<out>/latency.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TF_SCRIPT = """
import json, sys
from spinescan.training import inference, runs
from spinescan.radiograph.imageio import read_image
from spinescan.radiograph.preprocess import preprocess
run = runs.load_run(sys.argv[1])
model = inference.load_run_model(sys.argv[1])
x = preprocess(read_image(sys.argv[2]), run.spec.input_size, run.spec.preprocessing)[None]
p = model.predict(x, verbose=0)[0]
print(json.dumps([{"image": sys.argv[2], "label": run.spec.classes[int(p.argmax())],
                   "probabilities": dict(zip(run.spec.classes, map(float, p)))}]))
"""


def _train(workdir: Path, epochs: int, per_class: int) -> Path:
    from spinescan.synth import generate
    from spinescan.training.loop import TrainConfig, train

    data = workdir / "phantoms"
    print(f"Generating {per_class} phantoms per class in {data} ...", flush=True)
    generate(data, per_class=per_class, seed=0, size=256, views=("lateral",), workers=2, progress=False)
    print(f"Training a compact generalist for {epochs} epochs ...", flush=True)
    result = train(
        TrainConfig(model="generalist", data=data, hparams={"epochs": epochs}, runs_dir=workdir / "runs")
    )
    return result.run_dir


def _timed_process(cmd: list[str], cwd: Path | None = None) -> tuple[float, list[dict[str, Any]]]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed, json.loads(proc.stdout)


def _median_ms(fn: Any, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def cold_start(exported: Path, run_dir: Path, image: Path, repeats: int, tf_repeats: int) -> dict[str, Any]:
    """Median seconds from launch to the first JSON result, per path (alternated to share noise)."""
    bin_dir = Path(sys.executable).parent
    onnx_cmd = [
        str(bin_dir / "spinescan-predict"),
        "--json",
        "--model",
        str(exported / "generalist.onnx"),
        str(image),
    ]
    standalone_cmd = [sys.executable, str(exported / "predict.py"), "--json", str(image)]
    tf_cmd = [sys.executable, "-c", TF_SCRIPT, str(run_dir), str(image)]
    onnx_t, standalone_t, tf_t = [], [], []
    labels = set()
    for i in range(repeats):
        t, out = _timed_process(onnx_cmd)
        onnx_t.append(t)
        labels.add(("onnx", out[0]["label"]))
        t, out = _timed_process(standalone_cmd)
        standalone_t.append(t)
        if i < tf_repeats:
            t, out = _timed_process(tf_cmd)
            tf_t.append(t)
            labels.add(("keras", out[0]["label"]))
    return {
        "spinescan_predict_s": statistics.median(onnx_t),
        "standalone_predict_py_s": statistics.median(standalone_t),
        "tensorflow_keras_s": statistics.median(tf_t),
        "runs": {"onnx": onnx_t, "standalone": standalone_t, "tensorflow": tf_t},
        "labels": sorted(labels),
    }


def batch1(exported: Path, run_dir: Path, image: Path, repeats: int) -> dict[str, Any]:
    """Median milliseconds of one single-image forward pass in a warm process."""
    import onnxruntime as ort

    from spinescan.radiograph.imageio import read_image
    from spinescan.radiograph.preprocess import preprocess
    from spinescan.training import inference, runs

    run = runs.load_run(run_dir)
    x = preprocess(read_image(image), run.spec.input_size, run.spec.preprocessing)[None]
    out: dict[str, Any] = {"input_size": list(run.spec.input_size)}
    for tag, name in (
        ("onnxruntime_fp32_ms", "generalist.onnx"),
        ("onnxruntime_int8_ms", "generalist.int8.onnx"),
    ):
        path = exported / name
        if not path.is_file():
            out[tag] = None
            continue
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        out[tag] = _median_ms(lambda s=session: s.run(None, {"image": x}), repeats)
    model = inference.load_run_model(run_dir)
    out["keras_predict_ms"] = _median_ms(lambda: model.predict(x, verbose=0), max(20, repeats // 10))
    out["keras_call_ms"] = _median_ms(lambda: model(x, training=False), max(50, repeats // 4))
    return out


def _print_summary(results: dict[str, Any], out: Path) -> None:
    cold, b1, r, int8 = results["cold_start"], results["batch1"], results["ratios"], results["int8"]
    load = results["machine"]
    print(f"\nRun {results['run']}, input {b1['input_size']}, image {results['image']}")
    before, after = load["load_average_before"], load["load_average_after"]
    print(f"machine: {load['cpu_count']} CPUs, load average {before} -> {after}")
    print("cold start to first JSON result (median):")
    print(f"  spinescan-predict      {cold['spinescan_predict_s']:.2f} s")
    print(f"  standalone predict.py  {cold['standalone_predict_py_s']:.2f} s")
    print(f"  TensorFlow + Keras     {cold['tensorflow_keras_s']:.2f} s")
    print(f"  ratio                  {r['cold_start_onnx_over_tf']:.3f} (target <= 0.1)")
    print("batch-1 latency (median, warm):")
    print(f"  onnxruntime fp32       {b1['onnxruntime_fp32_ms']:.3f} ms")
    if b1["onnxruntime_int8_ms"] is not None:
        print(f"  onnxruntime int8       {b1['onnxruntime_int8_ms']:.3f} ms")
    if int8.get("latency_ms_int8") is not None:
        print(
            f"  (at export, back to back on the test images: fp32 {int8['latency_ms_fp32']:.3f} ms, "
            f"int8 {int8['latency_ms_int8']:.3f} ms)"
        )
    print(f"  Keras model.predict    {b1['keras_predict_ms']:.2f} ms")
    print(f"  Keras model(x)         {b1['keras_call_ms']:.2f} ms")
    print(f"  fp32 / predict         {r['batch1_onnx_fp32_over_predict']:.4f} (target <= 0.05)")
    print(f"  fp32 / model(x)        {r['batch1_onnx_fp32_over_call']:.4f}")
    print(
        f"int8: {'shipped' if int8['shipped'] else 'NOT shipped'} ({int8['reason']}); size "
        f"{int8['size_fp32'] / 1e6:.2f} -> {int8['size_int8'] / 1e6:.2f} MB; test accuracy fp32 "
        f"{int8['accuracy_fp32']:.3f}, int8 {int8['accuracy_int8']:.3f}, agreement {int8['agreement']:.3f} "
        f"(n={int8['n_test']})"
    )
    print(f"targets met: {results['targets_met']}")
    print(f"written: {out / 'latency.json'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="a finished generalist run directory")
    source.add_argument("--train", action="store_true", help="generate phantoms and train one first")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--image", type=Path, help="image to classify (default: the run's first test image)")
    parser.add_argument("--out", type=Path, help="export folder (default: a temporary one)")
    parser.add_argument("--repeats", type=int, default=200, help="batch-1 repetitions for onnxruntime")
    parser.add_argument("--cold", type=int, default=5, help="cold starts per onnxruntime path")
    parser.add_argument("--tf-cold", type=int, default=3, help="cold starts of the TensorFlow path")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="spinescan-latency-"))
    run_dir = args.run or _train(workdir, args.epochs, args.per_class)
    out = args.out or workdir / "exported"

    from spinescan.export.exporter import export_runs
    from spinescan.training import runs

    report = export_runs([run_dir], out, quantize="int8", echo=lambda m: print(m, flush=True))
    report.raise_for_failures()
    entry = report.exported["generalist"]
    if args.image:
        image = args.image
    else:
        run = runs.load_run(run_dir)
        image = Path(run.config.dataset.root) / run.split.test[0]

    results = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_before": os.getloadavg(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "run": str(run_dir),
        "image": str(image),
        "cold_start": cold_start(out, run_dir, image, args.cold, args.tf_cold),
        "batch1": batch1(out, run_dir, image, args.repeats),
        "int8": entry["int8"],
        "parity": entry["parity"],
    }
    results["machine"]["load_average_after"] = os.getloadavg()
    cold, b1 = results["cold_start"], results["batch1"]
    ratios = {
        "cold_start_onnx_over_tf": cold["spinescan_predict_s"] / cold["tensorflow_keras_s"],
        "batch1_onnx_fp32_over_predict": b1["onnxruntime_fp32_ms"] / b1["keras_predict_ms"],
        "batch1_onnx_fp32_over_call": b1["onnxruntime_fp32_ms"] / b1["keras_call_ms"],
    }
    results["ratios"] = ratios
    results["targets_met"] = {
        "cold_start_<=0.1x": ratios["cold_start_onnx_over_tf"] <= 0.1,
        "batch1_<=0.05x_predict": ratios["batch1_onnx_fp32_over_predict"] <= 0.05,
    }
    (out / "latency.json").write_text(json.dumps(results, indent=2, default=str) + "\n")

    _print_summary(results, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
