"""The calling side of the TLS binding: pin the server, enrol, call over httpx.

Opening a channel to a peer's ``https://`` interface (module rules):

1. Probe: one TLS 1.3 handshake reads the server's certificate (verified
   against the operator's CA and the host name when a CA is configured). Its
   key must be the signing key of the peer's verified card - the handshake's
   CertificateVerify proved the server holds it. That exact certificate is
   then the only trust anchor of the real connections (a pinned certificate).
   A server holding a second, ECDSA, certificate (the ``grpc`` option) gives it
   to clients without Ed25519 only; should a Sealwire client get it, the leaf is
   accepted only as the peer's agent issues it (:func:`check_server_certificate`:
   signed with the card's key, naming that agent, within its validity), and it is
   the pinned certificate and the one the channel binding names.
2. Enrol our certificate when the peer's card says it enrols (once per peer
   and process), so the server's OpenSSL can verify it.
3. The channel: an ``httpx`` client (its connection pool is the peer's: the
   agent keeps one channel per peer, and HTTP/2 multiplexes every call on one
   connection), TLS 1.3 only, our certificate (the ``SSLContext`` made once per
   pinned server), HTTP/2 by default - HTTP/3 over QUIC (:mod:`._http3_client`,
   the same pinned server certificate) when our ``http3`` option is on and the peer's offer says
   ``http3: true``, over TCP again when the QUIC handshake does not get through
   in :data:`HTTP3_CONNECT_SECONDS` (UDP blocked on the path); each request
   carries our signed card and the negotiation, each answer's channel binding
   is verified with the peer's key (``_channel``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from sealwire.binding import BindingContext, Negotiation, PeerIdentity, Property
from sealwire.errors import AuthenticationError, DecodeError, RemoteProtocolError, TrustError
from sealwire.identity import PublicIdentity, VerifiedCard
from sealwire.transport import TransportError, connect_first, resolve
from sealwire.transport.http import HttpChannel
from sealwire_tls._certs import (
    certificate_key,
    check_agent_issued,
    fingerprint,
    key_files,
    parse_certificate,
)
from sealwire_tls._channel import (
    CARD_HEADER,
    CHANNEL_BINDING_HEADER,
    NEGOTIATION_HEADER,
    b64url,
    channel_binding_data,
    from_b64url,
    http_version,
    negotiation_header,
)
from sealwire_tls._pq import (
    PostQuantum,
    TlsDowngradeError,
    TlsHandshakeError,
    card_offers_hybrid,
    card_requires_hybrid,
    tls_context,
)
from sealwire_tls._pq_client import PqNetworkBackend, PqTransport, connect_tls
from sealwire_tls._pq_session import TlsSessionInfo, check_group, info_from_ssl_object
from sealwire_tls._pq_stream import peer_certificate_der
from sealwire_tls._server import ENROLL_PATH

__all__ = [
    "MAX_PINNED_SERVERS",
    "TlsChannel",
    "TlsClient",
    "check_server_certificate",
    "client_context",
    "session_info",
]

log = logging.getLogger(__name__)

MAX_PINNED_SERVERS = 1024
"""Server certificates (and enrolments) remembered per binding; forgotten ones cost a
probe (an enrolment) again."""
HTTP3_CONNECT_SECONDS = 5.0
"""How long a QUIC handshake may take before the call goes over TCP instead."""
HTTP3_RETRY_SECONDS = 300.0
"""After a failed QUIC handshake, calls to that server use TCP this long."""
DEFAULT_TIMEOUT = 30.0
"""Seconds for the probe, enrolment, connecting and writing (answers may take longer)."""


def client_context(
    identity_chain: tuple[BindingContext, Sequence[x509.Certificate]] | None,
    server_der: bytes,
) -> ssl.SSLContext:
    """TLS 1.3 only; the server's exact certificate as the only anchor; ours if given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # the pinned certificate authenticates, not the name
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=server_der)
    # A pinned leaf (CA-issued, so not self-signed) is a trust anchor of its own.
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    if identity_chain is not None:
        context, chain = identity_chain
        with key_files(context.identity, chain) as (cert_file, key_file):
            ctx.load_cert_chain(cert_file, key_file)
    return ctx


