"""``sealwire policy explain``: which binding a peer gets, and why."""

from __future__ import annotations

from typing import Any

import click

from sealwire.cli._common import SITUATIONS, home, local_card, policy_for, read_card
from sealwire.cli.output import Table, emit, state
from sealwire.config import open_home
from sealwire.identity import verify_card
from sealwire.policy import Decision, Situation

__all__ = ["COMMANDS", "decision_json"]


@click.group()
def policy() -> None:
    """The binding policy."""


def decision_json(peer: Any, situation: Situation, decision: Decision) -> dict[str, Any]:
    """The ``policy explain --json`` shape (docs/cli.md)."""
    return {
        "peer": {"agent_id": peer.identity.agent_id, "name": peer.name},
        "situation": situation.describe(),
        "binding": decision.binding,
        "uri": decision.candidate.offer.uri,
        "url": decision.url,
        "reason": decision.reason,
        "session": decision.session_description(),
        "rejected": [{"uri": uri, "why": why} for uri, why in decision.rejected],
    }


@policy.command()
@click.argument("peer_card")
@click.option(
    "--situation", type=click.Choice(sorted(SITUATIONS)), default="online", show_default=True
)
def explain(peer_card: str, situation: str) -> None:
    """Which binding would be used with the peer of PEER_CARD (a file, or - for stdin),
    and why."""
    registry = state().registry
    peer = verify_card(read_card(peer_card))
    config, _identity, store = open_home(home(), registry)
    store.close()
    local = verify_card(local_card(home(), registry))
    chosen = SITUATIONS[situation]
    decision = policy_for(config, registry).decide(peer, chosen, local)
    rows = [("peer", f"{peer.identity.agent_id} ({peer.name})")]
    for line in decision.explain(chosen).splitlines():
        key, _, value = line.partition(": ")
        rows.append((key, value))
    emit(
        decision_json(peer, chosen, decision),
        Table(title="policy decision", columns=("", ""), rows=tuple(rows), show_header=False),
    )


COMMANDS = (policy,)
