"""Documentation stays in step with the CLI (sqlite-utils style): every command has help
text and is named in README.md, and the README keeps its two fresh-machine commands."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from reconcile.cli.main import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def command_paths(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out = []
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        out.append((path, command))
        if isinstance(command, click.Group):
            out += command_paths(command, path)
    return out


COMMANDS = command_paths()
IDS = [" ".join(path) for path, _ in COMMANDS]


@pytest.fixture(scope="module")
def readme() -> str:
    assert README.exists(), "README.md is missing"
    return README.read_text(encoding="utf-8")


def test_the_walk_finds_nested_commands():
    assert {"demo", "plan", "apply", "run", "config check", "runs show", "sandbox serve"} <= set(IDS)
    assert len(IDS) == len(set(IDS))


@pytest.mark.parametrize("path,command", COMMANDS, ids=IDS)
def test_command_has_help_text(path, command):
    assert command.help and command.help.strip(), f"reconcile {' '.join(path)} has no help text"
    assert command.get_short_help_str().strip()


@pytest.mark.parametrize("path,command", COMMANDS, ids=IDS)
def test_command_is_documented_in_readme(readme, path, command):
    name = "reconcile " + " ".join(path)
    # whole words only: "reconcile run" must not be satisfied by "reconcile runs list"
    assert re.search(re.escape(name) + r"(?![\w-])", readme), f"README.md does not mention `{name}`"


def test_readme_has_the_two_fresh_machine_commands(readme):
    lines = readme.splitlines()
    assert any("reconcile demo" in line and "pip install" in line for line in lines)
    assert any("scripts/test.sh" in line and "pip install" in line for line in lines)
    assert (README.parent / "scripts" / "test.sh").exists()
