"""One run staged for export: converted to ONNX, proved faithful, optionally quantized, described.

For one finished run: load ``model.keras`` (safe mode), convert it (:mod:`spinescan.export.onnx_convert`),
stamp everything the predictor needs into ``metadata_props``, then *prove* the file is faithful:
Keras and onnxruntime must agree on the run's own validation images (max |Δp| <= 1e-4, identical
argmax; a landmark model's points within 0.05 input pixels). Optionally quantize to int8
(:mod:`spinescan.export.quantize`) and ship it only if it passes its gate: argmax agreement and
accuracy for a classifier, the derived label, angles and landmark shift for a landmark model.
Returns the staged files, the manifest entry and the model card (:class:`Staged`); nothing is
put in place here: the whole set is published together by :mod:`spinescan.export.exporter`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spinescan import __version__
from spinescan.edge.manifest import sha256_file
from spinescan.edge.model_metadata import WEAK_KEY
from spinescan.edge.modeldoc import MANIFEST_KEY, METADATA_KEY, document_for
from spinescan.edge.onnxmodel import OnnxModel
from spinescan.edge.parity_sample import record_parity_sample
from spinescan.errors import SpineScanError
from spinescan.export import landmark_int8, onnx_convert, quantize  # module attributes: tests patch them
from spinescan.export.modelcard import bootstrap_test_cis, describe_data, model_card
from spinescan.export.onnx_convert import DEFAULT_OPSET, ExportError, cam_metadata, set_metadata
from spinescan.export.parity import (
    cam_parity,
    landmark_parity,
    load_images,
    parity_check,
    parity_images,
    split_samples,
    spread_samples,
)
from spinescan.training import inference, runs
from spinescan.training.runs import RunDir

if TYPE_CHECKING:
    from spinescan.data.datasets import Sample
    from spinescan.training.runs import Run
    from spinescan.zoo.spec import ModelSpec

CALIBRATION_IMAGES = 128
#: A landmark model's int8 copy keeps the heatmap logits convolution and the soft-argmax after it
#: in float (:func:`spinescan.export.quantize.float_tail`). Measured on the cobb phantom run
#: (300 test films; README): with the tail in int8 the derived label agreed on 39% of the films;
#: with the softmax on in float but the logits in int8, cobb_deg moved by 0.96 deg on average; with
#: the logits in float too, 0.24 deg, for 3.3x smaller files either way.
LANDMARK_FLOAT_TAIL = "logits"
METRIC_KEYS = ("n", "accuracy", "balanced_accuracy", "macro_f1")
#: A landmark model's figures quoted in its metadata (from :func:`spinescan.metrics.landmark_summary`).
LANDMARK_METRIC_KEYS = (
    "n", "landmark_error", "angles", "smape", "smape_angles", "corners_far", "largest_cobb_mae",
    "sensitivity", "specificity", "label_accuracy",
)  # fmt: skip

Echo = Callable[[str], None]


def silent(_: str) -> None:
    """The default ``echo``: say nothing."""


@dataclass
class Staged:
    """A model's files built in the staging folder, not yet in place."""

    name: str
    files: dict[str, Path]  # final file name -> staged path
    entry: dict[str, Any]
    card: str


def _metadata(
    run: Run, spec: ModelSpec, opset: int, source_sha: str, exported: str, weak: str | None = None
) -> dict[str, Any]:
    metrics = run.metrics or {}
    keys = LANDMARK_METRIC_KEYS if spec.task == "landmarks" else METRIC_KEYS
    task = {"task": spec.task}
    if spec.task == "landmarks":
        task.update(landmarks=list(spec.landmarks), measurements=list(spec.measurements))
    return {
        # The model document (spinescan.edge.modeldoc): what every reader reads. The loose keys
        # below stay for predictors older than the document (they ignore this key).
        METADATA_KEY: document_for(spec).dumps(),
        **task,
        "model_name": spec.name,
        "description": spec.description,
        "classes": list(spec.classes),
        "negative_class": spec.negative_class,
        "view": spec.view,
        "input_size": list(spec.input_size),
        "preprocessing": spec.preprocessing.to_json(),
        "spinescan_version": __version__,
        "opset": str(opset),
        "run_id": str(metrics.get("run_id") or run.config.run_id or run.dir.name),
        "backbone": str(metrics.get("backbone") or run.config.hparams.backbone),
        "metrics": {p: {k: (metrics.get(p) or {}).get(k) for k in keys} for p in ("val", "test")},
        "export_date": exported,
        "source_sha256": source_sha,
        **({WEAK_KEY: weak} if weak else {}),  # the gate's verdict, read by every predictor
    }


