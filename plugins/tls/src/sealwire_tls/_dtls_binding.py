"""``urn:sealwire:binding:dtls:1``: A2A frames over DTLS 1.2 on the core UDP carrier.

Session, in order (README.md defines the binding, A2A v1.0 §12):

1. Core's plaintext hello routes the session (both offer lists, the binding
   chosen); the responder checks it against its card (``Policy.check_incoming``).
2. DTLS handshake (:mod:`._dtls`): the responder keeps no state until a
   ClientHello returns a valid cookie; both sides present a DTLS certificate
   (:mod:`._dtls_certs`); retransmissions by RFC 6347 §4.2.4 timers.
3. The initiator checks the responder's certificate against the card it
   called and the trust store, then sends ``hello`` = JSON ``{"card": its signed
   card, "binding": base64url(exporter)}`` where exporter is the RFC 5705 value
   for :data:`EXPORTER_INITIATOR` with context ``Negotiation.transcript()``.
4. The responder verifies the card, checks the initiator's certificate against
   it and the trust store, compares the exporter (constant time) with its own
   for its negotiation, and answers ``{"binding": exporter(EXPORTER_RESPONDER)}``;
   the initiator compares. A downgraded hello gives other transcripts, so other
   exporters: the session ends before any A2A frame.
5. A2A frames, each split into record-sized fragments and reassembled
   (:class:`._dtls.Fragmenter`), at most ``max_message`` bytes.

The initiator resends its hello every :data:`CONFIRM_RETRY` seconds until
answered; the responder answers a repeated hello again (the answer was lost),
at most :data:`MAX_LATE_ANSWERS` times. A session with no record either way
for ``idle_timeout`` seconds is closed (a close_notify is sent).

Options (``[bindings.dtls]``): ``versions`` (default ``["1.2"]``), ``mtu``
(UDP payload bytes, default 1200), ``max_message`` (default 1 MiB),
``idle_timeout`` (seconds, default 300), ``handshake_timeout`` (default 15).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime
import hmac
import importlib.metadata
import json
import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

from sealwire.binding import (
    BindingContext,
    BindingInfo,
    ChannelClosed,
    DatagramBinding,
    Negotiation,
    PeerIdentity,
    Property,
    SessionBinding,
    Shape,
)
from sealwire.errors import AuthenticationError, DecodeError, RemoteProtocolError, SealwireError
from sealwire.identity import PublicIdentity, VerifiedCard, verify_card
from sealwire.transport import DEFAULT_MAX_DATAGRAM, DatagramEndpoint, FrameStream, TransportClosed
from sealwire_tls._dtls import (
    DEFAULT_MAX_MESSAGE,
    DEFAULT_MTU,
    VERSIONS,
    CookieJar,
    DtlsAuthenticationError,
    DtlsConfigurationError,
    DtlsDecodeError,
    DtlsEngine,
    DtlsHandshakeError,
    DtlsStateError,
    DtlsVersion,
    Fragment,
    Fragmenter,
    Reassembler,
    dtls_context,
    dtls_version,
    split_records,
)
from sealwire_tls._dtls_certs import (
    DTLS_CERTIFICATE_LIFETIME,
    check_dtls_certificate,
    dtls_certificate,
)
from sealwire_tls._pq_session import PYOPENSSL_STACK, TlsSessionInfo

__all__ = [
    "CONFIRM_RETRY",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "EXPORTER_INITIATOR",
    "EXPORTER_RESPONDER",
    "MAX_LATE_ANSWERS",
    "STREAM_MTU",
    "DtlsBinding",
    "DtlsChannel",
    "StreamDatagrams",
]

log = logging.getLogger("sealwire_tls.dtls")

EXPORTER_INITIATOR = b"EXPORTER-sealwire-dtls-initiator"
EXPORTER_RESPONDER = b"EXPORTER-sealwire-dtls-responder"
"""RFC 5705 labels (``EXPORTER`` prefix: private use); one per direction, so an
answer is never the hello reflected."""
EXPORTER_LENGTH = 32
KIND_FRAME = 0x46  # 'F': an A2A frame
KIND_HELLO = 0x48  # 'H': the initiator's card and channel binding
KIND_ANSWER = 0x41  # 'A': the responder's channel binding
DEFAULT_IDLE_TIMEOUT = 300.0
"""Seconds without a record either way before a session is closed: UDP has no FIN, so a
vanished peer is only noticed by silence; five minutes is above A2A's usual think time."""
DEFAULT_HANDSHAKE_TIMEOUT = 15.0
"""Seconds for the DTLS handshake and the card exchange (core's own handshake bound)."""
CONFIRM_RETRY = 0.5
"""Seconds before the initiator resends its hello (loopback and LAN round trips are shorter)."""
MAX_LATE_ANSWERS = 16
"""Answers re-sent to repeated hellos after the session started: bounds what a peer
(or a replay of old records, which DTLS refuses anyway) can make us send."""
MAX_HELLO = 64 * 1024
"""A hello is a signed card (a few KB, more with post-quantum keys) and 32 bytes."""
RECEIVE_POLL = 1.0
"""Longest wait for a datagram before the idle and retransmission clocks are looked at."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(value: Any, field: str) -> bytes:
    if not isinstance(value, str) or len(value) > 256:
        raise DtlsDecodeError("expected base64url", field=field)
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise DtlsDecodeError("expected base64url", field=field) from None


def _json(data: bytes, field: str) -> dict[str, Any]:
    if len(data) > MAX_HELLO:
        raise DtlsDecodeError("message too large", field=field)
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise DtlsDecodeError("not JSON", field=field) from None
    if not isinstance(body, dict):
        raise DtlsDecodeError("expected an object", field=field)
    return body


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
        return DtlsBinding.info.properties

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

    def _authenticated(self, peer: PeerIdentity) -> None:
        self._peer = peer
        log.debug("DTLS session with %s: %s", peer.agent_id, self.session.describe())

    @property
    def closed(self) -> bool:
        return self._closed

    # -- plumbing ------------------------------------------------------------------------

    async def _flush(self) -> None:
        for datagram in self._engine.datagrams():
            await self._endpoint.send(datagram)

    async def _send_message(self, kind: int, message: bytes) -> None:
        for fragment in self._fragmenter.split(kind, message, self._engine.max_plaintext):
            self._engine.send(fragment)
        self._last_activity = self._clock()
        await self._flush()

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
                await self._flush()
            return
        except TransportClosed:
            self._closed = True
            raise ChannelClosed("the endpoint closed") from None
        self._feed(datagram)
        await self._flush()
        if self._engine.peer_closed:
            self._closed = True
            await self._endpoint.close()
            raise ChannelClosed("the peer closed the DTLS session")

    def _feed(self, datagram: bytes) -> None:
        try:
            records = split_records(datagram)
        except DecodeError as exc:
            self._reject(exc)
            return
        for record in records:
            try:
                data = self._engine.receive_record(record)
            except DtlsHandshakeError:
                raise
            except (DecodeError, AuthenticationError, RemoteProtocolError) as exc:
                self._reject(exc)
                continue
            if data is None:
                continue
            self._last_activity = self._clock()
            try:
                message = self._reassembler.add(Fragment.decode(data))
            except DecodeError as exc:
                self._reject(exc)
                continue
            if message is not None:
                self._messages.append(message)

    def _reject(self, exc: SealwireError) -> None:
        self.rejected += 1
        log.debug("dropped DTLS input: %s: %s", type(exc).__name__, exc)

    async def _next_message(self, deadline: float | None) -> tuple[int, bytes] | None:
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

    # -- SecureChannel -------------------------------------------------------------------

    async def send(self, frame: bytes) -> None:
        if self._closed or self._engine.closed or self._engine.peer_closed:
            raise ChannelClosed("the DTLS channel is closed")
        try:
            await self._send_message(KIND_FRAME, frame)
        except TransportClosed:
            self._closed = True
            raise ChannelClosed("the endpoint closed") from None

    async def receive(self) -> bytes:
        while True:
            message = await self._next_message(None)
            if message is None:
                continue
            kind, body = message
            if kind == KIND_FRAME:
                return body
            if kind == KIND_HELLO and self._answer and self._late_answers < MAX_LATE_ANSWERS:
                self._late_answers += 1  # our answer was lost: the initiator asks again
                for fragment in self._answer:
                    self._engine.send(fragment)
                await self._flush()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._engine.close()
            with contextlib.suppress(TransportClosed):
                await self._flush()
        await self._endpoint.close()


class DtlsBinding(SessionBinding, DatagramBinding):
    """DTLS 1.2 (RFC 6347) sessions over UDP, certificates issued by agent identities."""

    info = BindingInfo(
        name="dtls",
        version=importlib.metadata.version("sealwire-tls"),
        major=1,
        shape=Shape.SESSION,
        properties=frozenset({Property.MUTUAL_AUTH, Property.FORWARD_SECRECY, Property.DATAGRAM}),
        schemes=frozenset({"udp"}),
        description="DTLS 1.2 (RFC 6347), ECDHE + AEAD, certificates issued by agent keys",
    )
    option_names = frozenset(
        {"versions", "mtu", "max_message", "idle_timeout", "handshake_timeout"}
    )

    @classmethod
    def check_options(cls, options: Mapping[str, object]) -> None:
        """Known keys; versions this OpenSSL runs, positive sizes and timeouts."""
        super().check_options(options)
        _versions(options.get("versions"))
        _positive_int(options, "mtu", DEFAULT_MTU)
        _positive_int(options, "max_message", DEFAULT_MAX_MESSAGE)
        _positive_float(options, "idle_timeout", DEFAULT_IDLE_TIMEOUT)
        _positive_float(options, "handshake_timeout", DEFAULT_HANDSHAKE_TIMEOUT)

    def __init__(self, context: BindingContext) -> None:
        super().__init__(context)
        options = context.options
        self.versions = _versions(options.get("versions"))
        self.mtu = _positive_int(options, "mtu", DEFAULT_MTU)
        self.max_message = _positive_int(options, "max_message", DEFAULT_MAX_MESSAGE)
        self.idle_timeout = _positive_float(options, "idle_timeout", DEFAULT_IDLE_TIMEOUT)
        self.handshake_timeout = _positive_float(
            options, "handshake_timeout", DEFAULT_HANDSHAKE_TIMEOUT
        )
        self.cookies = CookieJar(context.clock)
        self._contexts: dict[bool, SSL.Context] = {}
        self._issued: float | None = None

    @classmethod
    def card_parameters(
        cls, identity: PublicIdentity, options: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """DTLS versions offered; the certificate is issued by the card's signing key."""
        return {
            "versions": [v.name for v in _versions(options.get("versions"))],
            "certificateIssuer": "signingKey",
        }

    # -- OpenSSL contexts, re-issued with the certificate ---------------------------------

    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.context.clock(), datetime.UTC)

    def ssl_context(self, *, server: bool) -> SSL.Context:
        """This agent's OpenSSL context (a new P-256 key and certificate every half lifetime)."""
        now = self.context.clock()
        half = DTLS_CERTIFICATE_LIFETIME.total_seconds() / 2
        if self._issued is None or now - self._issued > half:
            key = ec.generate_private_key(ec.SECP256R1())
            certificate = dtls_certificate(self.context.identity, key, self._now())
            self._contexts = {
                side: dtls_context(
                    server=side,
                    versions=self.versions,
                    certificate=certificate,
                    key=key,
                    cookies=self.cookies if side else None,
                )
                for side in (True, False)
            }
            self._issued = now
        return self._contexts[server]

    def choose_version(self, peer: VerifiedCard) -> DtlsVersion:
        offer = peer.offer(self.info.name)
        listed = offer.params.get("versions") if offer is not None else None
        theirs = listed if isinstance(listed, list) else ["1.2"]
        for version in self.versions:
            if version.name in theirs:
                return version
        raise DtlsConfigurationError("no DTLS version in common with the peer")

    # -- handshakes ----------------------------------------------------------------------

    async def initiate(
        self, stream: FrameStream, peer: VerifiedCard, negotiation: Negotiation
    ) -> DtlsChannel:
        return await self.initiate_datagram(StreamDatagrams(stream), peer, negotiation)

    async def respond(self, stream: FrameStream, negotiation: Negotiation) -> DtlsChannel:
        return await self.respond_datagram(StreamDatagrams(stream), negotiation)

    def _mtu(self, endpoint: DatagramEndpoint) -> int:
        mtu = STREAM_MTU if isinstance(endpoint, StreamDatagrams) else self.mtu
        return min(mtu, endpoint.max_datagram_size)

    def _channel(self, endpoint: DatagramEndpoint, engine: DtlsEngine) -> DtlsChannel:
        return DtlsChannel(
            endpoint,
            engine,
            clock=self.context.clock,
            max_message=self.max_message,
            idle_timeout=self.idle_timeout,
        )

    async def initiate_datagram(
        self, endpoint: DatagramEndpoint, peer: VerifiedCard, negotiation: Negotiation
    ) -> DtlsChannel:
        """Client handshake, check the server against ``peer``, card exchange."""
        self.choose_version(peer)  # fails early when no version is common
        engine = DtlsEngine.client(self.ssl_context(server=False), mtu=self._mtu(endpoint))
        channel = self._channel(endpoint, engine)
        deadline = self.context.clock() + self.handshake_timeout
        try:
            await channel._flush()
            await _handshake(channel, deadline)
            check_dtls_certificate(engine.peer_certificate(), peer.identity, self._now())
            self.context.trust.check(peer)
            hello = {
                "card": dict(self.context.card.card),
                "binding": _b64(engine.export(EXPORTER_INITIATOR, negotiation.transcript())),
            }
            await channel._send_message(KIND_HELLO, json.dumps(hello).encode())
            expected = engine.export(EXPORTER_RESPONDER, negotiation.transcript())
            await self._await_answer(channel, hello, expected, deadline)
        except BaseException:
            await channel.close()
            raise
        channel._authenticated(
            PeerIdentity(agent_id=peer.agent_id, identity=peer.identity, card=peer)
        )
        return channel

    async def _await_answer(
        self, channel: DtlsChannel, hello: dict[str, Any], expected: bytes, deadline: float
    ) -> None:
        retry = self.context.clock() + CONFIRM_RETRY
        while True:
            if self.context.clock() >= deadline:
                raise DtlsHandshakeError("the peer did not answer the DTLS card exchange")
            message = await channel._next_message(min(retry, deadline))
            if message is None:
                await channel._send_message(KIND_HELLO, json.dumps(hello).encode())
                retry = self.context.clock() + CONFIRM_RETRY
                continue
            kind, body = message
            if kind != KIND_ANSWER:
                channel._reject(DtlsDecodeError("frame before the answer", field="dtls.kind"))
                continue
            answer = _json(body, "dtls.answer")
            binding = _unb64(answer.get("binding"), "dtls.answer.binding")
            if not hmac.compare_digest(binding, expected):
                raise DtlsAuthenticationError(
                    "the responder's channel binding differs: the negotiation was altered"
                )
            return

    async def respond_datagram(
        self, endpoint: DatagramEndpoint, negotiation: Negotiation
    ) -> DtlsChannel:
        """Server: cookie exchange (stateless), handshake, the initiator's card checked."""
        deadline = self.context.clock() + self.handshake_timeout
        context = self.ssl_context(server=True)
        address = endpoint.peer_address.encode()
        mtu = self._mtu(endpoint)
        engine: DtlsEngine | None = None
        rejected = 0
        while engine is None:
            left = deadline - self.context.clock()
            if left <= 0:
                raise DtlsHandshakeError("no DTLS ClientHello with a valid cookie arrived")
            try:
                datagram = await asyncio.wait_for(endpoint.receive(), left)
            except TimeoutError:
                continue
            except TransportClosed:
                raise DtlsHandshakeError("the endpoint closed before the handshake") from None
            try:
                engine, replies = DtlsEngine.accept(context, datagram, address, mtu=mtu)
            except DecodeError as exc:
                rejected += 1  # a stray, spoofed or repeated datagram: no state kept
                log.debug("dropped a datagram before the cookie: %s", exc)
                continue
            for reply in replies:
                await endpoint.send(reply)
        channel = self._channel(endpoint, engine)
        channel.rejected = rejected
        try:
            await _handshake(channel, deadline)
            await self._await_hello(channel, negotiation, deadline)
        except BaseException:
            await channel.close()
            raise
        return channel

    async def _await_hello(
        self, channel: DtlsChannel, negotiation: Negotiation, deadline: float
    ) -> None:
        engine = channel._engine
        while True:
            message = await channel._next_message(deadline)
            if message is None:
                raise DtlsHandshakeError("the initiator did not send its card")
            kind, body = message
            if kind != KIND_HELLO:
                channel._reject(DtlsDecodeError("frame before the hello", field="dtls.kind"))
                continue
            break
        hello = _json(body, "dtls.hello")
        card_json = hello.get("card")
        if not isinstance(card_json, dict):
            raise DtlsDecodeError("expected the initiator's card", field="dtls.hello.card")
        card = verify_card(card_json)
        check_dtls_certificate(engine.peer_certificate(), card.identity, self._now())
        self.context.trust.check(card)
        binding = _unb64(hello.get("binding"), "dtls.hello.binding")
        if not hmac.compare_digest(
            binding, engine.export(EXPORTER_INITIATOR, negotiation.transcript())
        ):
            raise DtlsAuthenticationError(
                "the initiator's channel binding differs: the negotiation was altered"
            )
        answer = json.dumps(
            {"binding": _b64(engine.export(EXPORTER_RESPONDER, negotiation.transcript()))}
        ).encode()
        channel._answer = channel._fragmenter.split(KIND_ANSWER, answer, engine.max_plaintext)
        for fragment in channel._answer:
            engine.send(fragment)
        await channel._flush()
        channel._authenticated(
            PeerIdentity(agent_id=card.agent_id, identity=card.identity, card=card)
        )


