"""mkdocs hook: every page under docs/ is reachable from the navigation.

A page listed in mkdocs.yml's ``nav`` goes where it is listed; one that is not (a new topic written
by someone who did not edit mkdocs.yml) is appended under "More topics" rather than being built
but unreachable.
"""

from __future__ import annotations

from typing import Any


def _listed(nav: Any) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, dict):
        return set().union(*(_listed(v) for v in nav.values())) if nav else set()
    if isinstance(nav, list):
        return set().union(*(_listed(v) for v in nav)) if nav else set()
    return set()


def on_files(files: Any, config: Any) -> Any:
    nav = config.get("nav")
    if not nav:
        return files
    listed = _listed(nav)
    pages = [f.src_uri for f in files.documentation_pages()]
    extra = sorted(p for p in pages if p not in listed and not p.startswith("_"))
    if extra:
        nav.append({"More topics": extra})
    return files
