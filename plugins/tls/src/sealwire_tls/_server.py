"""The HTTPS side of the TLS binding: TLS 1.3 context, who the caller is, enrolment.

Who may call (module rules):

1. TLS 1.3 only; a client certificate is verified by OpenSSL against the trust
   anchors: the operator's CA, the certificates configured in
   ``client_certificates``, and those enrolled. With ``enroll = false`` the
   certificate is required in the handshake (``CERT_REQUIRED``); with enrolment
   on (the default) the handshake also admits a client without one
   (``CERT_OPTIONAL``), which may only read the card and enrol: every A2A
   request without a verified certificate gets HTTP 403.
2. The certificate's key must be Ed25519: its agent id is the caller's.
3. A caller sending its signed card (``Sealwire-Agent-Card``) must be that
   card's agent (same key) and pass ``TrustStore.check``; any other caller
   (curl, an a2a-sdk client) must be pinned in the trust store.
4. Enrolment (``POST /.well-known/sealwire/enroll``, body ``{"card", "certificate"}``)
   adds a certificate as a trust anchor once its card verifies, passes the trust
   store, and names the certificate's key; the handshake then proves the key.
5. With ``grpc`` (served on pyOpenSSL, :mod:`._pq_server`): a second chain, the
   agent's ECDSA P-256 leaf under its issuing certificate, for clients that offer
   no Ed25519 signature (grpcio); clients offering Ed25519 get the agent's own
   certificate. The channel binding names the certificate the connection got.
6. With ``post_quantum`` (served on pyOpenSSL, :mod:`._pq_server`): a Sealwire
   caller whose card lists X25519MLKEM768 and whose connection negotiated a
   classical group is refused (:class:`~sealwire_tls._pq.TlsDowngradeError`, 403).
"""

from __future__ import annotations

import datetime
import json
import ssl
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from sealwire.binding import BindingContext, PeerIdentity
from sealwire.errors import AuthenticationError, DecodeError, PolicyError, TrustError
from sealwire.identity import VerifiedCard, agent_id_for, sign_card, verify_card
from sealwire_tls._certs import (
    certificate_key,
    fingerprint,
    key_files,
    load_certificates,
    parse_certificate,
)
from sealwire_tls._channel import (
    CARD_HEADER,
    CHANNEL_BINDING_HEADER,
    NEGOTIATION_HEADER,
    b64url,
    channel_binding_data,
    decode_json_header,
    from_b64url,
    http_version,
    parse_negotiation_header,
)
from sealwire_tls._pq import (
    PostQuantum,
    TlsDowngradeError,
    add_anchor,
    card_offers_hybrid,
    tls_context,
)
from sealwire_tls._pq_session import TlsSessionInfo

__all__ = [
    "ENROLL_PATH",
    "MAX_ENROLLED",
    "MAX_PEER_CACHE",
    "OP_ALLOW_NO_DHE_KEX",
    "RESUMPTION_TICKETS",
    "TlsServer",
    "server_context",
]

ENROLL_PATH = "/.well-known/sealwire/enroll"
STANDARD_BINDINGS = ("JSONRPC", "HTTP+JSON")
"""The standard A2A bindings the HTTPS endpoint serves beside Sealwire's own (spec
§9 and §11), listed in the card at the endpoint's URL in this order."""
GRPC_BINDING = "GRPC"
"""The gRPC binding (spec §10), listed after them when the ``grpc`` option serves it, at
the endpoint's origin (gRPC paths are ``/lf.a2a.v1.A2AService/<Method>`` from the root)."""
SESSION_KEY = "sealwire_session"
"""Key of the connection's :class:`~sealwire_tls._pq_session.TlsSessionInfo` in the ASGI ``tls``
extension (the pyOpenSSL stack puts it there: Python's ``ssl`` cannot name the group)."""
TLS_NAMESPACE = "tls"
MAX_ENROLLED = 4096
"""Client certificates enrolled and kept as trust anchors; past this, enrolment
is refused (each is an entry in OpenSSL's store, looked up per handshake)."""
MAX_PEER_CACHE = 1024
"""Verified (certificate, card) pairs and channel-binding signatures remembered,
least recently used dropped: a card verification costs ~1 ms, not per request."""
ALPN = ["h2", "http/1.1"]
RESUMPTION_TICKETS = 1
"""Session tickets sent after each full handshake when resumption is on. A client
keeping its connections open resumes rarely, and one ticket per handshake serves
it; OpenSSL's default (2) costs the server a ticket encryption and a record each."""
OP_ALLOW_NO_DHE_KEX = 0x400
"""OpenSSL's ``SSL_OP_ALLOW_NO_DHE_KEX`` (Python's ``ssl`` has no name for it): when
set, a TLS 1.3 resumption may skip the (EC)DHE exchange (``psk_ke``) and lose
forward secrecy. The server context keeps it clear: resumption is ``psk_dhe_ke`` only."""


