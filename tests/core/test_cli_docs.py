"""docs/cli.md is generated from the click commands (issue 17, item 5): a stale page fails."""

from __future__ import annotations

import re
from pathlib import Path

import click

from sealwire.cli._app import build_cli
from sealwire.cli.docs import render
from sealwire.cli.output import EXIT_CODES, ExitCode
from sealwire.plugins import load_registry

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "cli.md"


def test_docs_cli_md_is_what_the_commands_generate() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(load_registry()), (
        "docs/cli.md is stale: run `uv run python -m sealwire.cli.docs`"
    )


def test_every_command_has_its_section_and_every_exit_code_its_row() -> None:
    page = PAGE.read_text(encoding="utf-8")
    root = build_cli(load_registry())

    def paths(command: click.Command, prefix: str) -> list[str]:
        found = [prefix]
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                found += paths(sub, f"{prefix} {name}")
        return found

    for path in paths(root, "sealwire"):
        assert re.search(rf"^#+ `{re.escape(path)}`$", page, re.MULTILINE), path
    for code in ExitCode:
        assert f"| {int(code)} | {EXIT_CODES[code]} |" in page
    for message in ("no agent in", "unreachable", "cannot listen on", "not valid TOML",
                    "failed to load", "no answer within"):  # fmt: skip
        assert f"`{message}" in page or f" {message}" in page, message


def test_the_readme_links_the_cli_reference() -> None:
    assert "(docs/cli.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
