"""The scoliosis model: AP film, healthy vs scoliosis (coronal Cobb >= 10 deg)."""

from spinescan import hookimpl
from spinescan.spec import ModelSpec, TrainDefaults, default_builder


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="scoliosis",
            description="AP film: healthy vs scoliosis (coronal Cobb >= 10 deg, SRS definition).",
            view="ap",
            classes=("healthy", "scoliosis"),
            build=default_builder,
            train=TrainDefaults(target_accuracy=0.9),
        )
    )
