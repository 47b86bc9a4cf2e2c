"""The ``grpc`` option of the TLS binding: A2A's gRPC binding (spec §10) on its endpoint.

grpcio's TLS (BoringSSL) offers no Ed25519 signature algorithm, so it cannot
accept the agent's own certificate. The endpoint then holds a second one for
such clients: an ECDSA P-256 key, generated once and kept in the agent's store
(namespace ``tls``, key :data:`GRPC_KEY`, PKCS#8 DER: the store seals values at
rest), in a leaf issued by the agent's identity key under its issuing
certificate (:func:`~sealwire_tls._certs.issuer_certificate`). That issuing
certificate is the root a gRPC client trusts: :func:`grpc_root_pem`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sealwire.errors import ConfigurationError
from sealwire.identity import Identity
from sealwire.store import StateStore
from sealwire.transport.http import grpc_available
from sealwire_tls._certs import DEFAULT_HOSTS, ecdsa_certificate, issuer_certificate, pem

__all__ = ["GRPC_KEY", "grpc_chain", "grpc_option", "grpc_root_pem"]

TLS_NAMESPACE = "tls"
GRPC_KEY = "grpc/key"
"""Store key (namespace ``tls``) of the endpoint's ECDSA P-256 private key."""


def grpc_option(options: Mapping[str, Any]) -> bool:
    """``grpc`` as configured (default false); ConfigurationError when it cannot be served."""
    value = options.get("grpc", False)
    if not isinstance(value, bool):
        raise ConfigurationError("bindings.tls.grpc must be true or false")
    if not value:
        return False
    if not grpc_available():
        raise ConfigurationError(
            "bindings.tls: grpc = true needs a2a-sdk's protos: install sealwire-tls[grpc]"
        )
    if options.get("resumption", False):
        raise ConfigurationError(
            "bindings.tls: grpc is served on pyOpenSSL (two certificates need the order of "
            "signature algorithms set, which Python's ssl cannot), and resumption is for "
            "Python's ssl"
        )
    return True


def grpc_key(store: StateStore) -> ec.EllipticCurvePrivateKey:
    """The endpoint's ECDSA P-256 key from the store, made and stored the first time."""
    stored = store.get(TLS_NAMESPACE, GRPC_KEY)
    if stored is not None:
        try:
            key = serialization.load_der_private_key(stored, password=None)
        except (ValueError, TypeError):
            raise ConfigurationError("the stored gRPC key of bindings.tls is unreadable") from None
        if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
            return key
        raise ConfigurationError("the stored gRPC key of bindings.tls is not ECDSA P-256")
    key = ec.generate_private_key(ec.SECP256R1())
    store.put(
        TLS_NAMESPACE,
        GRPC_KEY,
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return key


def grpc_chain(
    identity: Identity, store: StateStore, hosts: Sequence[str] = DEFAULT_HOSTS
) -> tuple[list[x509.Certificate], ec.EllipticCurvePrivateKey]:
    """([ECDSA leaf, the agent's issuing certificate], the leaf's key)."""
    key = grpc_key(store)
    return [ecdsa_certificate(identity, key, hosts), issuer_certificate(identity)], key


def grpc_root_pem(identity: Identity) -> bytes:
    """The PEM root a gRPC client verifies the endpoint with (grpcio's
    ``ssl_channel_credentials(root_certificates=...)``): the agent's issuing certificate.
    Public: it holds the agent's public key only."""
    return pem([issuer_certificate(identity)])
