"""``spinescan models`` and ``spinescan plugins``: what the zoo holds."""

from __future__ import annotations

import json
from typing import Any

import click

from spinescan.cli.options import json_option
from spinescan.edge.manifest import manifest_files, read_manifest
from spinescan.edge.model_files import BUNDLED_DIR
from spinescan.errors import ModelRefusedError
from spinescan.zoo.registry import get_registry
from spinescan.zoo.spec import VIEWS


def headline(entry: dict[str, Any]) -> str:
    """One line of figures for a bundled model, from its manifest entry (the card quotes the same):
    test accuracy with its 95% CI for a classifier, test MAE per angle for a landmark model."""
    metrics = entry.get("metrics") or {}
    test = metrics.get("test") or {}
    if entry.get("task") == "landmarks":
        angles = test.get("angles") or {}
        maes = [
            f"{name} MAE {angles[name]['mae']:.1f} deg"
            for name in entry.get("measurements") or []
            if (angles.get(name) or {}).get("mae") is not None
        ]
        text = ", ".join(maes) or "no test figures"
    elif test.get("accuracy") is not None:
        ci = (metrics.get("test_ci") or {}).get("accuracy")
        text = f"test accuracy {test['accuracy']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
    else:
        text = "no test figures"
    text += f" (n={test.get('n', '?')})"
    int8 = entry.get("int8") or {}
    text += ", int8" if int8.get("shipped") else ", fp32"
    return text + (" WEAK" if entry.get("weak") else "")


def bundled_entries() -> dict[str, dict[str, Any]]:
    """The bundled set's manifest entries whose files are present (empty when none is installed)."""
    try:
        manifest = read_manifest(BUNDLED_DIR)
    except ModelRefusedError:
        return {}
    if manifest is None:
        return {}
    return {
        name: entry
        for name, entry in manifest["models"].items()
        if all((BUNDLED_DIR / f).is_file() for f in manifest_files(entry))
    }


@click.command("models")
@click.argument("pattern", required=False)
@click.option("--view", type=click.Choice(VIEWS), help="Only models of this view.")
@json_option()
def models_command(pattern: str | None, view: str | None, as_json: bool) -> None:
    """List registered models, optionally filtered by a glob PATTERN (e.g. '*osis').

    The last column says which models ship trained weights with the package (the bundled set that
    `spinescan-predict` uses when there is no ./exported/) and their headline test figures."""
    specs = get_registry().list_models(pattern, view)
    bundled = bundled_entries()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        **s.summary(),
                        "bundled": {
                            "headline": headline(bundled[s.name]),
                            "weak": bundled[s.name].get("weak"),
                        },
                    }
                    if s.name in bundled
                    else {**s.summary(), "bundled": None}
                    for s in specs
                ],
                indent=2,
            )
        )
        return
    if not specs:
        click.echo("No models match.")
        return
    width = max(len(s.name) for s in specs)
    measures = {s.name: "measures " + ", ".join(s.measurements) for s in specs}
    whats = {s.name: ", ".join(s.classes) if s.task == "classification" else measures[s.name] for s in specs}
    what_w = max(len(w) for w in whats.values())
    plugin_w = max(len(s.plugin) for s in specs) + 2
    for s in specs:
        size = "x".join(str(v) for v in s.input_size)
        weights = f"bundled: {headline(bundled[s.name])}" if s.name in bundled else "no bundled weights"
        plugin, what = f"[{s.plugin}]", whats[s.name]
        click.echo(
            f"{s.name:<{width}}  {s.view:<7}  {size:<9}  {what:<{what_w}}  {plugin:<{plugin_w}}  {weights}"
        )
    if bundled:
        click.echo(f"Bundled weights: {BUNDLED_DIR} (model cards there; rebuilt by `make models`).")


@click.command("plugins")
@json_option()
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
