"""Running exported models: the ONNX session (:mod:`.onnxmodel`), its metadata (:mod:`.model_metadata`),
the set's manifest (:mod:`.manifest`), which models (:mod:`.model_files`), the recorded parity sample
(:mod:`.parity_sample`), the predictor and ``spinescan-predict`` (:mod:`.predictor`), overlays
(:mod:`.overlay`, :mod:`.landmark_overlay`). numpy, OpenCV, onnxruntime; never TensorFlow. What a
film is and how it is measured lives in :mod:`spinescan.radiograph`.
"""
