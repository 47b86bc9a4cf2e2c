"""The record layer of a Noise session over a :class:`FrameStream` (TCP, WebSocket).

Each stream frame is exactly one Noise transport message (at most 65535
bytes, §3). Its plaintext is a record::

    record  = flags (1 byte) || fragment
    flags   = MORE (0x01): more fragments of this A2A frame follow
            | REKEY (0x02): the sender rekeyed its sending key after this record
            | CLOSE (0x04): the sender closes the channel; the fragment is empty

An A2A frame larger than one record's fragment (65535 - 16 - 1 bytes) is
split into several records with MORE set on all but the last. The sender
rekeys (§11.3) after a configured number of records or seconds and says so
with REKEY, so the receiver rekeys in step with no extra message. The record
header is inside the AEAD, so an attacker can neither forge nor strip it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import attrs

from sealwire.binding import ChannelClosed, PeerIdentity, Property
from sealwire.transport import FrameStream, TransportClosed
from sealwire_noise._errors import NoiseDecodeError, NoiseRemoteProtocolError, NoiseStateError
from sealwire_noise._transport import MAX_PAYLOAD_LEN, TransportState

__all__ = [
    "DEFAULT_REKEY_MESSAGES",
    "DEFAULT_REKEY_SECONDS",
    "MAX_FRAGMENT",
    "MAX_REASSEMBLED",
    "NoiseChannel",
    "RekeyPolicy",
]

FLAG_MORE = 0x01
FLAG_REKEY = 0x02
FLAG_CLOSE = 0x04
_KNOWN_FLAGS = FLAG_MORE | FLAG_REKEY | FLAG_CLOSE

MAX_FRAGMENT = MAX_PAYLOAD_LEN - 1
"""Bytes of an A2A frame one record carries (one flags byte of header)."""
MAX_REASSEMBLED = 16 * 1024 * 1024
"""Largest A2A frame we reassemble: the core transports' frame limit (16 MiB),
so a peer cannot make us buffer more than a plaintext transport would."""
DEFAULT_REKEY_MESSAGES = 1 << 20
"""Records per direction between rekeys: far below any nonce limit, and a
rekey costs one AEAD call, so an hourly busy channel rekeys a few times."""
DEFAULT_REKEY_SECONDS = 3600.0
"""Seconds between rekeys of a direction even when little is sent."""


@attrs.frozen(kw_only=True)
class RekeyPolicy:
    """When a sender rekeys its direction (§11.3): after ``messages`` records or
    ``seconds`` of the binding's clock, whichever comes first."""

    messages: int = DEFAULT_REKEY_MESSAGES
    seconds: float = DEFAULT_REKEY_SECONDS


class NoiseChannel:
    """A :class:`sealwire.binding.SecureChannel` over a stream, after a Noise handshake.

    ``receive`` raises :class:`NoiseAuthenticationError` for a tampered,
    replayed or reordered record and :class:`NoiseDecodeError` for a malformed
    one; in both cases the receive state (nonce, key, partial frame) is unchanged.
    """

    def __init__(
        self,
        stream: FrameStream,
        transport: TransportState,
        *,
        peer: PeerIdentity,
        properties: frozenset[Property],
        protocol_name: str,
        clock: Callable[[], float],
        rekey: RekeyPolicy = RekeyPolicy(),
    ) -> None:
        self._stream = stream
        self._transport = transport
        self._peer = peer
        self._properties = properties
        self.protocol_name = protocol_name
        self._clock = clock
        self._rekey = rekey
        self._sent_since_rekey = 0
        self._last_rekey = clock()
        self._partial: list[bytes] = []
        self._partial_len = 0
        self._send_lock = asyncio.Lock()
        self._receive_lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"<NoiseChannel {self.protocol_name} peer={self._peer.agent_id}>"

    @property
    def peer(self) -> PeerIdentity:
        return self._peer

    @property
    def properties(self) -> frozenset[Property]:
        return self._properties

    @property
    def handshake_hash(self) -> bytes:
        """The Noise channel-binding value (§11.2)."""
        return self._transport.handshake_hash

    # -- sending ---------------------------------------------------------------

    def _seal(self, flags: int, fragment: bytes) -> bytes:
        due = self._sent_since_rekey + 1 >= self._rekey.messages or (
            self._clock() - self._last_rekey >= self._rekey.seconds
        )
        if due:
            flags |= FLAG_REKEY
        message = self._transport.encrypt(bytes([flags]) + fragment)
        self._sent_since_rekey += 1
        if due:
            self._transport.rekey_send()
            self._sent_since_rekey, self._last_rekey = 0, self._clock()
        return message

    async def send(self, frame: bytes) -> None:
        """Send one A2A frame, fragmented into records when larger than one."""
        if len(frame) > MAX_REASSEMBLED:
            raise NoiseStateError(f"frame exceeds {MAX_REASSEMBLED} bytes")
        async with self._send_lock:
            if self._closed:
                raise ChannelClosed("the Noise channel is closed")
            view = memoryview(frame)
            while True:
                chunk, view = bytes(view[:MAX_FRAGMENT]), view[MAX_FRAGMENT:]
                await self._send_record(self._seal(FLAG_MORE if view else 0, chunk))
                if not view:
                    return

    async def _send_record(self, record: bytes) -> None:
        try:
            await self._stream.send(record)
        except TransportClosed:
            self._closed = True
            raise ChannelClosed("the transport closed") from None

    # -- receiving ----------------------------------------------------------------

    def open_record(self, record: bytes) -> tuple[int, bytes]:
        """Decrypt and check one record: ``(flags, fragment)``; on error nothing changes."""
        plaintext = self._transport.decrypt(record)
        if not plaintext:
            raise NoiseDecodeError("empty record", field="noise.record")
        flags, fragment = plaintext[0], plaintext[1:]
        if flags & FLAG_REKEY:  # authentic, so the nonce moved on: rekey in step first
            self._transport.rekey_receive()
        if flags & ~_KNOWN_FLAGS:
            raise NoiseRemoteProtocolError("unknown record flags")
        return flags, fragment

    async def receive(self) -> bytes:
        """The next whole A2A frame; :class:`ChannelClosed` once either side closed."""
        async with self._receive_lock:
            while True:
                if self._closed:
                    raise ChannelClosed("the Noise channel is closed")
                try:
                    record = await self._stream.receive()
                except TransportClosed:
                    self._closed = True
                    raise ChannelClosed("the transport closed") from None
                frame = self._accept(record)
                if frame is not None:
                    return frame

    def _accept(self, record: bytes) -> bytes | None:
        flags, fragment = self.open_record(record)
        if flags & FLAG_CLOSE:
            self._closed = True
            raise ChannelClosed("the peer closed the Noise channel")
        if self._partial_len + len(fragment) > MAX_REASSEMBLED:
            self._partial, self._partial_len = [], 0
            raise NoiseRemoteProtocolError("the peer's frame exceeds the reassembly limit")
        self._partial.append(fragment)
        self._partial_len += len(fragment)
        if flags & FLAG_MORE:
            return None
        frame = b"".join(self._partial)
        self._partial, self._partial_len = [], 0
        return frame

    async def close(self) -> None:
        """Tell the peer (an authenticated CLOSE record), then close the stream."""
        async with self._send_lock:
            if not self._closed:
                self._closed = True
                with contextlib.suppress(TransportClosed):
                    await self._stream.send(self._seal(FLAG_CLOSE, b""))
        await self._stream.close()
