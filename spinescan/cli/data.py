"""Placeholder for the `data` commands (being implemented)."""

COMMANDS: list = []
