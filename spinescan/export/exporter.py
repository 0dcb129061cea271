"""``spinescan export --onnx``: turn finished training runs into files the edge predictor trusts.

For each run: load ``model.keras`` (safe mode), convert it (:mod:`spinescan.export.onnx_convert`), stamp
everything the predictor needs into ``metadata_props``, then *prove* the file is faithful: Keras
and onnxruntime must agree on the run's own validation images (max |Δp| <= 1e-4, identical
argmax; a landmark model's points within 0.05 input pixels). Optionally quantize to int8
(:mod:`spinescan.export.quantize`) and ship it only if it passes its gate: argmax agreement and
accuracy for a classifier, the derived label, angles and landmark shift for a landmark model.
Finally write the model card, ``manifest.json`` (with each file's sha256, which the predictor
checks) and the standalone ``predict.py``.

All or nothing, for the whole set of models, manifest included: everything is built in one
staging folder, and only once every model of the call has passed every check is the new set
switched in, in one atomic step (:mod:`spinescan.export.publish`). Any failure, whatever its type,
or a kill at any point, leaves ``exported/`` with either the old complete set or the new one.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spinescan import __version__
from spinescan.edge.manifest import MANIFEST_NAME
from spinescan.edge.model_metadata import WEAK_KEY
from spinescan.edge.modeldoc import MANIFEST_KEY, METADATA_KEY, document_for
from spinescan.edge.parity_sample import record_parity_sample
from spinescan.edge.predictor import OnnxModel, sha256_file
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
from spinescan.export.publish import ExportLock, one_line, publish
from spinescan.export.webpage import WEB_DIR, build_web
from spinescan.training import inference, runs
from spinescan.training.config import DEFAULT_RUNS
from spinescan.training.runs import RunDir, winners_file

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
QUANTIZE_CHOICES = ("int8",)
METRIC_KEYS = ("n", "accuracy", "balanced_accuracy", "macro_f1")
#: A landmark model's figures quoted in its metadata (from :func:`spinescan.metrics.landmark_summary`).
LANDMARK_METRIC_KEYS = (
    "n", "landmark_error", "angles", "smape", "smape_angles", "corners_far", "largest_cobb_mae",
    "sensitivity", "specificity", "label_accuracy",
)  # fmt: skip
DEFAULT_OUT = Path("exported")
RESULT_SCHEMA = "spinescan.export-result/1"  # ExportReport.to_dict (spinescan export --json)

Echo = Callable[[str], None]


def _silent(_: str) -> None:
    pass


# --- which runs -------------------------------------------------------------------------------


def resolve_runs(
    names: Sequence[str] = (), run: str | Path | None = None, runs_dir: str | Path = DEFAULT_RUNS
) -> list[Path]:
    """The run directories to export: ``run``; else the named models' latest finished runs; else
    the benchmark's winners (``<runs>/winners.json``)."""

    runs_dir = Path(runs_dir)
    if run is not None:
        if names:
            raise SpineScanError("give either model names or --run DIR, not both")
        return [Path(run)]
    if names:
        found = []
        for name in dict.fromkeys(names):
            latest = runs.latest_run(runs_dir, name)
            if latest is None:
                raise SpineScanError(
                    f"no finished run of {name!r} in {runs_dir}; train it first (spinescan train {name})"
                )
            found.append(latest)
        return found
    winners_path = winners_file(runs_dir)
    if not winners_path.is_file():
        raise SpineScanError(
            f"no {winners_path}: run `spinescan bench` first, or name the models to export, or pass --run DIR"
        )
    try:
        winners = json.loads(winners_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SpineScanError(f"cannot read {winners_path}: {exc}") from None
    if not isinstance(winners, dict) or not winners:
        raise SpineScanError(f"{winners_path} lists no winners")
    return [_winner_dir(runs_dir, model, str(path)) for model, path in sorted(winners.items())]


def _winner_dir(runs_dir: Path, model: str, recorded: str) -> Path:
    """winners.json records paths as the benchmark saw them; accept them relative to the runs folder too."""
    path = Path(recorded)
    for candidate in (path, runs_dir / model / path.name):
        if candidate.is_dir():
            return candidate
    raise SpineScanError(f"winner of {model!r} ({recorded}) is not a run directory any more")


# --- one run ------------------------------------------------------------------------------------


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
    echo: Echo = _silent,
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


# --- the whole set, all or nothing ----------------------------------------------------------------


@dataclass
class ExportReport:
    """What an export did: one manifest entry per exported model, one message per failure.

    Exports are all or nothing: when anything failed, ``exported`` is empty and nothing changed.
    """

    out_dir: Path
    exported: dict[str, dict[str, Any]]
    failed: dict[str, str]
    attempted: int = 0
    version: str | None = None  # the published version folder's name (``.v-...``), None if none

    def to_dict(self, gates: Sequence[Any] = (), refused: Sequence[str] = ()) -> dict[str, Any]:
        """The export as ``spinescan export --json`` prints it: the published version, each exported
        model's files with their sha256 and int8 verdict, and the weak-model gate's result for every
        run considered (``gates``: :class:`~spinescan.export.selection.Assessment`; ``refused``: the
        models the gate kept out). The full entries are in the set's manifest.json."""
        models = {}
        for name, entry in self.exported.items():
            int8 = entry.get("int8")
            models[name] = {
                "file": entry["file"],
                "sha256": entry["sha256"],
                "size_bytes": entry["size_bytes"],
                "task": entry.get("task"),
                "view": entry.get("view"),
                "run_dir": entry.get("run_dir"),
                "run_id": entry.get("run_id"),
                "weak": entry.get(WEAK_KEY),  # the gate's verdict for --allow-weak, else None
                "parity": entry.get("parity"),
                "int8": None if not int8 else {
                    "file": int8.get("file"),
                    "sha256": int8.get("sha256"),
                    "shipped": int8.get("shipped"),
                    "reason": int8.get("reason"),
                },
            }  # fmt: skip
        return {
            "schema": RESULT_SCHEMA,
            "out_dir": self.out_dir.as_posix(),
            "version": self.version,
            "manifest": (self.out_dir / MANIFEST_NAME).as_posix() if self.exported else None,
            "models": models,
            "failed": dict(self.failed),
            "refused": list(refused),
            "gates": [g.to_dict() for g in gates],
        }

    def raise_for_failures(self) -> None:
        """Fail loudly (non-zero exit) if any run could not be exported."""
        if self.failed:
            listed = "; ".join(f"{run}: {why}" for run, why in self.failed.items())
            total = max(self.attempted, len(self.failed))
            raise ExportError(
                f"{len(self.failed)} of {total} export(s) failed, so nothing was exported; "
                f"previous files kept ({listed})"
            )


def export_runs(
    run_dirs: Sequence[Path],
    out_dir: str | Path = DEFAULT_OUT,
    *,
    quantize: str | None = None,
    opset: int = DEFAULT_OPSET,
    data: str | Path | None = None,
    echo: Echo = _silent,
    weak: dict[str, str] | None = None,
) -> ExportReport:
    """Stage every run, then publish them together, or nothing at all.

    ``weak`` maps a run directory (as given) to the weak-model gate's verdict for the runs exported
    despite it (``--allow-weak``): those models are marked weak everywhere (see :func:`stage_run`).

    Every run is still tried when one fails (so one call reports every problem), but a single
    failure, of any exception type, leaves ``out_dir`` exactly as it was. Call
    :meth:`ExportReport.raise_for_failures` to fail loudly. Leftovers of a killed export
    (``.staging-*``) are removed first.
    """
    if quantize not in (None, *QUANTIZE_CHOICES):
        raise SpineScanError(
            f"unknown quantization {quantize!r}; choose one of {', '.join(QUANTIZE_CHOICES)}"
        )
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {out_dir} ({exc.strerror or exc})") from None
    failed: dict[str, str] = {}
    with ExportLock(out_dir) as lock:
        lock.clean_stale(echo)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
        try:
            staged: dict[str, Staged] = {}
            for i, run_dir in enumerate(run_dirs):
                run_staging = staging / f"run{i}"  # one folder per run: a duplicate cannot overwrite
                run_staging.mkdir()
                try:
                    one = stage_run(
                        Path(run_dir),
                        run_staging,
                        quantize=quantize,
                        opset=opset,
                        data=data,
                        echo=echo,
                        weak=(weak or {}).get(str(run_dir)),
                    )
                    if one.name in staged:
                        raise ExportError(f"model {one.name!r} is exported twice in one call")
                    staged[one.name] = one
                except Exception as exc:  # any failure: keep the old set, report one line
                    failed[str(run_dir)] = one_line(exc)
                    echo(f"FAILED {run_dir}: {failed[str(run_dir)]}")
            if failed or not staged:
                return ExportReport(out_dir, {}, failed, len(run_dirs))
            entries = {name: one.entry for name, one in staged.items()}
            files = {fname: path for one in staged.values() for fname, path in one.files.items()}
            cards = {one.entry["card"]: one.card for one in staged.values()}
            try:
                # The page is part of the staged set (issue 26 #4): a disk that fills while it is
                # written fails here, before the switch, like a model that cannot be written.
                version = publish(out_dir, staging / "set", entries, files, cards, echo=echo, page=build_web)
            except Exception as exc:  # e.g. disk full: the switch is the last step
                raise ExportError(
                    f"could not switch {out_dir} to the new set ({one_line(exc)}); the previous set is "
                    "unchanged"
                ) from None
            if (version / WEB_DIR).is_dir():
                page = out_dir / WEB_DIR
                echo(f"browser page written to {page}/ (open it with `spinescan serve --dir {out_dir}`)")
            return ExportReport(out_dir, entries, {}, len(run_dirs), version.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