def _write_onnx(proto: Any, path: Path) -> None:
    path.write_bytes(proto.SerializeToString())


def stage_run(
    run_dir: Path,
    staging: Path,
    *,
    quantize: str | None = None,
    opset: int = DEFAULT_OPSET,
    data: str | Path | None = None,
    echo: Echo = silent,
    weak: str | None = None,
) -> Staged:
    """Convert, check and (optionally) quantize one run into ``staging``; raise if any check fails.

    ``weak``: the weak-model gate's verdict for a model exported anyway (``--allow-weak``); it is
    stamped into the file's metadata, the manifest entry and the card, so every reader sees it."""
    run = runs.load_run(run_dir)
    if not run.finished:
        raise ExportError(f"{run_dir} is not a finished run (no finished metrics.json)")
    spec = run.spec
    name = spec.name
    model = inference.load_run_model(run_dir)
    landmarks = spec.task == "landmarks"
    width = (
        (model.output_shape[1] if len(model.output_shape) == 3 else -1)
        if landmarks
        else model.output_shape[-1]
    )
    if tuple(model.input_shape[1:]) != tuple(spec.input_size) or int(width) != (
        len(spec.landmarks) if landmarks else spec.num_classes
    ):
        raise ExportError(
            f"{run_dir}: model input {model.input_shape} / output {model.output_shape} disagree with "
            f"the run's spec (input {spec.input_size}, {spec.num_classes} classes)"
        )
    exported = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    source_sha = sha256_file(RunDir(Path(run_dir)).model_file)

    echo(f"{name}: converting {run_dir} to ONNX (opset {opset})")
    conversion = onnx_convert.keras_to_onnx(model, opset=opset)  # module attribute: tests patch it
    metadata = _metadata(run, spec, opset, source_sha, exported, weak)
    metadata["cam"] = cam_metadata(model, conversion)
    set_metadata(conversion.proto, metadata)
    fp32_name = f"{name}.onnx"
    fp32_path = staging / fp32_name
    _write_onnx(conversion.proto, fp32_path)

    echo(f"{name}: parity check, Keras vs onnxruntime")
    parts = split_samples(run, data)
    images, note = parity_images(parts, spec)
    onnx_model = OnnxModel(fp32_path, verify=False)  # the exact bytes that will ship
    keras_out, onnx_out = inference.predict_arrays(model, images.x), onnx_model.predict(images.x)
    if landmarks:
        parity = landmark_parity(keras_out, onnx_out, spec.input_size[:2])
    else:
        parity = parity_check(keras_out, onnx_out)
    parity.update(split=images.part, note=note)
    if conversion.no_cam is None:
        parity["cam"] = cam_parity(model, onnx_model, images.x)
        parity["passed"] = parity["passed"] and parity["cam"]["passed"]
    if not parity["passed"]:
        what = "max |Δxy| (input px)" if landmarks else "max |Δp|"
        same = "identical visibility" if landmarks else "identical argmax"
        raise ExportError(
            f"{name}: ONNX output differs from Keras on {parity['images']} {images.part} images "
            f"({what} {parity['max_abs_diff']:.2e}, limit {parity['tolerance']:.0e}; {same}: "
            f"{parity['argmax_identical']}; CAM {parity.get('cam', {}).get('max_abs_diff', 'n/a')}); "
            "nothing was written"
        )

    files = {fp32_name: fp32_path}
    # One seeded input and this file's output on it: anyone can re-check a shipped file later
    # without the training data (tests/test_pretrained.py does, for the bundled models).
    samples = {fp32_name: record_parity_sample(onnx_model, "fp32")}
    int8_info: dict[str, Any] | None = None
    if quantize == "int8":
        int8_info, int8_path = _stage_int8(fp32_path, parts, spec, metadata, echo)
        if int8_info["shipped"]:
            files[int8_info["file"]] = int8_path
            samples[int8_info["file"]] = record_parity_sample(OnnxModel(int8_path, verify=False), "int8")

    data_root = data or run.config.dataset.root
    entry = _entry(run, spec, metadata, fp32_path, parity, int8_info, conversion, data_root)
    entry["parity_sample"] = samples
    entry[WEAK_KEY] = weak
    return Staged(name, files, entry, model_card(entry))


