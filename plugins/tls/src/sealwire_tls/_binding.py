"""``urn:sealwire:binding:tls:1``: the A2A JSONRPC binding over HTTPS with mutual TLS 1.3.

A binding with a carrier of its own: :meth:`TlsBinding.serve` runs the A2A
HTTP endpoint on core's HTTPS listener for an ``https://`` listen URL, and
:meth:`TlsBinding.connect` returns an HTTP channel to a peer's ``https://``
interface; the stream handshake methods do not apply. README.md defines the
binding (A2A v1.0 §12).

Options (``[bindings.tls]``): ``url`` (the interface URL the card names),
``hosts`` (names in the certificate), ``ca_certificate`` and ``ca_key`` (PEM
files: our certificate is issued by this CA, and it anchors clients and
servers), ``client_certificates`` (PEM files of external clients allowed),
``enroll`` (default true), ``resumption`` (default false: no TLS session
tickets; true: one per handshake, resumption with (EC)DHE only), ``http2``
(default true), ``http3`` (default false:
also serve HTTP/3 over QUIC on the same port, UDP, and call peers offering it;
needs the ``http3`` extra, aioquic), ``timeout`` (seconds), ``post_quantum``
(default false: Python's ``ssl``; ``"prefer"`` (or true): serve and call on
pyOpenSSL with the OpenSSL of cryptography's wheel, X25519MLKEM768 first;
``"require"``: that group alone - README, "Post-quantum TLS"), ``grpc`` (default
false: also serve A2A's gRPC binding, with a second, ECDSA, certificate for clients
without Ed25519, on pyOpenSSL - README, "gRPC"; needs ``sealwire[a2a]``).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from sealwire.binding import (
    BindingContext,
    BindingInfo,
    CarrierBinding,
    Dispatcher,
    Negotiation,
    Party,
    Property,
    SecureChannel,
    SessionTerms,
    Shape,
)
from sealwire.errors import ConfigurationError
from sealwire.identity import Identity, PublicIdentity, VerifiedCard
from sealwire.store import require_private_file
from sealwire.transport import Listener
from sealwire.transport.http import A2AHttpApp, serve_http
from sealwire_tls._certs import (
    DEFAULT_HOSTS,
    issue_certificate,
    load_ca,
    self_signed_certificate,
    spki_sha256,
)
from sealwire_tls._channel import b64url
from sealwire_tls._client import DEFAULT_TIMEOUT, TlsClient
from sealwire_tls._grpc import grpc_chain, grpc_option
from sealwire_tls._pq import HYBRID_GROUP, PostQuantum, post_quantum_option
from sealwire_tls._pq_server import serve_pq_http
from sealwire_tls._server import ENROLL_PATH, TlsServer

__all__ = ["TlsBinding", "agent_certificate_chain"]


def http3_module() -> ModuleType:
    """``sealwire_tls._http3`` (it imports aioquic); ConfigurationError naming the extra."""
    try:
        from sealwire_tls import _http3
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in ("aioquic", "pylsqpack"):
            raise
        raise ConfigurationError(
            "bindings.tls: http3 = true needs aioquic: install sealwire-tls[http3]"
        ) from None
    return _http3


def agent_certificate_chain(
    identity: Identity, options: Mapping[str, Any]
) -> tuple[list[x509.Certificate], x509.Certificate | None]:
    """(our chain, the operator's CA or None) as the options say."""
    hosts = tuple(options.get("hosts", DEFAULT_HOSTS))
    if "ca_certificate" not in options:
        return [self_signed_certificate(identity, hosts)], None
    if "ca_key" not in options:
        raise ConfigurationError("bindings.tls: ca_certificate needs ca_key")
    ca, ca_key = load_ca(options["ca_certificate"], options["ca_key"])
    return [issue_certificate(identity, ca, ca_key, hosts), ca], ca


class TlsBinding(CarrierBinding):
    """Mutual TLS 1.3 with certificates made from agent identities; A2A JSON-RPC over HTTPS."""

    info = BindingInfo(
        name="tls",
        version=importlib.metadata.version("sealwire-tls"),
        major=1,
        shape=Shape.SESSION,
        properties=frozenset(
            {Property.MUTUAL_AUTH, Property.FORWARD_SECRECY, Property.HTTP_INTEROP}
        ),
        schemes=frozenset({"https"}),
        description="A2A JSON-RPC over HTTPS (HTTP/1.1, HTTP/2; HTTP/3 optional), mutual TLS 1.3",
    )
    option_names = frozenset(
        {
            "url",
            "hosts",
            "ca_certificate",
            "ca_key",
            "client_certificates",
            "enroll",
            "resumption",
            "http2",
            "http3",
            "timeout",
            "post_quantum",
            "grpc",
        }
    )

    @classmethod
    def check_options(cls, options: Mapping[str, object]) -> None:
        """Known keys; flags, lists of strings, a positive timeout, a post-quantum mode
        this OpenSSL can serve; the CA key file private to its owner (``chmod 600``)."""
        super().check_options(options)
        where = f"bindings.{cls.info.name}"
        for name in ("enroll", "resumption", "http2", "http3"):
            if name in options and not isinstance(options[name], bool):
                raise ConfigurationError(f"{where}.{name} must be true or false")
        for name in ("hosts", "client_certificates"):
            value = options.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigurationError(f"{where}.{name} must be a list of strings")
        for name in ("url", "ca_certificate", "ca_key"):
            if name in options and not isinstance(options[name], str):
                raise ConfigurationError(f"{where}.{name} must be a string")
        if ("ca_certificate" in options) != ("ca_key" in options):
            raise ConfigurationError(f"{where}: ca_certificate and ca_key go together")
        timeout = options.get("timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigurationError(f"{where}.timeout must be a positive number of seconds")
        post_quantum_option(options.get("post_quantum"))
        grpc_option(options)  # a flag; a2a-sdk's protos installed; not with resumption
        ca_key = options.get("ca_key")
        if isinstance(ca_key, str):
            require_private_file(Path(ca_key), "the TLS CA key")

    def __init__(self, context: BindingContext) -> None:
        super().__init__(context)
        options = context.options
        self._chain, self._ca = agent_certificate_chain(context.identity, options)
        self._http3 = bool(options.get("http3", False))
        self._pq = post_quantum_option(options.get("post_quantum"))
        if self._pq is not PostQuantum.OFF and self._http3:
            raise ConfigurationError(
                f"bindings.tls: post_quantum and http3 exclude each other (aioquic has no "
                f"{HYBRID_GROUP}: HTTP/3 calls would be classical)"
            )
        if self._pq is not PostQuantum.OFF and options.get("resumption", False):
            raise ConfigurationError(
                "bindings.tls: resumption is for Python's ssl; post_quantum sends no tickets "
                "that Sealwire clients use"
            )
        if self._http3:
            http3_module()  # fail now, not at the first call, when aioquic is missing
        self._client = TlsClient(
            lambda: self.context,
            self._chain,
            ca=self._ca,
            http2=bool(options.get("http2", True)),
            http3=self._http3,
            timeout=float(options.get("timeout", DEFAULT_TIMEOUT)),
            post_quantum=self._pq,
        )
        self._enroll = bool(options.get("enroll", True))
        self._resumption = bool(options.get("resumption", False))
        self._grpc: tuple[list[x509.Certificate], ec.EllipticCurvePrivateKey] | None = None
        if grpc_option(options):
            hosts = tuple(options.get("hosts", DEFAULT_HOSTS))
            self._grpc = grpc_chain(context.identity, context.store, hosts)
        self._servers: list[TlsServer] = []

    @property
    def certificate(self) -> x509.Certificate:
        """This agent's TLS certificate."""
        return self._chain[0]

    @classmethod
    def card_parameters(
        cls, identity: PublicIdentity, options: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """The certificate's key is the card's signing key; its RFC 7469 pin; enrolment;
        ``http3: true`` when HTTP/3 is served (peers need no first TCP request to know)."""
        params: dict[str, Any] = {
            "certificateKey": "signingKey",
            "spkiSha256": b64url(spki_sha256(identity.signing_key)),
            "enroll": bool(options.get("enroll", True)),
            "enrollPath": ENROLL_PATH,
        }
        if options.get("http3", False):
            params["http3"] = True
        mode = post_quantum_option(options.get("post_quantum"))
        if mode is not PostQuantum.OFF:
            # The groups this server accepts, preferred first: a peer that sees the hybrid
            # here and negotiates a classical one is refused (a downgrade).
            params["keyExchange"] = list(mode.groups)
        return params

    @classmethod
    def session_terms(cls, local: Party, peer: Party | None) -> SessionTerms:
        """TLS 1.3 with the static properties, plus ``post_quantum`` when our stack offers
        X25519MLKEM768 and the peer's card lists it (the downgrade rule then refuses any
        classical connection); with no peer, what our configuration can give."""
        mode = post_quantum_option(local.options.get("post_quantum"))
        ours = mode is not PostQuantum.OFF or HYBRID_GROUP in _groups(local.params)
        theirs = peer is None or HYBRID_GROUP in _groups(peer.params)
        if not (ours and theirs):
            return SessionTerms(properties=cls.info.properties, protocol="TLS 1.3")
        return SessionTerms(
            properties=cls.info.properties | {Property.POST_QUANTUM},
            protocol="TLS 1.3",
            suite=HYBRID_GROUP,
        )

    @property
    def servers(self) -> tuple[TlsServer, ...]:
        """The HTTPS servers this binding runs (one per ``https://`` listen URL)."""
        return tuple(self._servers)

    async def serve(self, url: str, dispatch: Dispatcher) -> Listener:
        """Serve A2A (JSON-RPC and HTTP+JSON) over HTTPS at an ``https://`` URL."""
        parts = urlsplit(url)
        server = TlsServer(
            lambda: self.context, self._chain, binding_uri=self.info.uri, ca=self._ca,
            enroll=self._enroll, resumption=self._resumption, post_quantum=self._pq,
            grpc=self._grpc,
        )  # fmt: skip
        self._servers.append(server)
        app = A2AHttpApp(
            dispatch,
            server.card,
            server.identify,
            path=parts.path or "/",
            routes={("POST", ENROLL_PATH): server.enroll},
            response_headers=server.response_headers,
            rest=True,
            grpc=self._grpc is not None,
        )
        if not self._http3:
            return await self._serve_tcp(app, url, server)
        return await self._serve_both(app, url, server)

    async def _serve_tcp(self, app: Any, url: str, server: TlsServer) -> Listener:
        """HTTPS on pyOpenSSL when ``post_quantum`` or ``grpc`` needs it, else Python's ssl."""
        if server.pq_context is not None:
            context = server.pq_context
            pq: Listener = await serve_pq_http(app, url, lambda: context, mode=self._pq)
            return pq
        listener: Listener = await serve_http(app, url, ssl=server.ssl)
        return listener

    async def _serve_both(self, app: A2AHttpApp, url: str, server: TlsServer) -> Listener:
        """TCP first (port 0: a free one), then UDP on the port TCP got; Alt-Svc on TCP."""
        http3 = http3_module()
        alt = http3.AltSvc(app)
        tcp = await self._serve_tcp(alt, url, server)
        parts = urlsplit(tcp.url)
        port = parts.port or 443
        try:
            udp = await http3.serve_http3(
                app, parts.hostname or "127.0.0.1", port, chain=self._chain,
                key=self.context.identity.signing_key,
                admit=lambda der: server.enroll_on if der is None else server.admits(der),
            )  # fmt: skip
        except BaseException:
            await tcp.close()
            raise
        alt.value = http3.alt_svc(port)
        dual: Listener = http3.DualListener(tcp, udp)
        return dual

    async def connect(
        self, url: str, peer: VerifiedCard, negotiation: Negotiation
    ) -> SecureChannel:
        """A channel of frames to the peer's HTTPS endpoint."""
        return await self._client.open(url, peer, negotiation)


def _groups(params: Mapping[str, Any]) -> list[Any]:
    """The key-exchange groups a card's ``tls`` parameters list (none: classical)."""
    groups = params.get("keyExchange")
    return groups if isinstance(groups, list) else []
