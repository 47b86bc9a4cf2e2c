"""Noise over datagrams (UDP): handshake retransmission, explicit nonces, replay window.

Packets (first byte is the type)::

    handshake = 0x48 'H' || index (1) || [index 0: name_len || protocol name
                [|| "/ratchet"]] || Noise message
    data      = 0x44 'D' || counter (8, big-endian)
                || AEAD(k_epoch, counter, ad='D', flags || frame)

Handshake: the side waiting for a message resends its last one every
:data:`RETRY_INTERVAL` seconds (at most :data:`RETRIES` times); a side that
sees the peer repeat an earlier message resends its own answer (the answer was
lost). A failed read (tampered or stray packet) is dropped: the handshake
state is checkpointed, so it is unchanged. After the handshake, the side that
wrote the last handshake message answers a repeated handshake packet with it
again, at most :data:`MAX_LATE_RESENDS` times.

Data: one A2A frame per datagram (no fragmentation), protected by
:class:`DatagramTransport`. :meth:`NoiseDatagramChannel.open` raises typed
errors for tampered, truncated, replayed or stale packets; ``receive`` drops
them (a spoofed UDP packet must not end a session) and counts them in
``rejected``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import Protocol

from sealwire.binding import BindingContext, ChannelClosed, Negotiation, PeerIdentity, Property
from sealwire.errors import AuthenticationError, DecodeError, RemoteProtocolError, SealwireError
from sealwire.identity import VerifiedCard
from sealwire.transport import DatagramEndpoint, TransportClosed
from sealwire_noise import _ratchet
from sealwire_noise._channel import DEFAULT_REKEY_SECONDS, RekeyPolicy
from sealwire_noise._errors import NoiseDecodeError, NoiseRemoteProtocolError, NoiseStateError
from sealwire_noise._handshake import HandshakeStatus
from sealwire_noise._ratchet_channel import (
    DATAGRAM_HELLO,
    RatchetChannel,
    acquire_lease,
    load,
    opened_channel,
    release_lease,
)
from sealwire_noise._session import Session, encode_first_frame
from sealwire_noise._symmetric import TAG_LEN
from sealwire_noise._transport import COUNTER_LEN, MAX_PAYLOAD_LEN, DatagramTransport

__all__ = [
    "MAX_LATE_RESENDS",
    "RETRIES",
    "RETRY_INTERVAL",
    "NoiseDatagramChannel",
    "initiate_datagram",
    "respond_datagram",
]

log = logging.getLogger("sealwire_noise.datagram")

TYPE_HANDSHAKE = 0x48
TYPE_DATA = 0x44
FLAG_CLOSE = 0x04
RETRY_INTERVAL = 0.2
"""Seconds before a handshake message is resent (loopback and LAN round trips are far shorter)."""
RETRIES = 40
"""Resends before giving up: 8 s, inside core's 15 s handshake timeout."""
MAX_LATE_RESENDS = 16
"""Final handshake packets re-sent after the handshake: bounds what a peer
(or a spoofer repeating old packets) can make us send."""
DEFAULT_DATAGRAM_REKEY = 1 << 20
"""Counters per key epoch (§11.3 rekey in step, derived from the counter)."""
_HEADER = 1 + COUNTER_LEN + TAG_LEN + 1  # type, counter, tag, flags


def _handshake_packet(index: int, message: bytes, name: str | None = None) -> bytes:
    body = encode_first_frame(name, message) if name is not None else message
    return bytes([TYPE_HANDSHAKE, index]) + body


class DatagramHost(Protocol):
    """What the datagram handshake needs of the Noise binding (which imports this module)."""

    @property
    def context(self) -> BindingContext: ...

    def start_initiator(self, peer: VerifiedCard, negotiation: Negotiation) -> Session: ...

    def start_responder_retryable(
        self, first_frame: bytes, negotiation: Negotiation
    ) -> tuple[Session, bytes]: ...

    def rekey_policy(self) -> RekeyPolicy: ...


