"""Plugin discovery and the model registry.

Every model, built-in or third-party, arrives through the ``spinescan`` entry-point group and the
``register_models`` hook. pluggy does not isolate import errors, so each entry point is loaded and
each hook implementation is called on its own: one broken plugin is reported as a warning naming
it (or, with ``SPINESCAN_STRICT_PLUGINS=1``, raised) and the others keep working.

Importing this module, or listing models, never imports TensorFlow.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata as md
import os
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import pluggy

from spinescan.errors import PluginError, SpineScanError
from spinescan.zoo import hookspecs
from spinescan.zoo.spec import ModelSpec

ENTRY_POINT_GROUP = "spinescan"
#: The distribution whose entry points are the built-in plugins. Built-ins are found exactly as
#: third-party plugins are (entry points); this name only says which of them are built in, and
#: so survive ``SPINESCAN_DISABLE_PLUGIN_AUTOLOAD=1``. A source tree that was never pip-installed
#: has no entry points and therefore no models: install it (``pip install -e .``).
CORE_DISTRIBUTION = "spinescan"


class PluginWarning(UserWarning):
    """A plugin failed to load or registered something invalid; the rest still work."""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def strict_plugins() -> bool:
    return _env_flag("SPINESCAN_STRICT_PLUGINS")


def autoload_disabled() -> bool:
    return _env_flag("SPINESCAN_DISABLE_PLUGIN_AUTOLOAD")


@dataclass
class PluginInfo:
    """One loaded plugin, for ``spinescan plugins``."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    hooks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "hooks": sorted(self.hooks),
        }


@dataclass
class Registry:
    """The loaded plugins, their models, and what went wrong on the way."""

    manager: pluggy.PluginManager
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    models: dict[str, ModelSpec] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    # -- loading ---------------------------------------------------------------------------
    def report(self, plugin: str, exc: BaseException, what: str) -> None:
        message = f"plugin {plugin!r} {what}: {type(exc).__name__}: {exc}"
        if strict_plugins():
            raise PluginError(message + " (SPINESCAN_STRICT_PLUGINS=1)") from exc
        self.problems.append(message)
        warnings.warn(message, PluginWarning, stacklevel=2)

    def add_plugin(self, obj: object, name: str, info: PluginInfo | None = None) -> None:
        """Register a plugin object (module or instance) and collect its models."""
        self.manager.register(obj, name=name)
        info = info or PluginInfo(name=name, module=getattr(obj, "__name__", type(obj).__name__))
        info.hooks = sorted(c.name for c in self.manager.get_hookcallers(obj) or [])
        self.plugins[name] = info
        self._collect_models(name, obj)

    def _collect_models(self, plugin_name: str, obj: object) -> None:
        impls = [i for i in self.manager.hook.register_models.get_hookimpls() if i.plugin is obj]
        for impl in impls:
            pending: list[ModelSpec] = []

            def register(spec: ModelSpec, _pending: list[ModelSpec] = pending) -> None:
                if not isinstance(spec, ModelSpec):
                    raise TypeError(f"register() expects a ModelSpec, got {type(spec).__name__}")
                _pending.append(spec)

            try:
                impl.function(register=register)
            except Exception as exc:  # isolate any plugin failure
                self.report(plugin_name, exc, "failed in register_models")
                continue
            for spec in pending:
                if spec.name in self.models:
                    other = self.models[spec.name].plugin
                    raise PluginError(
                        f"duplicate model name {spec.name!r}: registered by plugin {other!r} "
                        f"and by plugin {plugin_name!r}"
                    )
                self.models[spec.name] = replace(spec, plugin=plugin_name)

    # -- queries ---------------------------------------------------------------------------
    def list_models(self, pattern: str | None = None, view: str | None = None) -> list[ModelSpec]:
        """Models sorted by name, optionally filtered by a glob (``*osis``) and a view."""
        specs = sorted(self.models.values(), key=lambda s: s.name)
        if pattern:
            specs = [s for s in specs if fnmatch.fnmatch(s.name, pattern)]
        if view:
            specs = [s for s in specs if s.view == view]
        return specs

    def get(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "none"
            raise SpineScanError(f"unknown model {name!r}; registered models: {known}") from None


def _entry_points() -> list[md.EntryPoint]:
    return sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _dist_of(ep: md.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def load_registry() -> Registry:
    """Discover and load every plugin. Prefer :func:`get_registry`, which caches the result."""
    manager = pluggy.PluginManager("spinescan")
    manager.add_hookspecs(hookspecs)
    registry = Registry(manager=manager)
    seen_modules: set[str] = set()

    for ep in _entry_points():
        dist, version = _dist_of(ep)
        builtin = dist == CORE_DISTRIBUTION
        if autoload_disabled() and not builtin:
            continue
        if ep.name in registry.plugins or ep.value in seen_modules:
            continue  # the same distribution seen twice on sys.path
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not take the CLI down
            registry.report(ep.name, exc, f"failed to import ({ep.value})")
            continue
        seen_modules.add(ep.value)
        info = PluginInfo(
            name=ep.name,
            module=ep.value,
            distribution=dist,
            version=version,
            builtin=builtin,
        )
        registry.add_plugin(obj, ep.name, info)
    return registry


_REGISTRY: Registry | None = None


def get_registry(reload: bool = False) -> Registry:
    """The process-wide registry, loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None or reload:
        _REGISTRY = load_registry()
    return _REGISTRY


def list_models(pattern: str | None = None, view: str | None = None) -> list[ModelSpec]:
    """All registered models, like ``timm.list_models`` (glob ``pattern``, optional view)."""
    return get_registry().list_models(pattern, view)


def get_spec(name: str) -> ModelSpec:
    """The spec registered under ``name``; unknown names raise a message listing known ones."""
    return get_registry().get(name)
