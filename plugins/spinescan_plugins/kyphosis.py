"""The kyphosis specialist: lateral film, healthy vs hyperkyphosis."""

from spinescan import hookimpl
from spinescan.zoo.search import compact_search
from spinescan.zoo.spec import ModelSpec, TrainDefaults, default_builder


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="kyphosis",
            description="Lateral film: healthy vs hyperkyphosis (specialist).",
            view="lateral",
            classes=("healthy", "kyphosis"),
            build=default_builder,
            search=compact_search(),  # what `spinescan tune` searches
            train=TrainDefaults(target_accuracy=0.9),
        )
    )