class NoiseDatagramChannel:
    """A :class:`sealwire.binding.SecureChannel` over a datagram endpoint."""

    def __init__(
        self,
        endpoint: DatagramEndpoint,
        transport: DatagramTransport,
        *,
        peer: PeerIdentity,
        properties: frozenset[Property],
        protocol_name: str,
        final_packet: bytes | None,
        clock: Callable[[], float],
        rekey_seconds: float = DEFAULT_REKEY_SECONDS,
    ) -> None:
        self._endpoint = endpoint
        self._transport = transport
        self._peer = peer
        self._properties = properties
        self.protocol_name = protocol_name
        self._final_packet = final_packet
        self._late_resends = 0
        self._clock, self._rekey_seconds = clock, rekey_seconds
        self._last_rekey = clock()
        self._closed = False
        self.rejected = 0
        self.max_frame_size = min(endpoint.max_datagram_size, MAX_PAYLOAD_LEN) - _HEADER

    def __repr__(self) -> str:
        return f"<NoiseDatagramChannel {self.protocol_name} peer={self._peer.agent_id}>"

    @property
    def peer(self) -> PeerIdentity:
        return self._peer

    @property
    def properties(self) -> frozenset[Property]:
        return self._properties

    def seal(self, frame: bytes, *, flags: int = 0) -> bytes:
        """One data packet carrying ``frame``."""
        if len(frame) > self.max_frame_size:
            raise NoiseStateError(f"a datagram carries frames up to {self.max_frame_size} bytes")
        if self._clock() - self._last_rekey >= self._rekey_seconds:
            self._transport.next_epoch()  # the receiver follows from the counter
            self._last_rekey = self._clock()
        header = bytes([TYPE_DATA])
        return header + self._transport.encrypt(bytes([flags]) + frame, ad=header)

    def open(self, packet: bytes) -> tuple[int, bytes]:
        """``(flags, frame)`` of a data packet; typed errors leave the state unchanged."""
        if not packet or packet[0] != TYPE_DATA:
            raise NoiseDecodeError("not a data packet", field="noise.packet_type")
        plaintext = self._transport.decrypt(packet[1:], ad=packet[:1])
        if not plaintext:
            raise NoiseDecodeError("empty data packet", field="noise.packet")
        return plaintext[0], plaintext[1:]

    async def send(self, frame: bytes) -> None:
        if self._closed:
            raise ChannelClosed("the Noise channel is closed")
        try:
            await self._endpoint.send(self.seal(frame))
        except TransportClosed:
            self._closed = True
            raise ChannelClosed("the endpoint closed") from None

    async def receive(self) -> bytes:
        while True:
            if self._closed:
                raise ChannelClosed("the Noise channel is closed")
            try:
                packet = await self._endpoint.receive()
            except TransportClosed:
                self._closed = True
                raise ChannelClosed("the endpoint closed") from None
            if packet[:1] == bytes([TYPE_HANDSHAKE]):
                await self._resend_final()
                continue
            try:
                flags, frame = self.open(packet)
            except (DecodeError, AuthenticationError, RemoteProtocolError) as exc:
                self.rejected += 1
                log.debug("dropped a datagram: %s", type(exc).__name__)
                continue
            if flags & FLAG_CLOSE:
                self._closed = True
                raise ChannelClosed("the peer closed the Noise channel")
            return frame

    async def _resend_final(self) -> None:
        if self._final_packet is not None and self._late_resends < MAX_LATE_RESENDS:
            self._late_resends += 1
            await self._endpoint.send(self._final_packet)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(TransportClosed):
                await self._endpoint.send(self.seal(b"", flags=FLAG_CLOSE))
        await self._endpoint.close()


async def _receive_message(
    endpoint: DatagramEndpoint, session: Session, index: int, last: bytes | None
) -> None:
    """Wait for handshake message ``index`` and read it, resending ``last`` meanwhile."""
    for _ in range(RETRIES):
        try:
            packet = await asyncio.wait_for(endpoint.receive(), RETRY_INTERVAL)
        except TimeoutError:
            if last is not None:
                await endpoint.send(last)
            continue
        if len(packet) < 2 or packet[0] != TYPE_HANDSHAKE:
            continue  # a repeated hello or an early data packet
        if packet[1] < index and last is not None:
            await endpoint.send(last)  # the peer did not get our answer
            continue
        if packet[1] != index:
            continue
        try:
            payload = session.read_message(packet[2:])
        except (DecodeError, AuthenticationError):
            continue  # forged or corrupted: the handshake state is unchanged
        session.accept(payload)  # a bad card or trust failure ends the handshake
        return
    raise NoiseRemoteProtocolError("the peer did not complete the Noise handshake")


async def _run(endpoint: DatagramEndpoint, session: Session, last: bytes | None) -> bytes | None:
    """Drive the handshake to its end; return our final packet (for late resends)."""
    index = 1 if last is not None or not session.hs.initiator else 0
    while not session.hs.is_finished:
        if session.status is HandshakeStatus.WRITE:
            last = _handshake_packet(index, session.write())
            await endpoint.send(last)
        else:
            await _receive_message(endpoint, session, index, last)
        index += 1
    pattern = session.protocol.pattern
    wrote_last = pattern.sender_is_initiator(len(pattern.messages) - 1) == session.hs.initiator
    return last if wrote_last else None  # only the last writer may need to resend