def _probe_context(ca: x509.Certificate | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if ca is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the key is checked against the card below
    else:
        ctx.load_verify_locations(cadata=ca.public_bytes(Encoding.DER))
    return ctx


async def probe(host: str, port: int, ca: x509.Certificate | None, timeout: float) -> bytes:
    """The server's certificate (DER) from one TLS 1.3 handshake; TransportError if unreachable."""
    context = _probe_context(ca)

    async def dial(address: str, port: int, family: socket.AddressFamily) -> asyncio.StreamWriter:
        _reader, writer = await asyncio.open_connection(
            address, port, family=family, ssl=context, server_hostname=host
        )
        return writer

    try:
        async with asyncio.timeout(timeout):
            writer = await connect_first(await resolve(host, port, timeout=timeout), dial)
    except ssl.SSLError as exc:
        raise TrustError(f"TLS handshake with {host}:{port} failed: {exc.reason}") from None
    except (OSError, TimeoutError) as exc:
        raise TransportError(f"cannot reach {host}:{port}: {type(exc).__name__}") from None
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    if not der:
        raise RemoteProtocolError("the server sent no certificate")
    return bytes(der)


async def probe_pq(
    host: str,
    port: int,
    ca: x509.Certificate | None,
    timeout: float,
    on_session: Callable[[TlsSessionInfo], None],
) -> bytes:
    """:func:`probe` on pyOpenSSL (the ``post_quantum`` option); ``on_session`` may refuse
    the session (the downgrade rule) before the certificate is used."""
    anchors = [] if ca is None else [ca.public_bytes(Encoding.DER)]
    context = tls_context(
        server=False, mode=PostQuantum.PREFER, anchors=anchors, verify=ca is not None
    )
    try:
        stream = await connect_tls(host, port, context, timeout)
    except TlsHandshakeError as exc:  # as probe(): a failed handshake is a trust failure
        raise TrustError(f"TLS with {host}:{port}: {exc}") from None
    try:
        assert stream.ssl_object is not None
        on_session(stream.ssl_object.info)
        der = peer_certificate_der(stream)
        if ca is not None:
            _check_host(parse_certificate(der), host)
    finally:
        stream.close()
        with contextlib.suppress(Exception):
            await stream.wait_closed()
    return der


def check_server_certificate(der: bytes, peer: PublicIdentity) -> None:
    """Module rule 1: the server's leaf holds the key of the peer's card (Ed25519), or is
    an ECDSA leaf that agent issued (:func:`~sealwire_tls._certs.check_agent_issued`);
    TrustError (DecodeError for a malformed certificate) otherwise."""
    certificate = parse_certificate(der)
    try:
        found = certificate_key(certificate)
    except DecodeError:
        check_agent_issued(certificate, peer.signing_key)
        return
    if found.public_bytes_raw() != peer.signing_key.public_bytes_raw():
        raise TrustError("the server's certificate is not the key of the peer's card")


def _check_host(certificate: x509.Certificate, host: str) -> None:
    """The operator-CA probe's name check (Python's ``ssl`` does it for the classical
    stack): ``host`` must be one of the certificate's DNS or IP subjectAltNames."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise TrustError("the server's certificate names no host") from None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host.lower() in (n.lower() for n in names.get_values_for_type(x509.DNSName)):
            return
    else:
        if address in names.get_values_for_type(x509.IPAddress):
            return
    raise TrustError(f"the server's certificate does not name {host}")


class TlsChannel(HttpChannel):
    """The HTTP channel to a peer, with what its latest TLS connection negotiated."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session: TlsSessionInfo | None = None
        """The latest connection's session (version, suite, key exchange group - None
        where the stack cannot say it: Python 3.11's ``ssl``, HTTP/3)."""


def session_info(channel: object) -> TlsSessionInfo | None:
    """What a channel of this distribution's bindings negotiated (``tls``: its latest
    connection, once an answer came; ``dtls``: its association), for ``sealwire send
    --verbose`` and logs; None for channels of other bindings."""
    from sealwire_tls._dtls_binding import DtlsChannel  # imports the DTLS engine

    if isinstance(channel, TlsChannel | DtlsChannel):
        return channel.session
    return None


def channel_check(
    peer: PublicIdentity, negotiation: Negotiation, server_fp: bytes, client_fp: bytes
) -> Callable[[httpx.Response], None]:
    """Verifies each answer's channel binding; a signature checked once is then compared."""
    verified: dict[str, str] = {}

    def check(response: httpx.Response) -> None:
        value = response.headers.get(CHANNEL_BINDING_HEADER)
        if value is None:
            raise AuthenticationError("the server did not bind the channel")
        http = http_version(response.http_version)
        if verified.get(http) == value:
            return
        data = channel_binding_data(negotiation, server_fp, client_fp, http)
        peer.verify(from_b64url(value, field=CHANNEL_BINDING_HEADER), data)
        verified[http] = value

    return check


class TlsClient:
    """Opens :class:`HttpChannel` s to peers for one agent's TLS binding."""

    def __init__(
        self,
        current: Callable[[], BindingContext],
        chain: Sequence[x509.Certificate],
        *,
        ca: x509.Certificate | None = None,
        http2: bool = True,
        http3: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        post_quantum: PostQuantum = PostQuantum.OFF,
    ) -> None:
        self._current = current
        self.post_quantum = post_quantum
        self._chain = tuple(chain)
        self._der = chain[0].public_bytes(Encoding.DER)
        self._fingerprint = fingerprint(self._der)
        self._ca = ca
        self.http2 = http2
        self.http3 = http3
        self._timeout = timeout
        self._servers: dict[tuple[str, int, str], bytes] = {}
        self._contexts: dict[bytes, ssl.SSLContext] = {}  # pinned server DER -> our context
        self._pq_contexts: dict[bytes, SSL.Context] = {}  # the same, pyOpenSSL
        self._no_http3: dict[tuple[str, int], float] = {}  # -> loop time to try QUIC again
        self._enrolled: set[tuple[str, int, str]] = set()

    async def open(self, url: str, peer: VerifiedCard, negotiation: Negotiation) -> HttpChannel:
        """The channel to ``peer`` at ``url`` (module rules 1-3)."""
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 443
        key = (host, port, peer.agent_id)
        mode = self.post_quantum
        hybrid = card_offers_hybrid(peer)
        if mode is PostQuantum.OFF and card_requires_hybrid(peer):
            raise TlsDowngradeError(
                "the peer accepts only X25519MLKEM768: set post_quantum in [bindings.tls]"
            )

        def on_session(info: TlsSessionInfo) -> None:
            check_group(info, mode, peer_offers_hybrid=hybrid)
            if channel is not None:
                channel.session = info

        channel: TlsChannel | None = None
        server_der = self._servers.get(key)
        if server_der is None:
            if mode is PostQuantum.OFF:
                server_der = await probe(host, port, self._ca, self._timeout)
            else:
                server_der = await probe_pq(host, port, self._ca, self._timeout, on_session)
            check_server_certificate(server_der, peer.identity)
            if len(self._servers) >= MAX_PINNED_SERVERS:
                self._servers.clear()
            self._servers[key] = server_der
        offer = peer.offer("tls")
        if offer is not None and offer.params.get("enroll", False) and key not in self._enrolled:
            await self._enroll(
                f"{parts.scheme}://{parts.netloc}{ENROLL_PATH}", server_der, on_session
            )
            if len(self._enrolled) >= MAX_PINNED_SERVERS:
                self._enrolled.clear()  # enrolling again is harmless
            self._enrolled.add(key)
        context = self._current()
        client = None
        if self.http3 and offer is not None and offer.params.get("http3") is True:
            client = await self._http3_client(host, port, context, server_der)
        if client is None and mode is not PostQuantum.OFF:
            backend = PqNetworkBackend(self._pq_context(context, server_der), on_session)
            client = httpx.AsyncClient(
                transport=PqTransport(backend, http2=self.http2),
                timeout=self._http_timeout,
                trust_env=False,
            )
        if client is None:
            client = httpx.AsyncClient(
                verify=self._client_context(context, server_der),
                http2=self.http2,
                timeout=self._http_timeout,
                trust_env=False,
            )
        headers = {
            CARD_HEADER: b64url(context.card.json_bytes),
            NEGOTIATION_HEADER: negotiation_header(negotiation),
        }
        check = channel_check(
            peer.identity, negotiation, fingerprint(server_der), self._fingerprint
        )
        properties = {Property.MUTUAL_AUTH, Property.FORWARD_SECRECY, Property.HTTP_INTEROP}
        if mode is PostQuantum.REQUIRE or (mode is PostQuantum.PREFER and hybrid):
            # check_group refuses every connection of this channel that is not hybrid.
            properties.add(Property.POST_QUANTUM)

        def checked(response: httpx.Response) -> None:
            check(response)
            stream = response.extensions.get("network_stream")
            found = (
                None
                if stream is None
                else info_from_ssl_object(stream.get_extra_info("ssl_object"))
            )
            if found is not None and channel is not None:
                channel.session = found

        channel = TlsChannel(
            client,
            url,
            PeerIdentity(agent_id=peer.agent_id, identity=peer.identity, card=peer),
            properties=frozenset(properties),
            headers=headers,
            check_response=checked,
        )
        return channel

    def _client_context(self, context: BindingContext, server_der: bytes) -> ssl.SSLContext:
        """Our TLS context pinning ``server_der``, made once per server: building one
        loads our key and certificate (through files), more than a TLS handshake costs."""
        ctx = self._contexts.get(server_der)
        if ctx is None:
            ctx = client_context((context, self._chain), server_der)
            if len(self._contexts) >= MAX_PINNED_SERVERS:
                self._contexts.clear()
            self._contexts[server_der] = ctx
        return ctx

    def _pq_context(self, context: BindingContext, server_der: bytes) -> SSL.Context:
        """:meth:`_client_context` on pyOpenSSL (the ``post_quantum`` option)."""
        ctx = self._pq_contexts.get(server_der)
        if ctx is None:
            ctx = tls_context(
                server=False, mode=self.post_quantum, chain=self._chain,
                key=context.identity.signing_key, anchors=[server_der],
                alpn=("h2", "http/1.1") if self.http2 else ("http/1.1",),
            )  # fmt: skip
            if len(self._pq_contexts) >= MAX_PINNED_SERVERS:
                self._pq_contexts.clear()
            self._pq_contexts[server_der] = ctx
        return ctx

    @property
    def _http_timeout(self) -> httpx.Timeout:
        # No read timeout: an A2A call or stream may rightly wait for a long task,
        # as on every other binding; connecting and writing are bounded.
        return httpx.Timeout(self._timeout, read=None)

    async def _http3_client(
        self, host: str, port: int, context: BindingContext, server_der: bytes
    ) -> httpx.AsyncClient | None:
        """An HTTP/3 client, connected (handshake and pin checked); None when QUIC does
        not get through (UDP blocked on the path): the caller falls back to TCP, and
        this server is called over TCP for :data:`HTTP3_RETRY_SECONDS`."""
        from sealwire_tls._http3_client import Http3Transport  # imports aioquic

        loop = asyncio.get_running_loop()
        if self._no_http3.get((host, port), 0.0) > loop.time():
            return None
        transport = Http3Transport(
            host, port, certificate_chain=self._chain, private_key=context.identity.signing_key,
            server_certificate=server_der,
            connect_timeout=min(self._timeout, HTTP3_CONNECT_SECONDS),
        )  # fmt: skip
        try:
            await transport.connect()  # a wrong server certificate raises TrustError here
        except httpx.ConnectError as exc:
            log.info("HTTP/3 to %s:%d failed (%s): falling back to TCP", host, port, exc)
            if len(self._no_http3) >= MAX_PINNED_SERVERS:
                self._no_http3.clear()
            self._no_http3[(host, port)] = loop.time() + HTTP3_RETRY_SECONDS
            return None
        return httpx.AsyncClient(transport=transport, timeout=self._http_timeout, trust_env=False)

    async def _enroll(
        self, url: str, server_der: bytes, on_session: Callable[[TlsSessionInfo], None]
    ) -> None:
        body = {"card": dict(self._current().card.card), "certificate": b64url(self._der)}
        if self.post_quantum is PostQuantum.OFF:
            options: dict[str, Any] = {"verify": client_context(None, server_der)}
        else:
            context = tls_context(
                server=False, mode=self.post_quantum, anchors=[server_der], alpn=("http/1.1",)
            )
            backend = PqNetworkBackend(context, on_session)
            options = {"transport": PqTransport(backend, http2=False)}
        async with httpx.AsyncClient(**options, timeout=self._timeout, trust_env=False) as c:
            try:
                response = await c.post(url, json=body)
            except httpx.HTTPError as exc:
                raise TransportError(f"enrolment failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise TrustError(f"the peer refused our certificate: HTTP {response.status_code}")
