"""The light island: image reading, numpy preprocessing and the ONNX predictor (numpy, OpenCV,
onnxruntime; never TensorFlow).
"""
