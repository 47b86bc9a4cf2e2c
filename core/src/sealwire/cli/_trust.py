"""``sealwire trust``: the trust store's pins, allow-list and deny-list."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from sealwire.cli._common import home, read_card
from sealwire.cli.output import Table, emit, state
from sealwire.config import open_home
from sealwire.identity import TrustListing, TrustStore, verify_card

__all__ = ["COMMANDS", "listing_json"]


def _with_trust(act: Callable[[TrustStore], Any]) -> Any:
    config, _identity, store = open_home(home(), state().registry)
    try:
        return act(TrustStore(store, config.trust))
    finally:
        store.close()


@click.group()
def trust() -> None:
    """Which peers this agent trusts (the trust store): list, pin, allow, deny, forget."""


def listing_json(listing: TrustListing) -> dict[str, Any]:
    """The ``trust list --json`` shape (docs/cli.md)."""
    return {
        "mode": listing.mode.value,
        "pinned": [
            {"agent_id": identity.agent_id, "post_quantum": identity.mldsa_key is not None}
            for identity in listing.pinned
        ],
        "allowed": list(listing.allowed),
        "denied": list(listing.denied),
    }


@trust.command("list")
def trust_list() -> None:
    """The pinned, allowed and denied agents, and the trust mode."""
    listing: TrustListing = _with_trust(lambda t: t.listing())
    rows = [
        (identity.agent_id, "pinned", "ML-DSA-65 + Ed25519" if identity.mldsa_key else "Ed25519")
        for identity in listing.pinned
    ]
    rows += [(agent_id, "allowed", "") for agent_id in listing.allowed]
    rows += [(agent_id, "denied", "") for agent_id in listing.denied]
    table = Table(
        title=f"trust store (mode {listing.mode.value})",
        columns=("agent", "entry", "pinned keys"),
        rows=tuple(rows),
    )
    emit(listing_json(listing), table)


def _done(action: str, agent_id: str) -> None:
    emit({"action": action, "agent_id": agent_id}, [f"{action}: {agent_id}"])


@trust.command("pin")
@click.argument("card")
def trust_pin(card: str) -> None:
    """Pin the keys of a peer's signed CARD (a file, or - for stdin)."""
    verified = verify_card(read_card(card))
    _with_trust(lambda t: t.pin(verified.identity))
    _done("pin", verified.identity.agent_id)


def _id_command(action: str, text: str) -> click.Command:
    def run(agent_id: str) -> None:
        _with_trust(lambda t: getattr(t, action)(agent_id))
        _done(action, agent_id)

    return click.Command(action, callback=run, params=[click.Argument(["agent_id"])], help=text)


for _action, _text in (
    ("allow", "Put AGENT_ID on the allow-list."),
    ("deny", "Refuse AGENT_ID from now on, whatever else says."),
    ("forget", "Drop the pin, allow and deny entries of AGENT_ID."),
):
    trust.add_command(_id_command(_action, _text))

COMMANDS = (trust,)
