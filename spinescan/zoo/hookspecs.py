"""The hooks a Spine Scan plugin may implement.

A plugin is any importable module (or object) with functions decorated by
``spinescan.hookimpl`` whose names match the specs below. Plugins are found through the
``spinescan`` entry-point group; the built-in models in ``plugins/`` are found exactly the same
way, so anything they do a third-party package can do too.

Each hook is called once per plugin, with errors isolated per plugin: a plugin that raises is
reported (or, with ``SPINESCAN_STRICT_PLUGINS=1``, fails the command) without affecting others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from spinescan.zoo.spec import ModelSpec

hookspec = pluggy.HookspecMarker("spinescan")
hookimpl = pluggy.HookimplMarker("spinescan")


@hookspec
def register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register model specs by calling ``register(spec)`` once per model.

    The spec is validated when registered; a malformed spec is reported against the plugin that
    registered it. Names are global: two plugins registering the same name is an error naming
    both. Do not import TensorFlow here; put it inside ``spec.build`` so that listing models
    stays fast and works on the edge install.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``spinescan`` CLI, e.g. ``@cli.command() def mycmd(): ...``.

    Called after the built-in commands exist; a plugin must not replace them.
    """
