"""Placeholder for the `train` commands (being implemented)."""

COMMANDS: list = []
