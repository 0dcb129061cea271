"""Peak RSS of ``spinescan-predict`` over a folder of near-limit and hostile films (issue #12, case 4).

The folder holds what costs the predictor most memory:

* the issue's case: three 9999 x 9999 16-bit RGBA PNGs (under 100 Mpx, but 800 MB each decoded;
  under 1 MB each on disk), which the reader now refuses from the header;
* the largest films the limits still accept: 8-bit grey at the pixel limit (99.8 Mpx), 16-bit RGBA
  and float32 grey just under the decoded-bytes limit (256 MiB);
* a dozen ordinary films, so batching matters.

Each run is a fresh ``python -m spinescan.edge.predictor`` process whose peak RSS is read from
``getrusage(RUSAGE_CHILDREN)`` after it exits. ``--src`` runs another checkout's code on the same
folder (e.g. the code before the fix: ``git archive 631966e | tar -x -C /tmp/orig``)::

    nice -n 5 python benchmarks/predictor_memory.py --work /tmp/predmem                  # this code
    nice -n 5 python benchmarks/predictor_memory.py --work /tmp/predmem --src /tmp/orig  # before

The folder (about 0.5 GB, made once and reused) and two toy models with Spine Scan metadata are
written under ``--work``; only numpy, OpenCV, onnx and onnxruntime are needed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _gradient(height: int, width: int, dtype: type, high: float) -> np.ndarray:
    """A smooth, non-constant film that compresses well (the files stay small on disk)."""
    rows = np.linspace(0, high * 0.6, height, dtype=np.float32)[:, None]
    cols = np.linspace(0, high * 0.4, width, dtype=np.float32)[None, :]
    return (rows + cols).astype(dtype)


def make_folder(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    made = []

    def write(name: str, image_fn, params: list[int] | None = None) -> None:
        path = folder / name
        if not path.exists():
            image = image_fn()
            ok, buf = cv2.imencode(path.suffix, image, params or [])
            assert ok, name
            buf.tofile(str(path))
            del image, buf
        made.append(f"{name} ({path.stat().st_size / 1e6:.1f} MB on disk)")

    for i in range(3):  # the case 4
        write(
            f"bomb_rgba16_9999_{i}.png",
            lambda: cv2.cvtColor(_gradient(9999, 9999, np.uint16, 60000), cv2.COLOR_GRAY2BGRA),
            [cv2.IMWRITE_PNG_COMPRESSION, 9],
        )
    write("grey8_9990.png", lambda: _gradient(9990, 9990, np.uint8, 250), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    write(
        "rgba16_5790.png",
        lambda: cv2.cvtColor(_gradient(5790, 5790, np.uint16, 60000), cv2.COLOR_GRAY2BGRA),
        [cv2.IMWRITE_PNG_COMPRESSION, 9],
    )
    write("float32_8190.tif", lambda: _gradient(8190, 8190, np.float32, 1.0))
    rng = np.random.default_rng(0)
    for i in range(12):
        write(f"film_{i:02d}.png", lambda: (rng.random((1500, 600)) * 255).astype(np.uint8))
    return made


def make_models(folder: Path) -> Path:
    """Two tiny ONNX classifiers carrying the metadata the predictor needs (no TensorFlow)."""
    import hashlib

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    entries = {}
    for name, size, prep in (
        ("letterbox", (256, 256, 1), {"resize": "letterbox", "intensity": "minmax"}),
        ("spinecrop", (224, 64, 1), {"resize": "spine_crop", "intensity": "minmax", "crop_aspect": 0.3}),
    ):
        nodes = [
            helper.make_node("ReduceMean", ["image"], ["m4"], axes=[1, 2, 3], keepdims=1),
            helper.make_node("Reshape", ["m4", "shape"], ["m"]),
            helper.make_node("MatMul", ["m", "w"], ["z"]),
            helper.make_node("Softmax", ["z"], ["probabilities"], axis=-1),
        ]
        graph = helper.make_graph(
            nodes,
            name,
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", *size])],
            [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])],
            [
                numpy_helper.from_array(np.array([-1, 1], dtype=np.int64), "shape"),
                numpy_helper.from_array(np.array([[1.0, -1.0]], dtype=np.float32), "w"),
            ],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        meta = {
            "spinescan_format": "1",
            "model_name": name,
            "classes": json.dumps(["healthy", "scoliosis"]),
            "view": "ap",
            "input_size": json.dumps(list(size)),
            "preprocessing": json.dumps(prep),
        }
        helper.set_model_props(model, meta)
        path = folder / f"{name}.onnx"
        onnx.save(model, str(path))
        entries[name] = {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps({"models": entries}))
    return folder


def measure(src: Path, films: Path, models: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "spinescan.edge.predictor", str(films), "--models", str(models), "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=src,
    )
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    try:
        results = json.loads(proc.stdout)
    except ValueError:
        results = []
    return {
        "source": str(src),
        "exit_code": proc.returncode,
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "seconds": round(seconds, 1),
        "classified": sum(1 for r in results if "label" in r),
        "errors": [r["error"] for r in results if "error" in r],
        "stderr_tail": proc.stderr.strip().splitlines()[-3:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/spinescan-predictor-memory"))
    parser.add_argument("--src", type=Path, default=ROOT, help="checkout whose code runs (default: this one)")
    args = parser.parse_args()
    made = make_folder(args.work / "films")
    models = make_models(args.work / "models")
    print("folder:", *made, sep="\n  ", file=sys.stderr)
    result = measure(args.src.resolve(), args.work / "films", models)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
