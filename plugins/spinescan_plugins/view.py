"""The view guard: which film is this - an AP/PA spine, a lateral spine, or something else?

Run first by the predictor, the Python API, ``predict.py`` and the page when it is in the export
set (:mod:`spinescan.edge.guard`): a film's models are those of the view it names, and a film it
calls ``other`` (a chest film, a hand, a photo, a blank, a spine film rotated, upside down or
inverted) gets no label and no angles. It is tiny on purpose (a 64 x 64 letterboxed input, 16
base filters): it runs on every film before anything else. Its view is ``any``: it is trained on
films of every view, from a ``manifest.csv`` whose ``view`` column says ``any`` and whose label is
the film's view (``benchmarks/view_guard.py build`` writes that dataset and trains it).
"""

from spinescan import hookimpl
from spinescan.radiograph.preprocess import Preprocessing
from spinescan.zoo.spec import GUARD_VIEW, ModelSpec, TrainDefaults, default_builder


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="view",
            description="Any film: AP/PA spine vs lateral spine vs other (the view guard, run first).",
            view=GUARD_VIEW,
            classes=("ap", "lateral", "other"),
            build=default_builder,
            # The whole film, letterboxed: its aspect and where the spine lies are the evidence
            # (a rotated film is wide, an upside-down one has its pelvis on top).
            input_size=(64, 64, 1),
            preprocessing=Preprocessing(resize="letterbox"),
            negative_class="other",
            train=TrainDefaults(epochs=14, width=16, depth=4, target_accuracy=0.95),
        )
    )
