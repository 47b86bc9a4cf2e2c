"""A secure channel to one peer over a mailbox binding: each frame sent sealed as a
relay message, each frame received handed in by the mailbox router."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import uuid
from collections.abc import Callable, Iterable

from sealwire.binding import (
    ChannelClosed,
    MailboxBinding,
    Negotiation,
    PeerIdentity,
    Property,
)
from sealwire.identity import VerifiedCard, canonical_card_bytes
from sealwire.relay import RelayPort, wrap

__all__ = ["MAX_CHANNEL_BACKLOG", "MAX_REPLACED_CARDS", "MailboxChannel", "card_fingerprint"]

MAX_CHANNEL_BACKLOG = 1024
"""Response frames waiting for a slow RPC reader; beyond it the frame stays in the
store's inbox (handed on after a restart)."""
MAX_REPLACED_CARDS = 8
"""Cards of the peer a channel remembers it replaced: a caller handing one of them again
(a stale copy of the card) does not send the channel back to the old address."""


def card_fingerprint(card: VerifiedCard) -> bytes:
    """The SHA-256 of what the card's signatures cover: one card, whatever the order of
    its keys or its signatures."""
    return hashlib.sha256(canonical_card_bytes(card.card)).digest()


class MailboxChannel:
    """A secure channel to one peer over a mailbox binding and the relay; ``on_close``
    is called once when it closes."""

    def __init__(
        self,
        relay: RelayPort,
        binding: MailboxBinding,
        peer: VerifiedCard,
        negotiation: Negotiation,
        address: str,
        *,
        on_close: Callable[[MailboxChannel], None],
        replaced: Iterable[bytes] = (),
    ) -> None:
        self._relay = relay
        self._on_close = on_close
        self._binding = binding
        self._card = peer
        self._negotiation = negotiation
        self._address = address
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(MAX_CHANNEL_BACKLOG)
        self._closed = False
        self._replaced = collections.deque(replaced, maxlen=MAX_REPLACED_CARDS)

    @property
    def peer(self) -> PeerIdentity:
        return PeerIdentity(
            agent_id=self._card.identity.agent_id, identity=self._card.identity, card=self._card
        )

    @property
    def properties(self) -> frozenset[Property]:
        return self._binding.info.properties

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def binding(self) -> MailboxBinding:
        return self._binding

    @property
    def card(self) -> VerifiedCard:
        """The peer's verified card (the one given last)."""
        return self._card

    @property
    def replaced(self) -> tuple[bytes, ...]:
        """The fingerprints (:func:`card_fingerprint`) of the cards it replaced, oldest first."""
        return tuple(self._replaced)

    def follow(
        self,
        peer: VerifiedCard,
        negotiation: Negotiation,
        address: str,
        *,
        from_peer: bool = False,
    ) -> bool:
        """Send to ``address`` from now on, under ``peer``'s card and ``negotiation``, if
        it is a newer card of the peer (it moved its mailbox to another home relay): not
        one this channel replaced, unless it came with the peer's own message
        (``from_peer``: the peer's word, in the order it wrote). Frames already sent
        stay where they went; answers come back to this channel wherever sent. True if
        it follows the card now."""
        if peer.identity.agent_id != self._card.identity.agent_id:
            raise ValueError("a mailbox channel follows its own peer's cards only")
        if peer.card == self._card.card:
            return False
        fingerprint, current = card_fingerprint(peer), card_fingerprint(self._card)
        if fingerprint == current:  # the same card, signed again
            return False
        if fingerprint in self._replaced:
            if not from_peer:
                return False
            self._replaced.remove(fingerprint)
        self._replaced.append(current)
        self._card, self._negotiation, self._address = peer, negotiation, address
        return True

    async def send(self, frame: bytes, *, message_id: str | None = None) -> None:
        """Seal ``frame`` and hand it to the relay (under ``message_id``, a fresh one if
        not given: a retry with the same id is stored once). Sends may run at once:
        each frame is sealed on its own and stored by its own id."""
        if self._closed:
            raise ChannelClosed("mailbox channel closed")
        address = self._address  # the card and address of one moment, if it follows meanwhile
        envelope = await self._binding.seal(self._card, frame, self._negotiation)
        await self._relay.send(
            address, message_id or str(uuid.uuid4()), wrap(self._binding.info.name, envelope)
        )

    async def receive(self) -> bytes:
        frame = await self.queue.get()
        if frame is None:
            raise ChannelClosed("mailbox channel closed")
        return frame

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)
            self._on_close(self)
