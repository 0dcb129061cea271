"""The lordosis specialist: lateral film, healthy vs hyperlordosis."""

from spinescan import hookimpl
from spinescan.zoo.search import compact_search
from spinescan.zoo.spec import ModelSpec, TrainDefaults, default_builder


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="lordosis",
            description="Lateral film: healthy vs hyperlordosis (specialist).",
            view="lateral",
            classes=("healthy", "lordosis"),
            build=default_builder,
            search=compact_search(),  # what `spinescan tune` searches
            train=TrainDefaults(target_accuracy=0.9),
        )
    )
