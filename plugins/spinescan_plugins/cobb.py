"""The Cobb landmark model: AP film -> vertebral corners -> PT, MT, TL/L and largest Cobb angles,
and the AASCE challenge's three angles (``aasce_a1_deg``..``a3``, :mod:`spinescan.edge.aasce`) from
the same smoothed mid-lines, so its SMAPE compares with the published figures.

The label (scoliosis at a largest Cobb of 10 deg or more) follows from the measured angle by
:mod:`spinescan.edge.thresholds`; the model itself only places points.
"""

from spinescan import hookimpl
from spinescan.edge.angles import AP_ANGLES
from spinescan.edge.landmarks import POINT_NAMES
from spinescan.zoo.spec import (
    COBB_TRAIN,
    LANDMARK_INPUT,
    LANDMARK_PREPROCESSING,
    ModelSpec,
    landmark_builder,
)


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="cobb",
            description=(
                "AP film: landmarks -> PT/MT/TL Cobb angles and the largest (scoliosis >= 10 deg), "
                "and the AASCE challenge's three angles."
            ),
            view="ap",
            classes=("healthy", "scoliosis"),
            build=landmark_builder,
            task="landmarks",
            # The 68 AASCE corners and the S1 endplate (an AP phantom's S1 is not annotated: the
            # loss masks it and the model learns to call it not visible).
            landmarks=POINT_NAMES,
            measurements=AP_ANGLES,
            input_size=LANDMARK_INPUT,
            preprocessing=LANDMARK_PREPROCESSING,
            train=COBB_TRAIN,
        )
    )
