"""The DTLS session once set up: :class:`DtlsChannel`, a SecureChannel over one DTLS
association (records, fragments, retransmission timers, the idle timeout), and
:class:`StreamDatagrams`, the datagram path over a stream carrier."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from sealwire.binding import ChannelClosed, PeerIdentity, Property
from sealwire.errors import AuthenticationError, DecodeError, RemoteProtocolError, SealwireError
from sealwire.transport import DEFAULT_MAX_DATAGRAM, DatagramEndpoint, FrameStream, TransportClosed
from sealwire_tls._dtls import (
    DtlsEngine,
    DtlsHandshakeError,
    DtlsStateError,
    Fragment,
    Fragmenter,
    Reassembler,
    split_records,
)
from sealwire_tls._pq_session import PYOPENSSL_STACK, TlsSessionInfo

__all__ = [
    "DTLS_PROPERTIES",
    "KIND_ANSWER",
    "KIND_FRAME",
    "KIND_HELLO",
    "MAX_LATE_ANSWERS",
    "STREAM_MTU",
    "DtlsChannel",
    "StreamDatagrams",
]

log = logging.getLogger("sealwire_tls.dtls")

KIND_FRAME = 0x46  # 'F': an A2A frame
KIND_HELLO = 0x48  # 'H': the initiator's card and channel binding
KIND_ANSWER = 0x41  # 'A': the responder's channel binding
DTLS_PROPERTIES = frozenset({Property.MUTUAL_AUTH, Property.FORWARD_SECRECY, Property.DATAGRAM})
"""What a DTLS session gives (the binding's :class:`~sealwire.binding.BindingInfo` says so)."""
MAX_LATE_ANSWERS = 16
"""Answers re-sent to repeated hellos after the session started: bounds what a peer
(or a replay of old records, which DTLS refuses anyway) can make us send."""
RECEIVE_POLL = 1.0
"""Longest wait for a datagram before the idle and retransmission clocks are looked at."""

STREAM_MTU = 2**14 + 256
"""Datagram size over a stream carrier: no path MTU to respect, so one full record
(2^14 bytes of plaintext, RFC 6347 §4.1) and its overhead fit in one frame."""


class StreamDatagrams:
    """A :class:`DatagramEndpoint` over a :class:`FrameStream` (one frame per datagram):
    a perfect datagram path, so the binding also runs over the contract suite's streams."""

    mtu = STREAM_MTU

    def __init__(self, stream: FrameStream) -> None:
        self._stream = stream
        self.max_datagram_size = min(stream.max_frame_size, DEFAULT_MAX_DATAGRAM)
        self.peer_address = stream.peer_address

    async def send(self, datagram: bytes) -> None:
        await self._stream.send(datagram)

    async def receive(self) -> bytes:
        return await self._stream.receive()

    async def close(self) -> None:
        await self._stream.close()


class DtlsChannel:
    """A :class:`sealwire.binding.SecureChannel` over one DTLS association."""

    def __init__(
        self,
        endpoint: DatagramEndpoint,
        engine: DtlsEngine,
        *,
        clock: Callable[[], float],
        max_message: int,
        idle_timeout: float,
    ) -> None:
        self._endpoint = endpoint
        self._engine = engine
        self._clock = clock
        self._fragmenter = Fragmenter(max_message)
        self._reassembler = Reassembler(clock, max_message)
        self._idle_timeout = idle_timeout
        self._last_activity = clock()
        self._messages: deque[tuple[int, bytes]] = deque()
        self._peer: PeerIdentity | None = None
        self._answer: list[bytes] = []
        self._late_answers = 0
        self._closed = False
        self.rejected = 0
        """Datagrams, records or fragments dropped with a typed error (spoofed, replayed...)."""

    def __repr__(self) -> str:
        peer = self._peer.agent_id if self._peer is not None else "?"
        return f"<DtlsChannel {self._engine.version} peer={peer}>"

    @property
    def peer(self) -> PeerIdentity:
        if self._peer is None:
            raise DtlsStateError("the DTLS session is not authenticated yet")
        return self._peer

    @property
    def properties(self) -> frozenset[Property]:
        return DTLS_PROPERTIES

    @property
    def engine(self) -> DtlsEngine:
        """The DTLS association (the card exchange reads its exporter and certificate)."""
        return self._engine

    @property
    def version(self) -> str:
        return self._engine.version

    @property
    def cipher(self) -> str:
        return self._engine.cipher

    @property
    def session(self) -> TlsSessionInfo:
        """What the DTLS handshake negotiated (version, suite, key exchange group)."""
        return TlsSessionInfo(
            stack=PYOPENSSL_STACK,
            version=self._engine.version,
            cipher=self._engine.cipher,
            group=self._engine.group,
        )

    def authenticated(self, peer: PeerIdentity) -> None:
        """The card exchange checked ``peer``: the channel is theirs from now on."""
        self._peer = peer
        log.debug("DTLS session with %s: %s", peer.agent_id, self.session.describe())

    @property
    def closed(self) -> bool:
        return self._closed

    # -- plumbing ------------------------------------------------------------------------

    async def flush(self) -> None:
        for datagram in self._engine.datagrams():
            await self._endpoint.send(datagram)

    async def send_message(self, kind: int, message: bytes) -> None:
        for fragment in self._fragmenter.split(kind, message, self._engine.max_plaintext):
            self._engine.send(fragment)
        self._last_activity = self._clock()
        await self.flush()

    def _idle_left(self) -> float:
        return self._idle_timeout - (self._clock() - self._last_activity)

    async def _pump(self, wait: float) -> None:
        """Wait up to ``wait`` seconds for one datagram and process it (records, timers)."""
        timer = self._engine.timeout()
        wait = max(0.0, min(wait, timer if timer is not None else wait))
        try:
            async with asyncio.timeout(wait):  # no task per call, unlike wait_for
                datagram = await self._endpoint.receive()
        except TimeoutError:
            if self._engine.timeout() is not None:
                self._engine.handle_timeout()  # retransmits only if the timer expired
                await self.flush()
            return
        except TransportClosed:
            self._closed = True
            raise ChannelClosed("the endpoint closed") from None
        self.feed(datagram)
        await self.flush()
        if self._engine.peer_closed:
            self._closed = True
            await self._endpoint.close()
            raise ChannelClosed("the peer closed the DTLS session")

    def feed(self, datagram: bytes) -> None:
        try:
            records = split_records(datagram)
        except DecodeError as exc:
            self.reject(exc)
            return
        for record in records:
            try:
                data = self._engine.receive_record(record)
            except DtlsHandshakeError:
                raise
            except (DecodeError, AuthenticationError, RemoteProtocolError) as exc:
                self.reject(exc)
                continue
            if data is None:
                continue
            self._last_activity = self._clock()
            try:
                message = self._reassembler.add(Fragment.decode(data))
            except DecodeError as exc:
                self.reject(exc)
                continue
            if message is not None:
                self._messages.append(message)

    def reject(self, exc: SealwireError) -> None:
        self.rejected += 1
        log.debug("dropped DTLS input: %s: %s", type(exc).__name__, exc)

    async def next_message(self, deadline: float | None) -> tuple[int, bytes] | None:
        """The next reassembled message, or None at ``deadline`` (a clock() value)."""
        while not self._messages:
            if self._closed:
                raise ChannelClosed("the DTLS channel is closed")
            left = self._idle_left()
            if left <= 0:
                await self.close()
                raise ChannelClosed("the DTLS session was idle too long")
            wait = min(left, RECEIVE_POLL)
            if deadline is not None:
                wait = min(wait, deadline - self._clock())
                if wait <= 0:
                    return None
            try:
                await self._pump(wait)
            except DtlsHandshakeError as exc:
                self._closed = True
                await self._endpoint.close()
                raise ChannelClosed(f"the DTLS session failed: {exc}") from None
        return self._messages.popleft()

    async def handshake(self, deadline: float) -> None:
        """Drive the DTLS handshake until done, within ``deadline`` (a clock() value)."""
        engine = self._engine
        while not engine.handshake_done:
            left = deadline - self._clock()
            if left <= 0:
                raise DtlsHandshakeError("the DTLS handshake did not finish in time")
            timer = engine.timeout()
            wait = min(left, timer if timer is not None else left, RECEIVE_POLL)
            try:
                datagram = await asyncio.wait_for(self._endpoint.receive(), max(wait, 0.0))
            except TimeoutError:
                if engine.timeout() is not None:
                    engine.handle_timeout()  # retransmits only if the timer expired
                    await self.flush()
                continue
            except TransportClosed:
                raise DtlsHandshakeError("the endpoint closed during the handshake") from None
            self.feed(datagram)
            await self.flush()
            if engine.peer_closed:
                raise DtlsHandshakeError("the peer closed during the handshake")

    async def answer(self, message: bytes) -> None:
        """Send the responder's ``message`` (its card-exchange answer) and keep it to send
        again when a repeated hello says it was lost."""
        self._answer = self._fragmenter.split(KIND_ANSWER, message, self._engine.max_plaintext)
        for fragment in self._answer:
            self._engine.send(fragment)
        await self.flush()

    # -- SecureChannel -------------------------------------------------------------------

    async def send(self, frame: bytes) -> None:
        if self._closed or self._engine.closed or self._engine.peer_closed:
            raise ChannelClosed("the DTLS channel is closed")
        try:
            await self.send_message(KIND_FRAME, frame)
        except TransportClosed:
            self._closed = True
            raise ChannelClosed("the endpoint closed") from None

    async def receive(self) -> bytes:
        while True:
            message = await self.next_message(None)
            if message is None:
                continue
            kind, body = message
            if kind == KIND_FRAME:
                return body
            if kind == KIND_HELLO and self._answer and self._late_answers < MAX_LATE_ANSWERS:
                self._late_answers += 1  # our answer was lost: the initiator asks again
                for fragment in self._answer:
                    self._engine.send(fragment)
                await self.flush()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._engine.close()
            with contextlib.suppress(TransportClosed):
                await self.flush()
        await self._endpoint.close()
