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


def fast_commands() -> list[str]:
    """The README's `rag search`, `rag ask` and `rag index info` lines that need nothing but the built-in
    index: no placeholder (PATH_OR_ID), no checkpoint of yours, no hub model, no other index."""
    fast = []
    for command in readme_commands():
        words = shlex.split(command)
        if not (words[1] in ("search", "ask") or words[1:3] == ["index", "info"]):
            continue
        values = words[2:]
        if any(w.isupper() or w.startswith(("checkpoints/", "deepset/")) for w in values):
            continue
        if "--index" in values and values[values.index("--index") + 1] != "indexes/default":
            continue
        fast.append(command)
    return fast


def test_some_readme_commands_are_fast():
    assert len(fast_commands()) >= 8


@pytest.mark.parametrize("command", fast_commands())
def test_fast_readme_command_runs_as_written(command, small_index, capsys):
    """Run as written, over the test index in place of indexes/default (which `make run` builds)."""
    from rag.cli import main

    args = [str(small_index.path) if w == "indexes/default" else w for w in shlex.split(command)[1:]]
    if "--index" not in args:
        args += ["--index", str(small_index.path)]
    assert main(args) == 0, command
    out = capsys.readouterr().out
    assert ("answer:" in out) if args[0] == "ask" else out.strip(), command
