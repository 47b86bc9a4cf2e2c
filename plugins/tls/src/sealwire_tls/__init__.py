"""A2A JSON-RPC over HTTPS for Sealwire: mutual TLS 1.3 with certificates from identities.

* :class:`TlsBinding` - ``urn:sealwire:binding:tls:1``: serves the A2A
  ``JSONRPC`` binding on core's HTTPS listener (HTTP/1.1 and HTTP/2) and, with
  ``http3 = true``, over QUIC (HTTP/3, :mod:`sealwire_tls.http3`, the ``http3``
  extra); calls peers with ``httpx``; client certificates required; the
  policy's decision bound to the session by a signed channel binding
  (:mod:`._channel`).
* :func:`session_info` - what a channel's TLS connection negotiated (version,
  suite, key exchange group); ``post_quantum = "prefer" | "require"`` serves and
  calls over pyOpenSSL with X25519MLKEM768 (README, "Post-quantum TLS").
* :func:`self_signed_certificate`, :func:`issue_certificate` - X.509
  certificates carrying an agent's Ed25519 signing key.
* ``grpc = true``: A2A's gRPC binding on the same endpoint, with a second (ECDSA
  P-256) certificate issued by the agent for clients without Ed25519;
  :func:`grpc_root_pem` is the root such a client verifies it with,
  :func:`check_agent_issued` how a Sealwire client accepts that leaf.
"""

from __future__ import annotations

from sealwire_tls._binding import TlsBinding, agent_certificate_chain
from sealwire_tls._certs import (
    AGENT_URI_PREFIX,
    DEFAULT_HOSTS,
    certificate_agent_id,
    certificate_key,
    check_agent_issued,
    ecdsa_certificate,
    fingerprint,
    issue_certificate,
    issuer_certificate,
    key_files,
    load_ca,
    parse_certificate,
    pem,
    self_signed_certificate,
    spki_sha256,
)
from sealwire_tls._channel import (
    CARD_HEADER,
    CHANNEL_BINDING_HEADER,
    NEGOTIATION_HEADER,
    channel_binding_data,
)
from sealwire_tls._client import (
    TlsChannel,
    TlsClient,
    check_server_certificate,
    client_context,
    session_info,
)
from sealwire_tls._grpc import grpc_root_pem
from sealwire_tls._pq import HYBRID_GROUP, PostQuantum, TlsDowngradeError, hybrid_available
from sealwire_tls._pq_session import TlsSessionInfo
from sealwire_tls._server import ENROLL_PATH, MAX_ENROLLED, TlsServer, server_context

__all__ = [
    "AGENT_URI_PREFIX",
    "CARD_HEADER",
    "CHANNEL_BINDING_HEADER",
    "DEFAULT_HOSTS",
    "HYBRID_GROUP",
    "ENROLL_PATH",
    "MAX_ENROLLED",
    "NEGOTIATION_HEADER",
    "PostQuantum",
    "TlsBinding",
    "TlsChannel",
    "TlsClient",
    "TlsDowngradeError",
    "TlsSessionInfo",
    "TlsServer",
    "agent_certificate_chain",
    "certificate_agent_id",
    "certificate_key",
    "channel_binding_data",
    "check_agent_issued",
    "check_server_certificate",
    "client_context",
    "ecdsa_certificate",
    "fingerprint",
    "grpc_root_pem",
    "hybrid_available",
    "issue_certificate",
    "issuer_certificate",
    "key_files",
    "load_ca",
    "parse_certificate",
    "pem",
    "self_signed_certificate",
    "server_context",
    "session_info",
    "spki_sha256",
]
