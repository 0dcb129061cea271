"""The recorded parity sample: a seeded input whose output the export stored in the manifest.

Light island (no TensorFlow). So a shipped file can be re-checked anywhere, without the training
data or TensorFlow (``tests/test_pretrained.py`` does, for the bundled models): a file that no
longer computes what was exported is refused (:class:`~spinescan.errors.ModelRefusedError`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spinescan.edge.onnxmodel import OnnxModel
from spinescan.errors import ModelRefusedError

#: The recorded parity sample: a seeded input whose output the export stored in the manifest, so a
#: shipped file can be re-checked anywhere without the training data (:func:`check_parity_sample`).
PARITY_SEED = 0
#: Largest |difference| accepted when re-running the parity sample: fp32 files are bit-stable on one
#: onnxruntime build and within float rounding across CPUs; int8 kernels differ more between CPUs.
PARITY_SAMPLE_TOLERANCE = {"fp32": 1e-4, "int8": 2e-2}


def parity_input(input_size: tuple[int, ...] | list[int], seed: int = PARITY_SEED) -> np.ndarray:
    """The recorded parity sample's input: a (1, H, W, C) float32 batch in [0, 1] from ``seed``.

    Regenerated, never stored: the manifest keeps only the seed and the expected output."""
    h, w, c = (int(v) for v in input_size)
    return np.random.default_rng(seed).random((1, h, w, c), dtype=np.float32)


def record_parity_sample(model: OnnxModel, kind: str = "fp32") -> dict[str, Any]:
    """What the export stores for one file: the seed, the output on :func:`parity_input`, the
    tolerance a re-run must meet (see :data:`PARITY_SAMPLE_TOLERANCE`)."""
    out = model.predict(parity_input(model.info.input_size))[0]
    return {
        "seed": PARITY_SEED,
        "output": np.round(out.astype(np.float64), 7).tolist(),
        "tolerance": PARITY_SAMPLE_TOLERANCE[kind],
    }


def check_parity_sample(model: OnnxModel, sample: dict[str, Any]) -> float:
    """Re-run a recorded parity sample; the largest |difference|, or :class:`ModelRefusedError`
    when it exceeds the recorded tolerance (a file that no longer computes what was exported)."""
    out = model.predict(parity_input(model.info.input_size, int(sample["seed"])))[0]
    expected = np.asarray(sample["output"], dtype=np.float64)
    if expected.shape != out.shape:
        raise ModelRefusedError(
            f"{model.path}: parity sample shape {expected.shape}, model gives {out.shape}"
        )
    diff = float(np.max(np.abs(out.astype(np.float64) - expected))) if out.size else 0.0
    if not diff <= float(sample["tolerance"]):
        raise ModelRefusedError(
            f"{model.path}: output on the recorded parity sample differs by {diff:.2e} "
            f"(tolerance {sample['tolerance']:.0e})"
        )
    return diff
