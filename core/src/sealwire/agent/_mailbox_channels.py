"""The mailbox router's channels to its peers: one per peer and binding, which follows
the peer's newest card (:meth:`MailboxChannel.follow`: the peer moved its mailbox to
another home relay). Once a peer's card changed, the card its channel follows and the
fingerprints of the cards it replaced are kept in the store, so that a stale copy of the
card handed to a call after a restart is still known as one."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping
from typing import TYPE_CHECKING

from sealwire.agent._kept_records import json_with_card
from sealwire.agent._mailbox_channel import MAX_REPLACED_CARDS, MailboxChannel
from sealwire.binding import MailboxBinding, Negotiation
from sealwire.errors import PolicyError, SealwireError
from sealwire.identity import VerifiedCard, verify_card
from sealwire.relay import RelayPort
from sealwire.store import StoreError

if TYPE_CHECKING:
    from sealwire.agent._host import RouterHost
    from sealwire.policy import Decision

__all__ = [
    "CARDS_NAMESPACE",
    "LOCAL_FAILURES",
    "MAX_PROBLEM_CHARS",
    "MailboxChannels",
    "describe_failure",
]

log = logging.getLogger(__name__)

CARDS_NAMESPACE = "mailbox.cards"
"""Per peer and binding, once a peer's card changed: the card its channel follows and
the fingerprints of those it replaced."""
LOCAL_FAILURES = (StoreError, OSError, sqlite3.Error)
"""Failures of this agent (a full disk), not of what a peer sent."""
MAX_PROBLEM_CHARS = 200
"""Characters of an error's message kept in a log line or a health report."""


def describe_failure(exc: BaseException) -> str:
    """A store failure for logs and health: its class and message (a store's messages
    name the failure and a path, never a value), bounded."""
    return f"{type(exc).__name__}: {exc}"[:MAX_PROBLEM_CHARS]


class MailboxChannels:
    """The channels of one mailbox router, by peer and binding."""

    def __init__(
        self, host: RouterHost, relay: RelayPort, bindings: Mapping[str, MailboxBinding]
    ) -> None:
        self._host = host
        self._relay = relay
        self._bindings = bindings
        self._channels: dict[tuple[str, str], MailboxChannel] = {}

    async def close(self) -> None:
        """Close every channel."""
        for channel in list(self._channels.values()):
            await channel.close()

    def for_call(self, peer: VerifiedCard, decision: Decision) -> MailboxChannel:
        """The channel to ``peer`` over the binding ``decision`` names, sending to the
        decision's address unless ``peer`` is a card of the peer the channel replaced
        (see :meth:`MailboxChannel.follow`)."""
        key = (peer.identity.agent_id, decision.binding)
        channel = self._channels.get(key)
        if channel is None:
            binding = self._bindings[decision.binding]
            channel = self._new_channel(binding, peer, decision.negotiation, decision.url)
        elif channel.follow(peer, decision.negotiation, decision.url):
            self._remember(channel)
        return channel

    def for_answer(
        self, binding: MailboxBinding, peer: VerifiedCard, *, live: bool = True
    ) -> MailboxChannel:
        """The channel to answer ``peer`` on: at the address of the card the binding
        names for its message, when it is ``live`` (a peer's messages reach us in the
        order it sent them, so that card is its current one); a card kept from before
        a restart is followed only if it is not one the channel replaced since. A new
        channel is served as one the peer opened (``RouterHost.serve_incoming``)."""
        key = (peer.identity.agent_id, binding.info.name)
        channel = self._channels.get(key)
        if channel is not None and (channel.card is peer or channel.card.card == peer.card):
            return channel
        negotiation, address = self._answer_route(binding, peer)
        if channel is not None:
            if channel.follow(peer, negotiation, address, from_peer=live):
                self._remember(channel)
            return channel
        channel = self._new_channel(binding, peer, negotiation, address, from_peer=live)
        self._host.serve_incoming(channel, binding.info.name)
        return channel

    def _forget(self, channel: MailboxChannel) -> None:
        for key, value in list(self._channels.items()):
            if value is channel:
                del self._channels[key]

    def _answer_route(self, binding: MailboxBinding, peer: VerifiedCard) -> tuple[Negotiation, str]:
        """The negotiation and address to write to ``peer`` over ``binding`` at (the
        mailbox its card offers)."""
        offer = peer.offer(binding.info.name)
        if offer is None:
            raise PolicyError(
                f"peer {peer.identity.agent_id} offers no {binding.info.name} mailbox to answer to"
            )
        negotiation = Negotiation(
            chosen=offer.uri,
            initiator_offers=tuple(o.uri for o in self._host.card.offers),
            responder_offers=tuple(o.uri for o in peer.offers),
        )
        return negotiation, offer.url

    def _new_channel(
        self,
        binding: MailboxBinding,
        peer: VerifiedCard,
        negotiation: Negotiation,
        address: str,
        *,
        from_peer: bool = False,
    ) -> MailboxChannel:
        """A channel to ``peer``, starting from the card the last one followed (kept in
        the store), so that a stale copy of the peer's card is known after a restart."""
        name = binding.info.name
        followed = self._followed(name, peer)
        if followed is None:
            channel = MailboxChannel(
                self._relay, binding, peer, negotiation, address, on_close=self._forget
            )
        else:
            card, replaced = followed
            channel = MailboxChannel(
                self._relay, binding, card, *self._answer_route(binding, card),
                on_close=self._forget, replaced=replaced,
            )  # fmt: skip
            if channel.follow(peer, negotiation, address, from_peer=from_peer):
                self._remember(channel)
        self._channels[(peer.identity.agent_id, name)] = channel
        return channel

    def _followed(
        self, binding: str, peer: VerifiedCard
    ) -> tuple[VerifiedCard, list[bytes]] | None:
        """The card a channel to ``peer`` last followed and the fingerprints of the cards
        it replaced, as kept in the store; None if none is kept (or it is unreadable)."""
        try:
            raw = self._host.store.get(CARDS_NAMESPACE, f"{peer.identity.agent_id}/{binding}")
            if raw is None:
                return None
            record = json.loads(raw)
            card = verify_card(record["card"])
            if card.identity != peer.identity:
                return None  # kept for the peer's earlier keys
            if card.offer(binding) is None:
                raise ValueError("a card without the binding")
            replaced = [bytes.fromhex(h) for h in record["replaced"][-MAX_REPLACED_CARDS:]]
        except LOCAL_FAILURES as exc:
            log.warning("cannot read the cards followed of a peer: %s", describe_failure(exc))
            return None
        except (SealwireError, KeyError, TypeError, ValueError) as exc:
            log.warning("ignoring damaged cards followed of a peer: %s", type(exc).__name__)
            return None
        return card, replaced

    def _remember(self, channel: MailboxChannel) -> None:
        """Keep the card ``channel`` follows now and the ones it replaced (a failure to
        keep them costs only that knowledge after a restart)."""
        key = f"{channel.card.identity.agent_id}/{channel.binding.info.name}"
        record = json_with_card(channel.card, {"replaced": [h.hex() for h in channel.replaced]})
        try:
            self._host.store.put(CARDS_NAMESPACE, key, record)
        except LOCAL_FAILURES as exc:
            log.warning("cannot keep the card followed of a peer: %s", describe_failure(exc))
