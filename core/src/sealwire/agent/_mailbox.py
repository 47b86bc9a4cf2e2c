"""Calls over mailbox bindings: each frame sealed on its own and carried by the relay.

A :class:`MailboxChannel` looks like any other secure channel to the RPC
layer: ``send`` seals a frame for the peer and hands it to the relay,
``receive`` yields frames the router opened from this agent's mailbox. One
channel per (peer, binding); a first message from a new peer creates one.

The relay's payload is ``len(binding name) || binding name || envelope`` so
the router knows which binding opens it. An opened frame is written to the
store in the same transaction as the binding's new state, before the relay
delivery is acknowledged, and replayed after a restart until it has been
handed on: a crash at any point loses nothing and replays nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from sealwire.binding import (
    ChannelClosed,
    MailboxBinding,
    Negotiation,
    OpenedMessage,
    PeerIdentity,
    Property,
)
from sealwire.errors import DecodeError, SealwireError
from sealwire.identity import VerifiedCard, verify_card
from sealwire.relay import RelayPort, unwrap, wrap
from sealwire.store import StoreTransaction

if TYPE_CHECKING:
    from sealwire.agent._agent import Agent
    from sealwire.policy import Decision

__all__ = ["MailboxChannel", "MailboxRouter", "kept_frame", "read_kept_frame"]

log = logging.getLogger(__name__)

INBOX_NAMESPACE = "mailbox.inbox"
MAX_CHANNEL_BACKLOG = 1024
"""Opened frames waiting for a slow RPC reader; beyond it the channel is dropped
(the frames stay in the store's inbox and are replayed on restart)."""


class MailboxChannel:
    """A secure channel to one peer over a mailbox binding and the relay."""

    def __init__(
        self,
        router: MailboxRouter,
        binding: MailboxBinding,
        peer: VerifiedCard,
        negotiation: Negotiation,
        address: str,
    ) -> None:
        self._router = router
        self._binding = binding
        self._card = peer
        self._negotiation = negotiation
        self._address = address
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(MAX_CHANNEL_BACKLOG)
        self._closed = False

    @property
    def peer(self) -> PeerIdentity:
        return PeerIdentity(
            agent_id=self._card.identity.agent_id, identity=self._card.identity, card=self._card
        )

    @property
    def properties(self) -> frozenset[Property]:
        return self._binding.info.properties

    async def send(self, frame: bytes) -> None:
        if self._closed:
            raise ChannelClosed("mailbox channel closed")
        envelope = await self._binding.seal(self._card, frame, self._negotiation)
        await self._router.relay.send(
            self._address, str(uuid.uuid4()), wrap(self._binding.info.name, envelope)
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
            self._router.forget(self)


class MailboxRouter:
    """Reads this agent's mailbox, opens envelopes and routes frames to channels."""

    def __init__(self, agent: Agent, bindings: dict[str, MailboxBinding]) -> None:
        self.agent = agent
        assert agent.relay is not None
        self.relay: RelayPort = agent.relay
        self.bindings = bindings
        self.channels: dict[tuple[str, str], MailboxChannel] = {}
        self._reader: asyncio.Task[None] | None = None
        # Payloads for other consumers by binding name (group invitations), acked once handled.
        self.others: dict[str, Callable[[bytes], Awaitable[None]]] = {}

    async def start(self) -> None:
        for binding in self.bindings.values():
            await binding.publish_prekeys()
        for key in self.agent.store.keys(INBOX_NAMESPACE):
            raw = self.agent.store.get(INBOX_NAMESPACE, key)
            if raw is not None:
                self._replay(key, raw)
        self._reader = asyncio.create_task(self._read(), name="sealwire-mailbox")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for channel in list(self.channels.values()):
            await channel.close()

    def forget(self, channel: MailboxChannel) -> None:
        for key, value in list(self.channels.items()):
            if value is channel:
                del self.channels[key]

    def channel(self, peer: VerifiedCard, decision: Decision) -> MailboxChannel:
        """The channel to ``peer`` over the binding ``decision`` names."""
        key = (peer.identity.agent_id, decision.binding)
        channel = self.channels.get(key)
        if channel is None:
            channel = MailboxChannel(
                self, self.bindings[decision.binding], peer, decision.negotiation, decision.url
            )
            self.channels[key] = channel
        return channel

    def _incoming_channel(self, binding: MailboxBinding, peer: VerifiedCard) -> MailboxChannel:
        key = (peer.identity.agent_id, binding.info.name)
        channel = self.channels.get(key)
        if channel is not None:
            return channel
        offer = peer.offer(binding.info.name)
        if offer is None:
            raise SealwireError(
                f"peer {peer.identity.agent_id} offers no {binding.info.name} mailbox to answer to"
            )
        negotiation = Negotiation(
            chosen=offer.uri,
            initiator_offers=tuple(o.uri for o in self.agent.card.offers),
            responder_offers=tuple(o.uri for o in peer.offers),
        )
        channel = MailboxChannel(self, binding, peer, negotiation, offer.url)
        self.channels[key] = channel
        self.agent.serve_channel_soon(channel, binding.info.name)
        return channel

    async def _read(self) -> None:
        async for delivery in self.relay.subscribe():
            try:
                name, envelope = unwrap(delivery.envelope)
                if name in self.others:
                    await self.others[name](envelope)
                    await self.relay.ack([delivery])
                    continue
                binding = self.bindings.get(name)
                if binding is None:
                    raise DecodeError(f"no mailbox binding {name!r}", field="mailbox.binding")
                opened = await binding.open(envelope, keep=functools.partial(self._keep, name))
            except SealwireError as exc:
                # Malformed, replayed or forged: acknowledged so it is not redelivered forever.
                log.info("dropping mailbox message %s: %s", delivery.message_id, exc)
                await self.relay.ack([delivery])
                continue
            await self.relay.ack([delivery])
            self._replay(opened.message_id, kept_frame(name, opened))

    def _keep(self, binding: str, tx: StoreTransaction, opened: OpenedMessage) -> None:
        """Written with the binding's new state: the frame until it is handed on."""
        tx.put(INBOX_NAMESPACE, opened.message_id, kept_frame(binding, opened))

    def _replay(self, key: str, raw: bytes) -> None:
        try:
            record, opened = read_kept_frame(raw)
            binding = self.bindings[record["binding"]]
            assert opened.sender.card is not None  # read_kept_frame names it
            channel = self._incoming_channel(binding, opened.sender.card)
            channel.queue.put_nowait(opened.frame)
        except (SealwireError, KeyError, TypeError, ValueError, asyncio.QueueFull) as exc:
            log.warning("cannot route stored mailbox message: %s", type(exc).__name__)
            return
        self.agent.store.delete(INBOX_NAMESPACE, key)


def kept_frame(binding: str, opened: OpenedMessage, **extra: Any) -> bytes:
    """An opened frame as the store keeps it until it is handed on: the binding's name,
    the sender's signed card, the frame and its id (and ``extra`` fields)."""
    card = opened.sender.card
    if card is None:
        raise SealwireError(f"binding {binding} must name the sender's card")
    return json.dumps(
        {
            **extra,
            "binding": binding,
            "card": dict(card.card),
            "frame": base64.b64encode(opened.frame).decode(),
            "id": opened.message_id,
        }
    ).encode()


def read_kept_frame(raw: bytes) -> tuple[dict[str, Any], OpenedMessage]:
    """The record :func:`kept_frame` wrote and the frame in it, its sender's card verified
    again; SealwireError, KeyError, TypeError or ValueError when it is damaged."""
    record = json.loads(raw)
    if not isinstance(record, dict):
        raise ValueError("not a kept frame")
    card = verify_card(record["card"])
    sender = PeerIdentity(agent_id=card.identity.agent_id, identity=card.identity, card=card)
    frame = base64.b64decode(record["frame"])
    return record, OpenedMessage(sender=sender, frame=frame, message_id=str(record.get("id", "")))
