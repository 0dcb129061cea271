"""``spinescan models`` and ``spinescan plugins``: what the zoo holds."""

from __future__ import annotations

import json

import click

from spinescan.zoo.registry import get_registry
from spinescan.zoo.spec import VIEWS


@click.command("models")
@click.argument("pattern", required=False)
@click.option("--view", type=click.Choice(VIEWS), help="Only models of this view.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models_command(pattern: str | None, view: str | None, as_json: bool) -> None:
    """List registered models, optionally filtered by a glob PATTERN (e.g. '*osis')."""
    specs = get_registry().list_models(pattern, view)
    if as_json:
        click.echo(json.dumps([s.summary() for s in specs], indent=2))
        return
    if not specs:
        click.echo("No models match.")
        return
    width = max(len(s.name) for s in specs)
    for s in specs:
        size = "x".join(str(v) for v in s.input_size)
        what = ", ".join(s.classes) if s.task == "classification" else "measures " + ", ".join(s.measurements)
        click.echo(f"{s.name:<{width}}  {s.view:<7}  {size:<9}  {what:<28}  [{s.plugin}]")


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_command(as_json: bool) -> None:
    """List loaded plugins with their distribution, version and the hooks they implement."""
    registry = get_registry()
    infos = [p.to_dict() for p in registry.plugins.values()]
    if as_json:
        click.echo(json.dumps({"plugins": infos, "problems": registry.problems}, indent=2))
        return
    for p in infos:
        origin = f"{p['distribution']} {p['version']}" if p["distribution"] else "unpackaged"
        tag = " (built-in)" if p["builtin"] else ""
        click.echo(f"{p['name']}{tag}: {p['module']} [{origin}] hooks: {', '.join(p['hooks'])}")
    for problem in registry.problems:
        click.echo(f"broken: {problem}")


COMMANDS = [models_command, plugins_command]
