"""The generalist: one lateral-film model for healthy / kyphosis / lordosis."""

from spinescan import hookimpl
from spinescan.zoo.search import compact_search
from spinescan.zoo.spec import ModelSpec, TrainDefaults, default_builder


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="generalist",
            description="Lateral film: healthy vs hyperkyphosis vs hyperlordosis (one 3-class model).",
            view="lateral",
            classes=("healthy", "kyphosis", "lordosis"),
            build=default_builder,
            search=compact_search(),  # what `spinescan tune` searches
            train=TrainDefaults(target_accuracy=0.85),
        )
    )
