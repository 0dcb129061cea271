"""One exported ONNX model in an onnxruntime session: :class:`OnnxModel`, its execution providers, a cache.

Light island (numpy, OpenCV, onnxruntime). The session is checked where it is opened: the file
against the manifest beside it (:mod:`spinescan.edge.manifest`), its metadata
(:mod:`spinescan.edge.model_metadata`), and its input and output shapes against that metadata; a
model that fails any of them is refused (:class:`~spinescan.errors.ModelRefusedError`). The
wrapper then turns a film into the model's input and the model's output into the JSON entry every
reader sees. Finding models on disk is :mod:`spinescan.edge.model_files`; the recorded parity
sample is :mod:`spinescan.edge.parity_sample`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from spinescan.edge.manifest import verify_against_manifest
from spinescan.edge.model_metadata import WEAK_KEY, parse_metadata
from spinescan.errors import ModelRefusedError, SpineScanError
from spinescan.radiograph.measure import measurements_json, points_json, read_landmarks
from spinescan.radiograph.preprocess import film_placement, preprocess, preprocess_placed

OUTPUT_NAME = "probabilities"
#: Optional second output: one class activation map per class (see ``spinescan.export.onnx_convert``).
CAM_NAME = "cam"
#: A landmark model's output (N, K, >= 3): normalised x, y and a visibility logit per point.
POINTS_OUTPUT = "points"
#: ``--device`` values of the predictor and ``spinescan val``: which onnxruntime execution provider runs.
DEVICES = ("cpu", "gpu", "auto")
_GPU_PROVIDER = "CUDAExecutionProvider"
_CPU_PROVIDER = "CPUExecutionProvider"


def providers_for(device: str = "cpu", available: list[str] | None = None) -> list[str]:
    """onnxruntime execution providers for ``--device cpu|gpu|auto``.

    ``gpu`` is a promise the user asked for: when this onnxruntime build has no CUDA provider
    (the ``onnxruntime`` wheel is CPU-only; ``onnxruntime-gpu`` has it) that is one clear
    :class:`~spinescan.errors.SpineScanError`, not a silent fall-back to the CPU. ``auto`` takes
    the GPU when there is one, else the CPU.
    """
    if device not in DEVICES:
        raise SpineScanError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")
    if available is None:
        import onnxruntime as ort

        available = list(ort.get_available_providers())
    has_gpu = _GPU_PROVIDER in available
    if device == "gpu" and not has_gpu:
        raise SpineScanError(
            f"--device gpu: this onnxruntime has no {_GPU_PROVIDER} "
            f"(it has {', '.join(available) or 'none'}); "
            "install onnxruntime-gpu with a CUDA driver, or use --device cpu"
        )
    if device == "cpu" or not has_gpu:
        return [_CPU_PROVIDER]
    return [_GPU_PROVIDER, _CPU_PROVIDER]


class OnnxModel:
    """One exported model in an onnxruntime session: ``predict(batch) -> probabilities``."""

    def __init__(self, path: str | os.PathLike[str], verify: bool = True, device: str = "cpu") -> None:
        import onnxruntime as ort  # keeps `import spinescan.edge.predictor` cheap

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelRefusedError(f"{self.path}: model file not found")
        real = os.path.realpath(self.path)  # the file that is verified is the file that is loaded
        if verify:
            verify_against_manifest(Path(real))
        providers = providers_for(device)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(real, options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own types for bad files
            raise ModelRefusedError(f"{self.path}: not a loadable ONNX model ({exc})") from None
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self.info = parse_metadata(meta, str(self.path))
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelRefusedError(f"{self.path}: expected one input, found {len(inputs)}")
        self.input_name = inputs[0].name
        dims = [d if isinstance(d, int) else None for d in inputs[0].shape]
        fixed = zip(dims[1:], self.info.input_size, strict=False)
        if len(dims) != 4 or any(d not in (None, e) for d, e in fixed):
            raise ModelRefusedError(
                f"{self.path}: input shape {inputs[0].shape} disagrees with metadata {self.info.input_size}"
            )
        outputs = {o.name: o for o in self.session.get_outputs()}
        wanted = POINTS_OUTPUT if self.info.task == "landmarks" else OUTPUT_NAME
        self.output_name = wanted if wanted in outputs else next(iter(outputs))
        self.cam_name = CAM_NAME if CAM_NAME in outputs and self.info.task == "classification" else None
        shape = outputs[self.output_name].shape
        if self.info.task == "landmarks":
            if len(shape) != 3 or (
                shape[1] not in (None, len(self.info.landmarks)) and isinstance(shape[1], int)
            ):
                raise ModelRefusedError(
                    f"{self.path}: output shape {shape} disagrees with {len(self.info.landmarks)} landmarks"
                )
            return
        width = shape[-1]
        if isinstance(width, int) and width != len(self.info.classes):
            raise ModelRefusedError(
                f"{self.path}: {width} outputs but the metadata names {len(self.info.classes)} classes"
            )

    @property
    def name(self) -> str:
        return self.info.name

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, Any]:
        """The model's input tensor for one decoded image (the shared preprocessing), and what
        reading its output needs besides: nothing for a classifier; for a landmark model where
        the film went in the input (:class:`~spinescan.radiograph.preprocess.Placement`) and its size."""
        if self.info.task == "landmarks":
            x, placement = preprocess_placed(image, self.info.input_size, self.info.preprocessing)
            return x, (placement, tuple(image.shape[:2]))
        return preprocess(image, self.info.input_size, self.info.preprocessing), None

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (N, classes) for an (N, H, W, C) float32 batch."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def predict_cam(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities and class activation maps (N, h, w, classes), or ``None`` without a CAM."""
        if self.cam_name is None:
            return self.predict(batch), None
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        probs, cam = self.session.run([self.output_name, self.cam_name], {self.input_name: batch})
        return probs, cam

    def heatmap(self, image: np.ndarray, probs: np.ndarray, cam: np.ndarray | None) -> dict[str, Any]:
        """The predicted class's heatmap entry for one image (``cam``: its (h, w, classes) maps)."""
        from spinescan.edge import overlay

        label = int(np.argmax(probs))
        if cam is None:
            why = json.loads(self.info.metadata.get("cam", "{}") or "{}").get("reason", "no cam output")
            return {"class": self.info.classes[label], "error": f"{self.name} has no heatmap: {why}"}
        placement = film_placement(image, self.info.input_size, self.info.preprocessing)
        return {
            "class": self.info.classes[label],
            "grid": np.round(overlay.normalise_cam(cam[..., label]).astype(float), 4).tolist(),
            "cam": np.round(cam[..., label].astype(float), 5).tolist(),
            "geometry": placement.to_geometry(image.shape[:2], self.info.input_size[:2]),
            "note": overlay.DISCLAIMER,
        }

    def read(self, output: np.ndarray, context: Any) -> dict[str, Any]:
        """A landmark model's output for one film -> landmarks (film pixels), angles, label."""
        placement, image_hw = context
        extra = self.info.document.measurements if self.info.document is not None else ()
        return read_landmarks(output, placement, self.info.view, self.info.input_size[:2], image_hw, extra)

    def result(
        self, output: np.ndarray, context: Any = None, reading: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The JSON entry of one film. A landmark model's: ``measurements`` (degrees, manifest
        names; ``null`` when not measurable, with the reason in ``reasons``), ``landmarks`` as
        ``[x, y]`` in the input image's pixels (``null`` for a point judged not visible; 68 corners
        T1..L5 TL, TR, BL, BR, then the S1 endplate's left and right ends), and the ``label`` that
        the angles imply (``null`` with ``label_reason`` when they imply none); ``plausibility``
        (``{"severity": "ok" | "warning" | "severe", "reasons": [...]}``): whether the points can be
        a spine (severe: every angle and the label are ``null``, the reasons in ``reasons``)."""
        if self.info.task == "landmarks":
            r = reading if reading is not None else self.read(output, context)
            m = measurements_json(r["angles"], self.info.measurements)
            out = {
                "model": self.name,
                "task": "landmarks",
                "label": r["label"],
                "measurements": m["measurements"],
                "reasons": m["missing"],
                "landmarks": points_json(r["landmarks"], r["sacrum"]),
                "plausibility": r["plausibility"].to_json(),
            }
            if r["label_reason"]:
                out["label_reason"] = r["label_reason"]
            if m["notes"]:
                out["notes"] = m["notes"]
            return self._marked(out)
        probs = output
        probabilities = {c: float(p) for c, p in zip(self.info.classes, probs, strict=True)}
        return self._marked(
            {
                "model": self.name,
                "label": self.info.classes[int(np.argmax(probs))],
                "probabilities": probabilities,
            }
        )

    def _marked(self, result: dict[str, Any]) -> dict[str, Any]:
        """``result`` with ``"weak": <the gate's verdict>`` when this model was exported weak, so no
        reading of a model that has not shown it reads the spine travels without the mark."""
        if self.info.weak:
            result[WEAK_KEY] = self.info.weak
        return result


#: Open sessions by (resolved path, size, mtime): :func:`load_model`'s cache.
_SESSIONS: dict[tuple[str, int, int], OnnxModel] = {}


def load_model(path: str | os.PathLike[str]) -> OnnxModel:
    """An :class:`OnnxModel`, cached by path, size and mtime (notebooks call in a loop)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        raise ModelRefusedError(f"{path}: model file not found") from None
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SESSIONS:
        _SESSIONS[key] = OnnxModel(path)
    return _SESSIONS[key]