async def _channel(
    binding: DatagramHost, endpoint: DatagramEndpoint, session: Session, final: bytes | None
) -> NoiseDatagramChannel | RatchetChannel:
    """The datagram channel, wrapped in the in-session ratchet when the session runs it."""
    channel = _datagram_channel(binding, endpoint, session, final)
    if not session.ratchet:
        return channel
    try:
        return await _ratchet_hellos(binding, channel, session)
    except SealwireError:  # RatchetBindingError, a malformed hello, no hello at all
        await channel.close()
        raise


async def _ratchet_hellos(
    binding: DatagramHost, channel: NoiseDatagramChannel, session: Session
) -> RatchetChannel:
    """The ratchet hellos over datagrams. The initiator sends its hello every
    RETRY_INTERVAL until the responder's arrives; the responder waits for the
    initiator's, answers with its own and is done (its ratchet channel answers a
    repeated hello again, as the channel does for a repeated handshake packet).
    Both then resume or start the ratchet exactly as over a stream."""
    keys = _ratchet.keying(*session.hs.split_keys())
    store, peer_id = binding.context.store, channel.peer.agent_id
    initiator = session.hs.initiator
    leased = acquire_lease(store, peer_id)
    mine = load(store, peer_id) if leased else None
    hello = _ratchet.hello(mine, keys.handshake_hash, initiator=initiator, busy=not leased)
    try:
        for _ in range(RETRIES):
            if initiator:
                await channel.send(bytes((DATAGRAM_HELLO,)) + hello)
            try:
                packet = await asyncio.wait_for(channel.receive(), RETRY_INTERVAL)
            except TimeoutError:
                continue
            if packet[:1] != bytes((DATAGRAM_HELLO,)):
                continue  # a data packet before the hellos are through: dropped, as if lost
            ratchet, restart = _ratchet.resolve(
                mine, packet[1:], keys, initiator=initiator, rng=os.urandom, busy=not leased
            )
            if not initiator:
                await channel.send(bytes((DATAGRAM_HELLO,)) + hello)
            return opened_channel(
                channel, ratchet, restart, keys, leased=leased, store=store,
                clock=binding.context.clock, datagram_hello=hello,
            )  # fmt: skip
        raise NoiseRemoteProtocolError("no ratchet hello arrived")
    except BaseException:
        if leased:
            release_lease(store, peer_id)
        raise


def _datagram_channel(
    binding: DatagramHost, endpoint: DatagramEndpoint, session: Session, final: bytes | None
) -> NoiseDatagramChannel:
    peer = session.peer()
    c1, c2 = session.hs.split()
    send, recv = (c1, c2) if session.hs.initiator else (c2, c1)
    rekey_after = int(binding.context.options.get("datagram_rekey_after", DEFAULT_DATAGRAM_REKEY))
    return NoiseDatagramChannel(
        endpoint,
        DatagramTransport(send, recv, rekey_after=rekey_after),
        peer=peer,
        properties=session.properties(),
        protocol_name=session.protocol.name,
        final_packet=final,
        clock=binding.context.clock,
        rekey_seconds=binding.rekey_policy().seconds,
    )


async def initiate_datagram(
    binding: DatagramHost, endpoint: DatagramEndpoint, peer: VerifiedCard, negotiation: Negotiation
) -> NoiseDatagramChannel | RatchetChannel:
    """The initiator's handshake over datagrams (resending message 0 until answered)."""
    session = binding.start_initiator(peer, negotiation)
    first = _handshake_packet(0, session.write(), session.first_frame_name)
    await endpoint.send(first)
    final = await _run(endpoint, session, first)
    return await _channel(binding, endpoint, session, final)


async def respond_datagram(
    binding: DatagramHost, endpoint: DatagramEndpoint, negotiation: Negotiation
) -> NoiseDatagramChannel | RatchetChannel:
    """The responder's handshake: the first valid handshake packet 0 starts it."""
    for _ in range(RETRIES):
        try:
            packet = await asyncio.wait_for(endpoint.receive(), RETRY_INTERVAL)
        except TimeoutError:
            continue
        if len(packet) < 2 or packet[0] != TYPE_HANDSHAKE or packet[1] != 0:
            continue
        try:
            session, payload = binding.start_responder_retryable(packet[2:], negotiation)
        except (DecodeError, AuthenticationError):
            continue
        session.accept(payload)
        final = await _run(endpoint, session, None)
        return await _channel(binding, endpoint, session, final)
    raise NoiseRemoteProtocolError("no Noise handshake arrived")
