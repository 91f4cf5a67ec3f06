"""Every CLI command is documented: it has help and an ``Example:`` block."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from audiobook.cli import cli

COMMANDS = sorted(cli.commands)


def test_the_commands_the_issues_ask_for_exist():
    assert {
        "convert",
        "inspect",
        "estimate",
        "voices",
        "tasks",
        "polly-emulator",
        "batch",
        "status",
        "gc",
    } <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_command_has_help_and_example(name):
    command = cli.commands[name]
    assert command.help and command.help.strip(), f"{name} has no help"
    assert "Example:" in command.help, f"{name} help has no Example: block"
    assert command.get_short_help_str().strip()


@pytest.mark.parametrize("name", [n for n in COMMANDS if n != "polly-emulator"])
def test_help_runs(name):
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output


def test_public_api_resolves():
    import audiobook

    assert [n for n in audiobook.__all__ if getattr(audiobook, n, None) is None] == []
