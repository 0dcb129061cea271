"""The Cobb landmark model: AP film -> vertebral corners -> PT, MT, TL/L and largest Cobb angles.

The label (scoliosis at a largest Cobb of 10 deg or more) follows from the measured angle by
:mod:`spinescan.edge.thresholds`; the model itself only places points.
"""

from spinescan import hookimpl
from spinescan.edge.angles import AP_ANGLES
from spinescan.edge.landmarks import POINT_NAMES
from spinescan.edge.preprocess import Preprocessing
from spinescan.zoo.spec import ModelSpec, TrainDefaults, landmark_builder

# A tall, narrow input: 256 rows keep each of the 17 vertebrae about 10 input pixels high, and
# spine_band keeps every row of the film (a crop must never cut off T1 or L5) while cutting the
# columns of wide films to the input's aspect around the spine (benchmarks/landmark_prototype.py).
INPUT = (256, 96, 1)


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="cobb",
            description="AP film: landmarks -> PT/MT/TL Cobb angles and the largest (scoliosis >= 10 deg).",
            view="ap",
            classes=("healthy", "scoliosis"),
            build=landmark_builder,
            task="landmarks",
            # The 68 AASCE corners and the S1 endplate (an AP phantom's S1 is not annotated: the
            # loss masks it and the model learns to call it not visible).
            landmarks=POINT_NAMES,
            measurements=AP_ANGLES,
            input_size=INPUT,
            preprocessing=Preprocessing(resize="spine_band", crop_aspect=INPUT[1] / INPUT[0]),
            # From scratch, no augmentation (a geometric one would move the targets), the whole
            # cosine schedule kept. 40 epochs of the default 100-per-class phantoms: minutes on CPU.
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
