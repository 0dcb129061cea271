"""The sagittal landmark model: lateral film -> vertebral corners and the S1 endplate -> T4-T12
thoracic kyphosis and L1-S1 lumbar lordosis, defined as the phantom generator defines them.

The label (healthy, kyphosis > 45 deg, lordosis > 65 deg) follows from the angles by
:mod:`spinescan.edge.thresholds`.
"""

from spinescan import hookimpl
from spinescan.edge.angles import LATERAL_ANGLES
from spinescan.edge.landmarks import POINT_NAMES
from spinescan.edge.preprocess import Preprocessing
from spinescan.zoo.spec import ModelSpec, TrainDefaults, landmark_builder

INPUT = (256, 96, 1)


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
            input_size=INPUT,
            preprocessing=Preprocessing(resize="spine_band", crop_aspect=INPUT[1] / INPUT[0]),
            train=TrainDefaults(
                epochs=40,
                batch_size=16,
                learning_rate=2e-3,
                augment=False,
                checkpoint="last",
                dropout=0.0,
                target_accuracy=0.9,
            ),
        )
    )