async def _handshake(channel: DtlsChannel, deadline: float) -> None:
    """Drive the DTLS handshake until done, within ``deadline`` (a clock() value)."""
    engine = channel._engine
    while not engine.handshake_done:
        left = deadline - channel._clock()
        if left <= 0:
            raise DtlsHandshakeError("the DTLS handshake did not finish in time")
        timer = engine.timeout()
        wait = min(left, timer if timer is not None else left, RECEIVE_POLL)
        try:
            datagram = await asyncio.wait_for(channel._endpoint.receive(), max(wait, 0.0))
        except TimeoutError:
            if engine.timeout() is not None:
                engine.handle_timeout()  # retransmits only if the timer expired
                await channel._flush()
            continue
        except TransportClosed:
            raise DtlsHandshakeError("the endpoint closed during the handshake") from None
        channel._feed(datagram)
        await channel._flush()
        if engine.peer_closed:
            raise DtlsHandshakeError("the peer closed during the handshake")


def _versions(value: Any) -> tuple[DtlsVersion, ...]:
    if value is None:
        return (VERSIONS["1.2"],)
    if not isinstance(value, list | tuple) or not value or len(value) > len(VERSIONS):
        raise DtlsConfigurationError("bindings.dtls.versions: expected a list of versions")
    return tuple(dtls_version(str(v)) for v in value)


def _positive_int(options: Mapping[str, Any], name: str, default: int) -> int:
    value = options.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise DtlsConfigurationError(f"bindings.dtls.{name}: expected a positive integer")
    return value


def _positive_float(options: Mapping[str, Any], name: str, default: float) -> float:
    value = options.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise DtlsConfigurationError(f"bindings.dtls.{name}: expected a positive number")
    return float(value)
