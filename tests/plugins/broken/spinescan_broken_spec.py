"""A plugin that imports fine but registers a malformed spec."""

from spinescan import hookimpl
from spinescan.zoo.spec import ModelSpec, default_builder


@hookimpl
def register_models(register):
    register(ModelSpec(name="bad", description="", view="sagittal", classes=("only",), build=default_builder))
