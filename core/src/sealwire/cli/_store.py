"""``sealwire store migrate``: move the agent's state to another store."""

from __future__ import annotations

import click

from sealwire.cli._agent import store_choice, store_options
from sealwire.cli._common import home
from sealwire.cli.output import emit, state
from sealwire.config import migrate_store

__all__ = ["COMMANDS"]


@click.group()
def store() -> None:
    """The agent's state store."""


@store.command()
@click.option("--to", "backend", required=True, metavar="BACKEND", help="The target store.")
@store_options
def migrate(backend: str, store_option: tuple[str, ...]) -> None:
    """Move the state to another store, verified; sealwire.toml then names it."""
    target = store_choice(backend, store_option)
    assert target is not None  # --to is required
    moved = migrate_store(home(), target, state().registry)
    emit(
        {"moved": moved, "backend": target.backend},
        [f"moved {moved} keys to the {target.backend} store; sealwire.toml now names it"],
    )


COMMANDS = (store,)
