"""The CLI shell: version, help everywhere, one-line errors and exit codes."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from spinescan import __version__
from spinescan.cli import build_cli


def test_version() -> None:
    result = CliRunner().invoke(build_cli(), ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_help_everywhere() -> None:
    cli = build_cli()
    runner = CliRunner()
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("models", "plugins", "synth", "data", "train", "bench", "export"):
        assert name in result.output, name
    for name, command in cli.commands.items():
        sub = runner.invoke(cli, [name, "--help"])
        assert sub.exit_code == 0, (name, sub.output)
        assert (command.help or "").split("\n")[0].strip()[:20] in sub.output


def test_user_error_is_one_line_with_nonzero_exit() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "spinescan", "train", "no-such-model", "--data", "/nonexistent"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "no-such-model" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unknown_command_exits_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "spinescan", "frobnicate"], capture_output=True, text=True)
    assert proc.returncode == 2 and "No such command" in proc.stderr