def _stage_int8(
    fp32_path: Path, parts: dict[str, list[Sample]], spec: ModelSpec, metadata: dict[str, Any], echo: Echo
) -> tuple[dict[str, Any], Path]:
    import onnx

    name = spec.name
    int8_path = fp32_path.with_name(f"{name}.int8.onnx")
    calibration = load_images(spread_samples(parts.get("train", []), CALIBRATION_IMAGES), spec, "train")
    echo(f"{name}: int8 static quantization, calibrated on {len(calibration.x)} training images")
    if not len(calibration.x):
        raise ExportError(f"{name}: no readable training images to calibrate int8 quantization on")
    landmarks = spec.task == "landmarks"
    tail = LANDMARK_FLOAT_TAIL if landmarks else "none"
    float_nodes = quantize.quantize_int8(fp32_path, int8_path, calibration.x, tail=tail)
    proto = onnx.load(str(int8_path))
    how = "int8 static QDQ per-channel (onnxruntime)"
    if landmarks:
        how += "; stem and soft-argmax tail (from the heatmap logits) in float"
    set_metadata(proto, {**metadata, "quantization": how, "fp32_sha256": sha256_file(fp32_path)})
    _write_onnx(proto, int8_path)
    result: quantize.Int8Result | landmark_int8.LandmarkInt8Result
    if landmarks:  # judged on what users read: landmarks, angles, derived label
        echo(f"{name}: int8 vs fp32 on {len(parts.get('test', []))} test films (landmarks, angles, label)")
        result = landmark_int8.evaluate_landmark_int8(
            fp32_path,
            int8_path,
            [s.path for s in parts.get("test", [])],
            calibration_images=len(calibration.x),
            tail=tail,
            float_nodes=float_nodes,
        )
    else:
        test = load_images(parts.get("test", []), spec, "test")
        result = quantize.evaluate_int8(
            fp32_path,
            int8_path,
            test.x,
            test.y,
            calibration_images=len(calibration.x),
            float_nodes=float_nodes,
        )
    info = {"file": int8_path.name, "sha256": sha256_file(int8_path), **result.to_dict()}
    echo(f"{name}: int8 {'shipped' if result.shipped else 'NOT shipped'}: {result.reason}")
    return info, int8_path


def _entry(
    run: Run,
    spec: ModelSpec,
    metadata: dict[str, Any],
    fp32_path: Path,
    parity: dict[str, Any],
    int8_info: dict[str, Any] | None,
    conversion: Any,
    data_root: str | Path,
) -> dict[str, Any]:
    metrics = dict(metadata["metrics"])
    if spec.task == "landmarks":
        metrics["test_ci"] = {}  # over seeds: benchmarks/landmark_bench.py, not one run's films
    else:
        try:
            _files, labels, probs = (
                RunDir(run.dir).read_predictions().get("test", ([], [], np.zeros((0, spec.num_classes))))
            )
            metrics["test_ci"] = bootstrap_test_cis(labels, probs, spec.classes)
        except SpineScanError:
            metrics["test_ci"] = {}
    return {
        "model": spec.name,
        # the ONNX file's model document, copied verbatim (the page reads it from here)
        MANIFEST_KEY: json.loads(metadata[METADATA_KEY]),
        "description": spec.description,
        "file": fp32_path.name,
        "sha256": sha256_file(fp32_path),
        "size_bytes": fp32_path.stat().st_size,
        "classes": list(spec.classes),
        "task": spec.task,
        **(
            {"measurements": list(spec.measurements), "landmarks": len(spec.landmarks)}
            if spec.landmarks
            else {}
        ),
        "view": spec.view,
        "input_size": list(spec.input_size),
        "preprocessing": spec.preprocessing.to_dict(),
        "preprocessing_text": spec.preprocessing.describe(),
        "backbone": metadata["backbone"],
        "run_id": metadata["run_id"],
        "run_dir": run.dir.as_posix(),
        "source_sha256": metadata["source_sha256"],
        "opset": int(metadata["opset"]),
        "exported": metadata["export_date"],
        "spinescan_version": __version__,
        "data": describe_data(data_root),
        "pretrain": run.config.pretrain,  # phantom pretraining stage, if any (pretrain.py)
        "benchmark": RunDir(run.dir).read_json(RunDir.BENCHMARK),  # the bench that chose this run, if any
        "counts": (run.metrics or {}).get("counts"),
        "metrics": metrics,
        "parity": parity,
        "cam": metadata.get("cam"),  # the heatmap output: what it is, or why there is none
        "int8": int8_info,
        "conversion": {
            "warnings": conversion.warnings,
            "folded_inputs": conversion.folded_inputs,
            "transpose_nodes": conversion.op_counts().get("Transpose", 0),
            "nodes": len(conversion.proto.graph.node),
        },
        "card": f"{spec.name}.md",
    }
