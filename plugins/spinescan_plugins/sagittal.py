"""The sagittal landmark model: lateral film -> vertebral corners and the S1 endplate -> T4-T12
thoracic kyphosis and L1-S1 lumbar lordosis, defined as the phantom generator defines them.

The label (healthy, kyphosis > 45 deg, lordosis > 65 deg) follows from the angles by
:mod:`spinescan.edge.thresholds`.
"""

from spinescan import hookimpl
from spinescan.edge.angles import LATERAL_ANGLES
from spinescan.edge.landmarks import POINT_NAMES
from spinescan.zoo.spec import (
    LANDMARK_INPUT,
    LANDMARK_PREPROCESSING,
    LANDMARK_TRAIN,
    ModelSpec,
    landmark_builder,
)


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="sagittal",
            description="Lateral film: landmarks incl. S1 -> T4-T12 kyphosis, L1-S1 lordosis.",
            view="lateral",
            classes=("healthy", "kyphosis", "lordosis"),
            build=landmark_builder,
            task="landmarks",
            landmarks=POINT_NAMES,  # the 68 corners and the S1 superior endplate (manifest `sacrum`)
            measurements=LATERAL_ANGLES,
            input_size=LANDMARK_INPUT,
            preprocessing=LANDMARK_PREPROCESSING,
            train=LANDMARK_TRAIN,
        )
    )
