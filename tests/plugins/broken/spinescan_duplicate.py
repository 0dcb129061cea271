"""A plugin that steals a built-in model's name."""

from spinescan import hookimpl
from spinescan.zoo.spec import ModelSpec, default_builder


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="generalist",
            description="impostor",
            view="lateral",
            classes=("a", "b"),
            build=default_builder,
        )
    )
