"""Every `rag ...` command the README shows parses with today's CLI (flags renamed or removed fail here)."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from rag.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"
SUBCOMMANDS = {"index", "search", "eval", "ask", "train", "export-reader", "demo"}


def readme_commands() -> list[str]:
    """`rag SUBCOMMAND ...` lines inside the README's code blocks, continuation lines joined, comments dropped."""
    commands, inside, pending = [], False, ""
    for raw in README.read_text().splitlines():
        if raw.startswith("```"):
            inside, pending = not inside, ""
            continue
        if not inside:
            continue
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        line = line.split(" #")[0].strip().removeprefix("$ ")
        words = line.split()
        # not benchmark output rows that start with "rag", nor usage sketches with [optional] parts or pipes
        if words[:1] == ["rag"] and len(words) > 1 and (words[1] in SUBCOMMANDS or words[1].startswith("--")) and "[" not in line and "|" not in line:
            commands.append(line)
    return commands


def test_the_readme_shows_commands():
    assert len(readme_commands()) >= 20


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_parses(command):
    try:
        build_parser().parse_args(shlex.split(command)[1:])
    except SystemExit as e:
        pytest.fail(f"README command does not parse ({e.code}): {command}")
