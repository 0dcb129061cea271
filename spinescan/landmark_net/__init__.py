"""Landmark models: vertebral corners from a film, from which the angles are measured.

:mod:`.model` builds the Keras model and its loss (TensorFlow, imported lazily); the targets and
the read-out back to film pixels live in the light island (:mod:`spinescan.radiograph.landmark_codec`), since
the ONNX predictor needs them without TensorFlow.
"""
