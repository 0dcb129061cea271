"""A tiny third-party plugin, as an outside package would write it: one model and one command."""

import click

from spinescan import hookimpl
from spinescan.zoo.spec import ModelSpec, TrainDefaults, default_builder


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="spondylolisthesis",
            description="Lateral film: healthy vs spondylolisthesis (third-party example).",
            view="lateral",
            classes=("healthy", "spondylolisthesis"),
            input_size=(96, 96, 1),
            build=default_builder,
            train=TrainDefaults(epochs=5),
        )
    )


@hookimpl
def register_commands(cli):
    @cli.command("spondylo-hello")
    @click.argument("who", default="world")
    def hello(who):
        """Say hello from the third-party plugin."""
        click.echo(f"hello {who} from spondylo")
