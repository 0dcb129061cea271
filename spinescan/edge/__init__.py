"""Running exported models: the ONNX model and its metadata (:mod:`.onnxmodel`), the predictor
and ``spinescan-predict`` (:mod:`.predictor`), overlays (:mod:`.overlay`, :mod:`.landmark_overlay`).
numpy, OpenCV, onnxruntime; never TensorFlow. What a film is and how it is measured lives in
:mod:`spinescan.radiograph`.
"""
