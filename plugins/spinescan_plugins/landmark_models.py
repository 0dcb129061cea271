"""The two landmark models, one family declared once: a film -> vertebral corners -> angles.

* ``cobb``: AP film -> PT, MT, TL/L and largest Cobb angles (scoliosis at a largest Cobb of
  10 deg or more), and the AASCE challenge's three angles (``aasce_a1_deg``..``a3``,
  :mod:`spinescan.radiograph.aasce`) from the same smoothed mid-lines, so its SMAPE compares with the
  published figures; trained on real annotated films with its own defaults (``COBB_TRAIN``);
* ``sagittal``: lateral film -> corners and the S1 endplate -> T4-T12 thoracic kyphosis and L1-S1
  lumbar lordosis, defined as the phantom generator defines them (healthy, kyphosis > 45 deg,
  lordosis > 65 deg).

The label follows from the measured angles by :mod:`spinescan.radiograph.thresholds`; the models only
place points. Both predict the 68 AASCE corners and the S1 superior endplate (manifest ``sacrum``;
an AP phantom's S1 is not annotated: the loss masks it and the model learns to call it not
visible), with the same input and preprocessing.
"""

from spinescan import hookimpl
from spinescan.radiograph.angles import AP_ANGLES, LATERAL_ANGLES
from spinescan.radiograph.landmark_codec import POINT_NAMES
from spinescan.zoo.spec import (
    COBB_TRAIN,
    LANDMARK_INPUT,
    LANDMARK_PREPROCESSING,
    LANDMARK_TRAIN,
    HParams,
    ModelSpec,
    landmark_builder,
)


def _landmark_model(
    name: str,
    description: str,
    view: str,
    classes: tuple[str, ...],
    measurements: tuple[str, ...],
    train: HParams = LANDMARK_TRAIN,
) -> ModelSpec:
    return ModelSpec(
        name=name,
        description=description,
        view=view,
        classes=classes,
        build=landmark_builder,
        task="landmarks",
        landmarks=POINT_NAMES,
        measurements=measurements,
        input_size=LANDMARK_INPUT,
        preprocessing=LANDMARK_PREPROCESSING,
        train=train,
    )


def landmark_models() -> list[ModelSpec]:
    """The two specs, in the order ``spinescan models`` lists them."""
    return [
        _landmark_model(
            "cobb",
            "AP film: landmarks -> PT/MT/TL Cobb angles and the largest (scoliosis >= 10 deg), "
            "and the AASCE challenge's three angles.",
            "ap",
            ("healthy", "scoliosis"),
            AP_ANGLES,
            COBB_TRAIN,
        ),
        _landmark_model(
            "sagittal",
            "Lateral film: landmarks incl. S1 -> T4-T12 kyphosis, L1-S1 lordosis.",
            "lateral",
            ("healthy", "kyphosis", "lordosis"),
            LATERAL_ANGLES,
        ),
    ]


@hookimpl
def register_models(register):
    for spec in landmark_models():
        register(spec)
