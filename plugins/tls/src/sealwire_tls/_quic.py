"""What the HTTP/3 side needs from aioquic, and the only places it reaches past aioquic's API.

aioquic (the QUIC stack) has no public switch for a server to request a client
certificate, nor a public accessor for the certificate a peer presented
(aiortc/aioquic#541, #586). Its TLS engine has both, privately:
``tls.Context._request_client_certificate`` ("for test purposes only") makes
the server send a CertificateRequest and check the client's CertificateVerify
(proof of possession of the key) but not its chain; ``tls.Context._peer_certificate``
holds the leaf a peer presented. Every use of them is in the two functions
below (:func:`request_client_certificate`, :func:`peer_certificate_der`), and
:func:`check_private_api` fails loudly - at serve time and in a test - when a
new aioquic no longer has them. The chain is then checked by us, after the
handshake and before any request (``TlsServer.admits``, the client's pin).

Import this module only when HTTP/3 is wanted: it imports aioquic.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence

from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.tls import Context as TlsContext
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding

from sealwire.errors import InternalError

__all__ = [
    "MAX_QUIC_DATA",
    "check_private_api",
    "peer_certificate_der",
    "quic_configuration",
    "request_client_certificate",
]

MAX_QUIC_DATA = 4 * 1024 * 1024
"""QUIC flow-control window per connection and per stream (RFC 9000 §4): aioquic's
1 MiB default throttles a 16 MiB body to one window per round trip."""


def check_private_api() -> None:
    """InternalError when aioquic no longer has the private members this module uses."""
    context = TlsContext(is_client=False)
    checks = {
        "QuicConnection._initialize": callable(getattr(QuicConnection, "_initialize", None)),
        "tls.Context._request_client_certificate": isinstance(
            getattr(context, "_request_client_certificate", None), bool
        ),
        "tls.Context._peer_certificate": hasattr(context, "_peer_certificate"),
    }
    missing = [name for name, present in checks.items() if not present]
    if missing:
        raise InternalError(
            f"aioquic changed its private API ({', '.join(missing)}): HTTP/3 cannot "
            "authenticate clients; pin aioquic to a version this release supports"
        )


def request_client_certificate(quic: QuicConnection) -> None:
    """PRIVATE aioquic API: make this server connection send a TLS CertificateRequest.

    aioquic builds the connection's ``tls.Context`` in ``_initialize`` on the first
    datagram; we wrap that method on this instance (before any datagram) to set the
    context's ``_request_client_certificate`` right after it exists. A client may
    still answer with no certificate (RFC 8446 §4.4.2.4): the caller decides.
    """
    initialize = quic._initialize

    def initialize_and_request(peer_cid: bytes) -> None:
        initialize(peer_cid)
        quic.tls._request_client_certificate = True

    quic._initialize = initialize_and_request  # type: ignore[method-assign]


def peer_certificate_der(quic: QuicConnection) -> bytes | None:
    """PRIVATE aioquic API: the leaf certificate (DER) the peer presented, if any.

    aioquic checked the peer's CertificateVerify with this certificate's key, so
    the peer holds the key; whether the certificate is trusted is ours to decide.
    """
    certificate: x509.Certificate | None = getattr(quic.tls, "_peer_certificate", None)
    return None if certificate is None else certificate.public_bytes(Encoding.DER)


def quic_configuration(
    chain: Sequence[x509.Certificate],
    key: ed25519.Ed25519PrivateKey | None,
    *,
    is_client: bool,
    server_name: str | None = None,
) -> QuicConfiguration:
    """TLS 1.3 (inherent to QUIC, RFC 9001 §4.2), ALPN ``h3``, our certificate and key objects.

    aioquic's own certificate verification is off on the client
    (``CERT_NONE``): it cannot anchor a self-signed Ed25519 leaf without a host
    name, so the client compares the server's leaf with its pin itself.
    """
    configuration = QuicConfiguration(
        alpn_protocols=H3_ALPN,
        is_client=is_client,
        max_data=MAX_QUIC_DATA,
        max_stream_data=MAX_QUIC_DATA,
        server_name=server_name,
        verify_mode=ssl.CERT_NONE if is_client else None,
    )
    if chain and key is not None:
        configuration.certificate = chain[0]
        configuration.certificate_chain = list(chain[1:])
        configuration.private_key = key
    return configuration
