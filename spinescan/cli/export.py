"""Placeholder for the `export` commands (being implemented)."""

COMMANDS: list = []
