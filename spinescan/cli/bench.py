"""Placeholder for the `bench` commands (being implemented)."""

COMMANDS: list = []
