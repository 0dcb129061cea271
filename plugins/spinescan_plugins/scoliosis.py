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
            # Real AP sets are small (issue 7): a 10-20 film validation set makes early stopping
            # fragile while BatchNorm statistics are still settling, so training runs at least
            # 15 epochs and waits 10 for an improvement before stopping.
            train=TrainDefaults(target_accuracy=0.9, epochs=40, min_epochs=15, patience=10),
        )
    )
