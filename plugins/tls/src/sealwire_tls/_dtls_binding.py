"""``urn:sealwire:binding:dtls:1``: A2A frames over DTLS 1.2 on the core UDP carrier.

This module holds the binding (options, OpenSSL contexts, the two handshakes in
order); the session is :class:`._dtls_channel.DtlsChannel`, the card exchange of
steps 3 and 4 is in :mod:`._dtls_exchange`.

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
import datetime
import importlib.metadata
import logging
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

from sealwire.binding import (
    BindingContext,
    BindingInfo,
    DatagramBinding,
    Negotiation,
    PeerIdentity,
    SessionBinding,
    Shape,
)
from sealwire.errors import DecodeError
from sealwire.identity import PublicIdentity, VerifiedCard
from sealwire.transport import DatagramEndpoint, FrameStream, TransportClosed
from sealwire_tls._dtls import (
    DEFAULT_MAX_MESSAGE,
    DEFAULT_MTU,
    VERSIONS,
    CookieJar,
    DtlsConfigurationError,
    DtlsEngine,
    DtlsHandshakeError,
    DtlsVersion,
    dtls_context,
    dtls_version,
)
from sealwire_tls._dtls_certs import (
    DTLS_CERTIFICATE_LIFETIME,
    check_dtls_certificate,
    dtls_certificate,
)
from sealwire_tls._dtls_channel import (
    DTLS_PROPERTIES,
    MAX_LATE_ANSWERS,
    STREAM_MTU,
    DtlsChannel,
    StreamDatagrams,
)
from sealwire_tls._dtls_exchange import (
    CONFIRM_RETRY,
    EXPORTER_INITIATOR,
    EXPORTER_RESPONDER,
    receive_hello,
    send_hello,
)

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

DEFAULT_IDLE_TIMEOUT = 300.0
"""Seconds without a record either way before a session is closed: UDP has no FIN, so a
vanished peer is only noticed by silence; five minutes is above A2A's usual think time."""
DEFAULT_HANDSHAKE_TIMEOUT = 15.0
"""Seconds for the DTLS handshake and the card exchange (core's own handshake bound)."""


class DtlsBinding(SessionBinding, DatagramBinding):
    """DTLS 1.2 (RFC 6347) sessions over UDP, certificates issued by agent identities."""

    info = BindingInfo(
        name="dtls",
        version=importlib.metadata.version("sealwire-tls"),
        major=1,
        shape=Shape.SESSION,
        properties=DTLS_PROPERTIES,
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
            await channel.flush()
            await channel.handshake(deadline)
            check_dtls_certificate(engine.peer_certificate(), peer.identity, self._now())
            self.context.trust.check(peer)
            await send_hello(
                channel, self.context.card.card, negotiation, deadline, self.context.clock
            )
        except BaseException:
            await channel.close()
            raise
        channel.authenticated(
            PeerIdentity(agent_id=peer.agent_id, identity=peer.identity, card=peer)
        )
        return channel

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
            await channel.handshake(deadline)
            card = await receive_hello(
                channel, negotiation, deadline, check_trust=self.context.trust.check, now=self._now
            )
            channel.authenticated(
                PeerIdentity(agent_id=card.agent_id, identity=card.identity, card=card)
            )
        except BaseException:
            await channel.close()
            raise
        return channel


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
