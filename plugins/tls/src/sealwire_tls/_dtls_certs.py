"""DTLS certificates: an ECDSA P-256 key, issued by the agent's Ed25519 identity key.

The TLS binding's certificates carry the Ed25519 signing key itself. OpenSSL
does not offer EdDSA signatures in DTLS 1.2 (its signature-algorithm table
allows them from TLS 1.2 but not in DTLS: a DTLS 1.2 server with an Ed25519
key finds "no shared cipher"), so the DTLS certificate holds a fresh P-256
key that the identity key *signs*:

* subject and issuer ``O=Sealwire, CN=<agent id>``; subjectAltName
  ``urn:sealwire:agent:<agent id>``; the P-256 key; valid for
  :data:`DTLS_CERTIFICATE_LIFETIME` from issue (back-dated by :data:`CLOCK_SKEW`);
* signed with Ed25519 by the agent's signing key, the key its card names.

:func:`check_dtls_certificate` is the peer's side: the signature verifies
under the card's signing key, the names are the card's agent, the key is
P-256, the validity covers now. The DTLS handshake proves possession of the
P-256 key, so together: the peer holds a key the card's agent vouched for.
"""

from __future__ import annotations

import datetime
import os

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import SignatureAlgorithmOID

from sealwire.identity import Identity, PublicIdentity
from sealwire_tls._certs import (
    AGENT_URI_PREFIX,
    MAX_CERTIFICATE_SIZE,
    agent_name,
    with_end_entity_extensions,
)
from sealwire_tls._dtls import DtlsAuthenticationError

__all__ = [
    "CLOCK_SKEW",
    "DTLS_CERTIFICATE_LIFETIME",
    "DtlsCertificateError",
    "check_dtls_certificate",
    "dtls_certificate",
]

DTLS_CERTIFICATE_LIFETIME = datetime.timedelta(days=7)
"""The certificate (and its P-256 key, made per process) is short-lived: a stolen key is
useful for a week at most. The binding issues a new one when half of it has passed."""
CLOCK_SKEW = datetime.timedelta(hours=1)
"""Clocks of two agents may differ by this much (validity is back-dated and checked with it)."""
SERIAL_BYTES = 16
"""Random serial, positive, well under RFC 5280's 20 octets."""


class DtlsCertificateError(DtlsAuthenticationError):
    """The peer's DTLS certificate does not belong to the agent of its card."""


def dtls_certificate(
    identity: Identity, key: ec.EllipticCurvePrivateKey, now: datetime.datetime
) -> x509.Certificate:
    """``key``'s certificate, issued by ``identity``'s signing key (layout in the docstring)."""
    public = key.public_key()
    name = agent_name(identity.agent_id)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(int.from_bytes(os.urandom(SERIAL_BYTES)) >> 1 | 1)
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + DTLS_CERTIFICATE_LIFETIME)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(AGENT_URI_PREFIX + identity.agent_id)]
            ),
            critical=False,
        )
    )
    return with_end_entity_extensions(builder).sign(identity.signing_key, None)


def check_dtls_certificate(
    certificate: x509.Certificate, identity: PublicIdentity, now: datetime.datetime
) -> None:
    """DtlsCertificateError unless ``certificate`` is a DTLS certificate of ``identity``."""
    agent_id = identity.agent_id
    if len(certificate.public_bytes(Encoding.DER)) > MAX_CERTIFICATE_SIZE:
        raise DtlsCertificateError("the peer's certificate is too large")
    if certificate.signature_algorithm_oid != SignatureAlgorithmOID.ED25519:
        raise DtlsCertificateError("the peer's certificate is not signed by an agent key")
    try:
        identity.signing_key.verify(certificate.signature, certificate.tbs_certificate_bytes)
    except InvalidSignature:
        raise DtlsCertificateError(
            f"the peer's certificate is not issued by agent {agent_id}'s card key"
        ) from None
    if certificate.subject != agent_name(agent_id) or certificate.issuer != agent_name(agent_id):
        raise DtlsCertificateError("the peer's certificate names another agent")
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        key = certificate.public_key()
    except (x509.ExtensionNotFound, ValueError, UnsupportedAlgorithm):
        raise DtlsCertificateError("the peer's certificate lacks its agent name or key") from None
    uris = names.value.get_values_for_type(x509.UniformResourceIdentifier)
    if uris != [AGENT_URI_PREFIX + agent_id]:
        raise DtlsCertificateError("the peer's certificate names another agent")
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise DtlsCertificateError("the peer's certificate key is not P-256")
    if not (
        certificate.not_valid_before_utc - CLOCK_SKEW
        <= now
        <= certificate.not_valid_after_utc + CLOCK_SKEW
    ):
        raise DtlsCertificateError("the peer's certificate is expired or not yet valid")
