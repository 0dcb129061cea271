"""The radiograph domain: what a spinal film is and what is measured on it (numpy, OpenCV).

Reading a film (:mod:`.imageio` with :mod:`.formats`, :mod:`.limits`, :mod:`.files`,
:mod:`.dicom`), normalising it for a model (:mod:`.preprocess`), the landmark codec between film
pixels and model targets (:mod:`.landmark_codec`), the angles (:mod:`.angles`), the clinical
thresholds (:mod:`.thresholds`) and the one read-out of a landmark model's output
(:mod:`.measure`). Every flow package (synth, training, evaluation, export) and the edge predictor
import it; it imports only the foundation, never TensorFlow (an import contract).
"""
