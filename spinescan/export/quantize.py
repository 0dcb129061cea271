"""Static int8 quantization of an exported model, and the gate it must pass to be shipped.

Static QDQ with per-channel weights is onnxruntime's recommended path for CNNs (dynamic
quantization only touches MatMul/Gemm and measured slower than fp32 here). It is not always
safe: MobileNetV3Small's hard-swish activations collapsed to chance under every int8 variant
tried for the issue. So an int8 file is only shipped when, on the run's *test* split, it agrees
with the fp32 model on at least 99% of argmaxes and loses at most one accuracy point; otherwise
the export keeps fp32 alone and says why. Calibration uses *training* images, never test ones.

The stem (the first convolutions, up to and including the first one wider than 1x1) stays in
float: it sees the raw [0, 1] image, and quantizing it alone cost the compact CNN 4.4% argmax
agreement and 3 accuracy points on the phantom test split, while with it in float the int8 model
agreed on every test image.

A landmark model (:mod:`spinescan.landmark_net.model`) is quantized the same way, with its tail kept
in float as well (:func:`float_tail`): the heatmap logits convolution and the soft-argmax after it
(a softmax over every heatmap position, then the coordinate matmuls). In int8 the logits keep 256
levels for a softmax that needs their small differences: on the cobb phantom run the derived
label then agreed with fp32 on 39% of the test films. Its gate is on what a reader sees, film by
film through the predictor's own read-out: :mod:`spinescan.export.landmark_int8`.

``quant_pre_process`` runs with ``skip_symbolic_shape=True`` because its symbolic shape inference
needs sympy, which the project does not depend on.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MIN_AGREEMENT = 0.99
MAX_ACCURACY_DROP = 0.01
CALIBRATION_BATCH = 8
#: Which part of a landmark model's soft-argmax tail stays in float (see :func:`float_tail`).
TAILS = ("none", "softmax", "logits")
#: Nodes that only move values around: walked through to find what computed a tensor.
LAYOUT_OPS = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity"})


def stem_nodes(model: Any) -> list[str]:
    """Names of the leading Conv nodes, up to and including the first with a kernel wider than 1x1
    (the ``to_rgb`` 1x1 of the keras.applications backbones, then their stem)."""
    initializers = {init.name: init for init in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        names.append(node.name)
        weight = initializers.get(node.input[1]) if len(node.input) > 1 else None
        if weight is None or any(d > 1 for d in list(weight.dims)[2:]):
            break
    return names


def float_tail(model: Any, include_logits: bool = True) -> list[str]:
    """Names of a landmark model's soft-argmax tail: every node downstream of the heatmap logits
    (the compute node that feeds the ``Softmax`` through layout-only nodes), and with
    ``include_logits`` that node too. ``[]`` for a graph without a ``Softmax``.

    Found by graph structure rather than by layer name, so a renamed layer cannot silently put the
    tail back into int8.
    """
    producer = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    softmax = next((n for n in model.graph.node if n.op_type == "Softmax"), None)
    if softmax is None:
        return []
    source = producer.get(softmax.input[0])
    while source is not None and source.op_type in LAYOUT_OPS:
        source = producer.get(source.input[0])
    if source is None:
        return []
    tail = {source.name} if include_logits else set()
    frontier = list(source.output)
    while frontier:
        for node in consumers.get(frontier.pop(), []):
            if node.name not in tail:
                tail.add(node.name)
                frontier.extend(node.output)
    return [n.name for n in model.graph.node if n.name in tail]


def quantize_int8(
    fp32_path: Path,
    int8_path: Path,
    calibration: np.ndarray,
    input_name: str = "image",
    tail: str = "none",
) -> list[str]:
    """Write a static QDQ, per-channel, S8S8 quantization of ``fp32_path`` to ``int8_path``.

    ``tail`` keeps a landmark model's soft-argmax in float too (:data:`TAILS`): ``"logits"`` from
    the heatmap logits convolution on, ``"softmax"`` from its output on, ``"none"`` only the stem.
    Returns the names of the nodes kept in float.
    """
    if tail not in TAILS:
        raise ValueError(f"unknown float tail {tail!r}; choose one of {', '.join(TAILS)}")
    import onnx
    import onnxruntime.quantization as q

    if len(calibration) == 0:
        raise ValueError("int8 calibration needs at least one training image")

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[np.ndarray] = iter(
                calibration[i : i + CALIBRATION_BATCH] for i in range(0, len(calibration), CALIBRATION_BATCH)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    prepared = int8_path.with_name(int8_path.name + ".pre.onnx")
    try:
        q.quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared))
        kept_float = stem_nodes(graph)
        if tail != "none":
            kept_float += [n for n in float_tail(graph, tail == "logits") if n not in kept_float]
        q.quantize_static(
            str(prepared),
            str(int8_path),
            Reader(),
            quant_format=q.QuantFormat.QDQ,
            per_channel=True,
            activation_type=q.QuantType.QInt8,
            weight_type=q.QuantType.QInt8,
            calibrate_method=q.CalibrationMethod.MinMax,
            nodes_to_exclude=kept_float,
        )
    finally:
        prepared.unlink(missing_ok=True)
    return kept_float


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_session(session: Any, x: np.ndarray, batch: int = 32) -> np.ndarray:
    """Probabilities for ``x`` in batches (the first output, ``probabilities``; ``cam`` comes second)."""
    name = session.get_inputs()[0].name
    out = [session.run(None, {name: x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def batch1_latency_ms(session: Any, x: np.ndarray, repeats: int = 30, warmup: int = 3) -> float:
    """Median wall time of one single-image call, in milliseconds."""
    name = session.get_inputs()[0].name
    one = np.ascontiguousarray(x[:1], dtype=np.float32)
    for _ in range(warmup):
        session.run(None, {name: one})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {name: one})
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def file_figures(
    fp32_path: Path, int8_path: Path, fp32_session: Any, int8_session: Any, sample: np.ndarray | None
) -> dict[str, Any]:
    """What both int8 gates (this module's and :mod:`spinescan.export.landmark_int8`) record about
    the two files besides their own figures: sizes in bytes and the batch-1 latency on ``sample``'s
    first image (``None`` when there was nothing to time it on)."""
    timed = sample is not None and len(sample) > 0
    return {
        "size_fp32": os.path.getsize(fp32_path),
        "size_int8": os.path.getsize(int8_path),
        "latency_ms_fp32": batch1_latency_ms(fp32_session, sample) if timed else None,
        "latency_ms_int8": batch1_latency_ms(int8_session, sample) if timed else None,
    }


def size_ratio(size_fp32: int, size_int8: int) -> float | None:
    """How many times smaller the int8 file is (two decimals), as both gates' records say it."""
    return round(size_fp32 / size_int8, 2) if size_int8 else None


@dataclass
class Int8Result:
    """How the int8 model compares with fp32 on the test split, and whether it ships."""

    n_test: int
    agreement: float | None
    accuracy_fp32: float | None
    accuracy_int8: float | None
    accuracy_drop: float | None
    size_fp32: int
    size_int8: int
    latency_ms_fp32: float | None
    latency_ms_int8: float | None
    shipped: bool
    reason: str
    calibration_images: int = 0
    float_nodes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["kind"] = "classification"
        out["size_ratio"] = size_ratio(self.size_fp32, self.size_int8)
        return out


def gate(
    agreement: float | None,
    accuracy_drop: float | None,
    n_test: int,
    min_agreement: float = MIN_AGREEMENT,
    max_drop: float = MAX_ACCURACY_DROP,
) -> tuple[bool, str]:
    """Whether an int8 model may ship, and a one-line reason either way."""
    if n_test == 0 or agreement is None or accuracy_drop is None:
        return False, "no labelled test images to check it on"
    if agreement < min_agreement:
        return (
            False,
            f"argmax agreement with fp32 {agreement:.1%} < {min_agreement:.0%} on {n_test} test images",
        )
    if accuracy_drop > max_drop + 1e-12:
        return (
            False,
            f"accuracy drop {accuracy_drop * 100:.1f} points > {max_drop * 100:.0f} on {n_test} test images",
        )
    return (
        True,
        f"agreement {agreement:.1%}, accuracy drop {accuracy_drop * 100:.1f} points on {n_test} test images",
    )


def evaluate_int8(
    fp32_path: Path,
    int8_path: Path,
    x_test: np.ndarray,
    y_test: np.ndarray,
    calibration_images: int = 0,
    float_nodes: list[str] | None = None,
) -> Int8Result:
    """Compare the two files on the labelled test images and apply :func:`gate`."""
    fp32, int8 = _session(fp32_path), _session(int8_path)
    n = len(x_test)
    agreement = acc32 = acc8 = drop = None
    if n:
        p32, p8 = run_session(fp32, x_test), run_session(int8, x_test)
        a32, a8 = p32.argmax(axis=1), p8.argmax(axis=1)
        y = np.asarray(y_test, dtype=int)
        agreement = float(np.mean(a32 == a8))
        acc32, acc8 = float(np.mean(a32 == y)), float(np.mean(a8 == y))
        drop = acc32 - acc8
    shipped, reason = gate(agreement, drop, n)
    return Int8Result(
        n_test=n,
        agreement=agreement,
        accuracy_fp32=acc32,
        accuracy_int8=acc8,
        accuracy_drop=drop,
        **file_figures(fp32_path, int8_path, fp32, int8, x_test),
        shipped=shipped,
        reason=reason,
        calibration_images=calibration_images,
        float_nodes=list(float_nodes or []),
    )
