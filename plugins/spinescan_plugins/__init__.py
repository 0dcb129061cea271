"""Spine Scan's built-in model plugins.

Each module here is an ordinary plugin registered through the ``spinescan`` entry-point group in
``pyproject.toml``, exactly as a third-party package would be. They depend on the core's spec and
backbones; the core never imports them.
"""
