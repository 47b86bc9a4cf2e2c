"""``sealwire plugins`` (what is installed) and ``sealwire plugin new`` (write one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sealwire.cli.output import Table, emit, state
from sealwire.errors import ConfigurationError
from sealwire.scaffold import SHAPES, new_plugin

__all__ = ["COMMANDS"]


@click.command()
def plugins() -> None:
    """The plugins loaded, and the bindings they contribute."""
    registry = state().registry
    data: dict[str, Any] = {
        "plugins": [
            {"name": p.name, "distribution": p.distribution, "version": p.version}
            for p in registry.plugins
        ],
        "bindings": [
            {
                "name": name,
                "version": cls.info.version,
                "uri": cls.info.uri,
                "shape": str(cls.info.shape.value),
                "properties": sorted(str(p.value) for p in cls.info.properties),
            }
            for name, cls in sorted(registry.bindings.items())
        ],
        "commands": sorted(registry.cli_commands),
    }

    def human() -> None:
        emit_tables = [
            Table(
                title="plugins",
                columns=("plugin", "distribution", "version"),
                rows=tuple((p["name"], p["distribution"], p["version"]) for p in data["plugins"]),
            ),
            Table(
                title="bindings" if data["bindings"] else "bindings: none installed",
                columns=("binding", "version", "uri", "shape", "properties"),
                rows=tuple(
                    (b["name"], b["version"], b["uri"], b["shape"], ", ".join(b["properties"]))
                    for b in data["bindings"]
                ),
            ),
        ]
        for table in emit_tables:
            emit(data, table)

    emit(data, human)


@click.group()
def plugin() -> None:
    """Write a new plugin package."""


@plugin.command()
@click.argument("name")
@click.option("--shape", type=click.Choice(SHAPES), default="session", show_default=True)
@click.option(
    "--into",
    default=".",
    type=click.Path(file_okay=False, path_type=Path),
    help="The folder to write sealwire-NAME in.",
)
def new(name: str, shape: str, into: Path) -> None:
    """An installable plugin NAME that passes the contract suite."""
    if name in state().registry.bindings:
        raise ConfigurationError(f"a binding named {name!r} is already installed")
    folder = new_plugin(name, shape=shape, into=into)
    emit(
        {"folder": str(folder), "name": name, "shape": shape},
        [f"wrote {folder}: pip install -e '{folder}[test]', then pytest in it (see its README)"],
    )


COMMANDS = (plugins, plugin)