def server_context(
    chain: Sequence[x509.Certificate],
    context: BindingContext,
    anchors: Sequence[bytes],
    *,
    require: bool,
    resumption: bool = False,
) -> ssl.SSLContext:
    """TLS 1.3 only, our certificate, client certificates verified against ``anchors`` (DER).

    No session tickets unless ``resumption``: then :data:`RESUMPTION_TICKETS` per
    handshake, and a resumption always runs a fresh (EC)DHE (forward secrecy).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.num_tickets = RESUMPTION_TICKETS if resumption else 0
    ctx.options &= ~OP_ALLOW_NO_DHE_KEX
    ctx.set_alpn_protocols(ALPN)
    with key_files(context.identity, chain) as (cert_file, key_file):
        ctx.load_cert_chain(cert_file, key_file)
    ctx.verify_mode = ssl.CERT_REQUIRED if require else ssl.CERT_OPTIONAL
    # A pinned leaf (CA-issued, so not self-signed) is a trust anchor of its own.
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    for der in anchors:
        ctx.load_verify_locations(cadata=der)
    return ctx


class _Lru(OrderedDict[Any, Any]):
    def remember(self, key: Any, value: Any) -> Any:
        self[key] = value
        self.move_to_end(key)
        while len(self) > MAX_PEER_CACHE:
            self.popitem(last=False)
        return value


class TlsServer:
    """Serving side of one agent's TLS binding (the module docstring's rules)."""

    def __init__(
        self,
        current: Callable[[], BindingContext],
        chain: Sequence[x509.Certificate],
        *,
        binding_uri: str,
        ca: x509.Certificate | None = None,
        enroll: bool = True,
        resumption: bool = False,
        post_quantum: PostQuantum = PostQuantum.OFF,
        grpc: tuple[Sequence[x509.Certificate], ec.EllipticCurvePrivateKey] | None = None,
    ) -> None:
        self._current = current
        context = current()
        self.chain = tuple(chain)
        self.grpc_chain = None if grpc is None else tuple(grpc[0])
        self.fingerprint = fingerprint(chain[0].public_bytes(Encoding.DER))
        self._uri = binding_uri
        self._enroll = enroll
        self._ca = ca
        anchors = [c.public_bytes(Encoding.DER) for c in ([ca] if ca else [])]
        paths = context.options.get("client_certificates", [])
        for path in [paths] if isinstance(paths, str) else paths:
            anchors += [c.public_bytes(Encoding.DER) for c in load_certificates(path)]
        stored = context.store.keys(TLS_NAMESPACE, "client/")[:MAX_ENROLLED]
        anchors += [d for d in (context.store.get(TLS_NAMESPACE, k) for k in stored) if d]
        self._anchors = {fingerprint(d) for d in anchors}
        self.ssl = server_context(
            chain, context, anchors, require=not enroll, resumption=resumption
        )
        self.post_quantum = post_quantum
        self.pq_context: SSL.Context | None = None
        if post_quantum is not PostQuantum.OFF or grpc is not None:
            # The same rules on the pyOpenSSL stack (README: post-quantum TLS; gRPC: the
            # second certificate needs the order of signature algorithms set).
            self.pq_context = tls_context(
                server=True, mode=post_quantum, chain=self.chain,
                key=context.identity.signing_key, anchors=anchors, require_certificate=not enroll,
                second=None if grpc is None else (self.grpc_chain or (), grpc[1]),
            )  # fmt: skip
        self._peers = _Lru()
        self._signatures = _Lru()
        self._served: tuple[VerifiedCard, dict[str, Any]] | None = None

    @property
    def enroll_on(self) -> bool:
        """Whether a client without a certificate may connect (to read the card and enrol)."""
        return self._enroll

    def admits(self, der: bytes, now: datetime.datetime | None = None) -> bool:
        """Rule 1 without OpenSSL (HTTP/3): is this client leaf a trust anchor?

        True when ``der`` is exactly one of the anchors (configured or enrolled), or
        is directly issued by the operator's CA (signature checked) - in both cases
        within its validity dates (and the CA within its own) at ``now`` (default:
        the current time).
        """
        try:
            certificate = parse_certificate(der)
        except DecodeError:
            return False
        at = now or datetime.datetime.now(datetime.UTC)
        if not _valid_at(certificate, at):
            return False
        if fingerprint(der) in self._anchors:
            return True
        if self._ca is None or not _valid_at(self._ca, at):
            return False
        try:
            certificate.verify_directly_issued_by(self._ca)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    @property
    def _binding(self) -> BindingContext:
        """The binding's context now (the agent re-signs its card once it listens)."""
        return self._current()

    # -- the card ------------------------------------------------------------------------

    def card(self) -> Mapping[str, Any]:
        """Our signed card with the standard ``JSONRPC`` and ``HTTP+JSON`` interfaces
        added beside ours, at the same URL, and ``GRPC`` at its origin when served
        (re-signed)."""
        card = self._binding.card
        if self._served is not None and self._served[0] is card:
            return self._served[1]
        data = dict(card.card)
        interfaces = list(data.get("supportedInterfaces", []))
        ours = [i for i in interfaces if i.get("protocolBinding") == self._uri]
        for entry in ours:
            at = interfaces.index(entry) + 1
            plain = [{**entry, "protocolBinding": standard} for standard in STANDARD_BINDINGS]
            if self.grpc_chain is not None:
                parts = urlsplit(str(entry.get("url", "")))
                origin = f"{parts.scheme}://{parts.netloc}"
                plain.append({**entry, "protocolBinding": GRPC_BINDING, "url": origin})
            for added in plain:
                if added not in interfaces:
                    interfaces.insert(at, added)
                    at += 1
        data["supportedInterfaces"] = interfaces
        signed = sign_card(data, self._binding.identity)
        self._served = (card, signed)
        return signed

    # -- who is calling ------------------------------------------------------------------

    async def identify(self, scope: Mapping[str, Any], headers: Mapping[str, str]) -> PeerIdentity:
        """The verified caller of one request (rules 1-3), or an AuthenticationError."""
        der = _client_certificate(scope)
        card_header = headers.get(CARD_HEADER.lower())
        card_digest = None if card_header is None else fingerprint(card_header.encode())
        key = (fingerprint(der), card_digest)
        peer: PeerIdentity | None = self._peers.get(key)
        if peer is None:
            peer = self._peers.remember(key, self._verify_caller(der, card_header))
        if self._binding.trust.is_denied(peer.agent_id):
            raise TrustError(f"agent {peer.agent_id} is denied")
        self._check_key_exchange(scope, peer)
        return peer

    def _check_key_exchange(self, scope: Mapping[str, Any], peer: PeerIdentity) -> None:
        """The downgrade rule for a Sealwire caller: when both cards offer the hybrid
        group, a connection that negotiated a classical one is refused."""
        if self.post_quantum is PostQuantum.OFF or peer.card is None:
            return
        session = (scope.get("extensions", {}).get("tls") or {}).get(SESSION_KEY)
        if not isinstance(session, TlsSessionInfo) or session.post_quantum is not False:
            return
        if card_offers_hybrid(peer.card):
            raise TlsDowngradeError(
                f"agent {peer.agent_id} offers the hybrid group and negotiated {session.group}"
            )

    def _verify_caller(self, der: bytes, card_header: str | None) -> PeerIdentity:
        key = certificate_key(parse_certificate(der))
        agent_id = agent_id_for(key)
        if card_header is not None:
            card = verify_card(decode_json_header(card_header, field=CARD_HEADER))
            if card.identity.signing_key.public_bytes_raw() != key.public_bytes_raw():
                raise AuthenticationError("the client certificate is not the card's agent")
            self._binding.trust.check(card)
            return PeerIdentity(agent_id=agent_id, identity=card.identity, card=card)
        pinned = self._binding.trust.pinned(agent_id)
        if pinned is None:
            raise TrustError(f"agent {agent_id} is not pinned: send a card, or pin it")
        return PeerIdentity(agent_id=agent_id, identity=pinned)

    def response_headers(
        self, scope: Mapping[str, Any], headers: Mapping[str, str], peer: PeerIdentity
    ) -> Mapping[str, str]:
        """The channel binding for a caller that sent its negotiation (see ``_channel``)."""
        value = headers.get(NEGOTIATION_HEADER.lower())
        if value is None:
            return {}
        http = http_version(str(scope.get("http_version", "1.1")))
        client = fingerprint(_client_certificate(scope))
        server = self._presented(scope)
        key = (value, client, http, server)
        signature = self._signatures.get(key)
        if signature is None:
            negotiation = parse_negotiation_header(value)
            self._check_incoming(negotiation.chosen, negotiation.responder_offers)
            data = channel_binding_data(negotiation, server, client, http)
            signature = self._signatures.remember(key, b64url(self._binding.identity.sign(data)))
        return {CHANNEL_BINDING_HEADER: signature}

    def _presented(self, scope: Mapping[str, Any]) -> bytes:
        """SHA-256 of the certificate this connection got: the pyOpenSSL stack says which
        (with ``grpc``, the ECDSA leaf or ours); elsewhere we have only ours."""
        session = (scope.get("extensions", {}).get("tls") or {}).get(SESSION_KEY)
        if isinstance(session, TlsSessionInfo) and session.certificate is not None:
            return session.certificate
        return self.fingerprint

    def _check_incoming(self, chosen: str, responder_offers: tuple[str, ...]) -> None:
        """``Policy.check_incoming``'s rules: our offers as our card has them, ours chosen."""
        ours = tuple(o.uri for o in self._binding.card.offers)
        if responder_offers != ours:
            raise PolicyError("the peer's view of our offered bindings differs from our card")
        if chosen != self._uri:
            raise PolicyError(f"binding {chosen[:100]} is not the one serving here")

    # -- enrolment -----------------------------------------------------------------------

    async def enroll(
        self, scope: Mapping[str, Any], headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Any]:
        """Rule 4: add a client certificate as a trust anchor."""
        if not self._enroll:
            return 404, {"error": "enrolment is off"}
        card, der = _parse_enrolment(body)
        key = certificate_key(parse_certificate(der))
        if card.identity.signing_key.public_bytes_raw() != key.public_bytes_raw():
            raise AuthenticationError("the certificate's key is not the card's signing key")
        self._binding.trust.check(card)
        digest = fingerprint(der)
        if digest not in self._anchors:
            if len(self._anchors) >= MAX_ENROLLED:
                return 503, {"error": "too many enrolled certificates"}
            self.ssl.load_verify_locations(cadata=der)
            if self.pq_context is not None:
                add_anchor(self.pq_context, der)
            self._anchors.add(digest)
            self._binding.store.put(TLS_NAMESPACE, f"client/{card.agent_id}", der)
        return 200, {"enrolled": card.agent_id}


def _valid_at(certificate: x509.Certificate, at: datetime.datetime) -> bool:
    return certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc


def _parse_enrolment(body: bytes) -> tuple[VerifiedCard, bytes]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise DecodeError("not JSON", field="enrolment") from None
    if not isinstance(data, dict) or not isinstance(data.get("certificate"), str):
        raise DecodeError("expected {card, certificate}", field="enrolment")
    card = data.get("card")
    if not isinstance(card, dict):
        raise DecodeError("expected the signed card", field="enrolment.card")
    return verify_card(card), from_b64url(data["certificate"], field="enrolment.certificate")


def _client_certificate(scope: Mapping[str, Any]) -> bytes:
    tls = scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        raise AuthenticationError("a client certificate is required")
    try:
        return ssl.PEM_cert_to_DER_cert(chain[0])
    except ValueError:
        raise DecodeError("unreadable client certificate", field="tls.client_cert_chain") from None
