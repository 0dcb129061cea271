"""Synthetic spine radiographs with exact ground truth (``spinescan synth``).

Labels come from geometry: each phantom's spine is built from sampled Cobb angles
(:mod:`~spinescan.synth.curves`), labelled by published thresholds (:mod:`~spinescan.synth.labels`)
and drawn with class-independent nuisances (:mod:`~spinescan.synth.framing`,
:mod:`~spinescan.synth.exposure`, :mod:`~spinescan.synth.presentation`). The manifest keeps the angles
and the 68 AASCE vertebral corner landmarks of every image.

No TensorFlow anywhere in this package: it needs numpy and OpenCV only.
"""

from spinescan.synth.labels import CLASSES, ap_label, lateral_label
from spinescan.synth.writer import GENERATOR_VERSION, MANIFEST, SynthError, generate

__all__ = ["CLASSES", "GENERATOR_VERSION", "MANIFEST", "SynthError", "ap_label", "generate", "lateral_label"]
