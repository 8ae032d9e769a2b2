"""The README's commands are the command line's: every ``python cli.py …`` line of its examples parses."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cli import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_blocks(language: str) -> list[str]:
    """The README's fenced code blocks of ``language``."""
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S)


def cli_lines() -> list[str]:
    """Every ``python cli.py …`` command of the README's bash blocks, continuation lines joined,
    comments dropped; lines with placeholders (``[…]``, ``A | B``, ``…``) are synopses, not commands."""
    lines = []
    for block in readme_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            for command in line.split("&&"):
                command = command.split("#")[0].strip()
                if command.startswith("python cli.py") and not re.search(r"\[|\||…", command):
                    lines.append(command)
    return lines


def test_the_readme_has_commands_to_check():
    assert len(cli_lines()) >= 5 and len(readme_blocks("python")) == 1


@pytest.mark.parametrize("command", cli_lines())
def test_readme_command_parses(command):
    args = build_parser().parse_args(shlex.split(command)[2:])  # argparse exits on an unknown option
    assert args.func is not None
