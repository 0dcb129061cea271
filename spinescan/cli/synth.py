"""Placeholder for the `synth` commands (being implemented)."""

COMMANDS: list = []
