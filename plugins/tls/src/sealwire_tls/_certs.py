"""X.509 certificates made from agent identities (RFC 5280), and their key files.

An agent's TLS certificate carries its Ed25519 *signing* key (RFC 8410), so
the key a TLS handshake proves possession of is the key its signed card names:
the agent id is the fingerprint of the certificate's key.

* :func:`self_signed_certificate` - deterministic: the same identity and hosts
  always give the same DER (fixed validity, serial derived from the key, and
  Ed25519 signatures are deterministic, RFC 8032 §5.1.6).
* :func:`issue_certificate` - issued by an operator's CA (any key type the
  ``cryptography`` package signs with).
* :func:`issuer_certificate`, :func:`ecdsa_certificate` - the second server
  certificate, for clients without Ed25519 signatures (grpcio's BoringSSL): an
  ECDSA P-256 leaf issued by the agent's identity key, under the agent's issuing
  certificate (self-signed, Ed25519, a CA of path length 0);
  :func:`check_agent_issued` - a client's check of such a leaf against the
  agent it expects.
* :func:`key_files` - the PEM files Python's ``ssl`` needs, in a private
  (0700) temporary folder, removed as soon as they are loaded.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import ipaddress
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

from sealwire.errors import ConfigurationError, DecodeError, TrustError
from sealwire.identity import Identity, agent_id_for

__all__ = [
    "AGENT_URI_PREFIX",
    "DEFAULT_HOSTS",
    "MAX_CERTIFICATE_SIZE",
    "NOT_AFTER",
    "NOT_BEFORE",
    "agent_name",
    "certificate_agent_id",
    "certificate_key",
    "check_agent_issued",
    "ecdsa_certificate",
    "fingerprint",
    "issue_certificate",
    "issuer_certificate",
    "key_files",
    "load_ca",
    "load_certificates",
    "parse_certificate",
    "pem",
    "with_end_entity_extensions",
    "private_key_pem",
    "self_signed_certificate",
    "spki_sha256",
]

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
"""Names a certificate is valid for when none are configured (loopback)."""
AGENT_URI_PREFIX = "urn:sealwire:agent:"
"""The subjectAltName URI naming the agent: ``urn:sealwire:agent:<agent id>``."""
NOT_BEFORE = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
"""99991231235959Z: "no well-defined expiration date" (RFC 5280 §4.1.2.5). The
certificate lives as long as the identity; the card and the trust store decide."""
MAX_CERTIFICATE_SIZE = 16 * 1024
"""A certificate from a peer larger than this is refused before parsing."""


ECDSA_UNIT = "ECDSA"
"""The organizational unit naming an agent's ECDSA leaf (its subject differs from its
issuer's, so no verifier takes it for self-issued, RFC 5280 §6.1)."""


def _serial(public: bytes, label: bytes = b"sealwire-tls-serial") -> int:
    # Positive, at most 20 octets (RFC 5280 §4.1.2.2), unique per key and kind.
    return int.from_bytes(hashlib.sha256(label + public).digest()[:16]) | 1


def _names(hosts: Sequence[str], agent_id: str) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(AGENT_URI_PREFIX + agent_id)]
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _builder(
    identity: Identity,
    hosts: Sequence[str],
    validity: tuple[datetime.datetime, datetime.datetime] = (NOT_BEFORE, NOT_AFTER),
) -> x509.CertificateBuilder:
    public = identity.signing_key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(agent_name(identity.agent_id))
        .public_key(public)
        .serial_number(_serial(public.public_bytes_raw()))
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(_names(hosts, identity.agent_id), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    return with_end_entity_extensions(builder)


def with_end_entity_extensions(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    """``builder`` with what every agent certificate says: not a CA, signing only, for
    both ends of a connection (server and client authentication)."""
    return (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )


def self_signed_certificate(
    identity: Identity, hosts: Sequence[str] = DEFAULT_HOSTS
) -> x509.Certificate:
    """The agent's self-signed certificate: subject CN = agent id, its Ed25519 signing key."""
    return (
        _builder(identity, hosts)
        .issuer_name(agent_name(identity.agent_id))
        .sign(identity.signing_key, None)
    )


def issuer_certificate(identity: Identity) -> x509.Certificate:
    """The agent's issuing certificate: self-signed with its Ed25519 identity key, the same
    subject as :func:`self_signed_certificate`, deterministic as it is, and a CA of path
    length 0 allowed only to sign certificates (RFC 5280 §4.2.1.9, §4.2.1.3: a key that
    signs certificates must be certified as a CA, and verifiers such as BoringSSL check
    it). It issues the agent's ECDSA leaf and is the root a gRPC client trusts."""
    public = identity.signing_key.public_key()
    name = agent_name(identity.agent_id)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(_serial(public.public_bytes_raw(), b"sealwire-tls-issuer"))
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(identity.signing_key, None)
    )


def ecdsa_certificate(
    identity: Identity,
    key: ec.EllipticCurvePrivateKey,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    validity: tuple[datetime.datetime, datetime.datetime] = (NOT_BEFORE, NOT_AFTER),
) -> x509.Certificate:
    """The agent's ECDSA leaf: ``key``'s public half, the same names and end-entity
    extensions as the agent's certificate, issued by :func:`issuer_certificate` (signed
    with the identity key). Deterministic for the same identity, key and hosts."""
    public = key.public_key()
    raw = public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sealwire"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ECDSA_UNIT),
            x509.NameAttribute(NameOID.COMMON_NAME, identity.agent_id),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(agent_name(identity.agent_id))
        .public_key(public)
        .serial_number(_serial(raw, b"sealwire-tls-ecdsa"))
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(_names(hosts, identity.agent_id), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(identity.signing_key.public_key()),
            critical=False,
        )
    )
    return with_end_entity_extensions(builder).sign(identity.signing_key, None)


def check_agent_issued(
    certificate: x509.Certificate,
    agent_key: ed25519.Ed25519PublicKey,
    at: datetime.datetime | None = None,
) -> None:
    """Accept a server's ECDSA leaf only as the agent of ``agent_key`` issues it: a P-256
    key, issued under that agent's name and signed with that key (Ed25519), naming the
    agent in its subjectAltName, not a CA, valid at ``at`` (default: now).
    TrustError otherwise (an impostor, another agent's leaf, an expired one)."""
    agent_id = agent_id_for(agent_key)
    try:
        key = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise TrustError("the server's certificate has an unreadable key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise TrustError("the server's certificate is neither Ed25519 nor ECDSA P-256")
    if certificate.issuer != agent_name(agent_id):
        raise TrustError("the server's ECDSA certificate is not issued by the peer's agent")
    if certificate.signature_algorithm_oid != SignatureAlgorithmOID.ED25519:
        raise TrustError("the server's ECDSA certificate is not signed by an agent key")
    try:
        agent_key.verify(certificate.signature, certificate.tbs_certificate_bytes)
    except InvalidSignature:
        raise TrustError("the server's ECDSA certificate is not signed by the peer's key") from None
    now = at or datetime.datetime.now(datetime.UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise TrustError("the server's ECDSA certificate is outside its validity period")
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except (x509.ExtensionNotFound, ValueError):
        raise TrustError("the server's ECDSA certificate lacks its extensions") from None
    if constraints.value.ca:
        raise TrustError("the server's ECDSA certificate is a CA")
    uris = names.value.get_values_for_type(x509.UniformResourceIdentifier)
    if AGENT_URI_PREFIX + agent_id not in uris:
        raise TrustError("the server's ECDSA certificate names another agent")


def agent_name(agent_id: str) -> x509.Name:
    """The subject (and, self-signed, issuer) name of an agent's certificates."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sealwire"),
            x509.NameAttribute(NameOID.COMMON_NAME, agent_id),
        ]
    )


def issue_certificate(
    identity: Identity,
    ca_certificate: x509.Certificate,
    ca_key: object,
    hosts: Sequence[str] = DEFAULT_HOSTS,
) -> x509.Certificate:
    """The agent's certificate issued by an operator's CA (valid as long as the CA is)."""
    algorithm: hashes.SHA256 | None
    if isinstance(ca_key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        algorithm = None
    elif isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        algorithm = hashes.SHA256()
    else:
        raise ConfigurationError("the CA key must be Ed25519, Ed448, ECDSA or RSA")
    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    validity = (
        max(NOT_BEFORE, ca_certificate.not_valid_before_utc),
        min(NOT_AFTER, ca_certificate.not_valid_after_utc),
    )
    builder = (
        _builder(identity, hosts, validity)
        .issuer_name(ca_certificate.subject)
        .add_extension(authority, critical=False)
    )
    return builder.sign(ca_key, algorithm)


def parse_certificate(der: bytes, *, field: str = "certificate") -> x509.Certificate:
    """A peer's DER certificate (hostile input): DecodeError for anything malformed."""
    if len(der) > MAX_CERTIFICATE_SIZE:
        raise DecodeError("certificate too large", field=field)
    try:
        return x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion, UnsupportedAlgorithm):
        raise DecodeError("not a DER X.509 certificate", field=field) from None


def certificate_key(certificate: x509.Certificate) -> ed25519.Ed25519PublicKey:
    """The certificate's Ed25519 key; DecodeError when it holds another kind of key."""
    try:
        key = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise DecodeError(
            "unreadable public key", field="certificate.subjectPublicKeyInfo"
        ) from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise DecodeError("not an Ed25519 key", field="certificate.subjectPublicKeyInfo")
    return key


def certificate_agent_id(certificate: x509.Certificate) -> str:
    """The agent id the certificate's key is the signing key of."""
    return agent_id_for(certificate_key(certificate))


def fingerprint(der: bytes) -> bytes:
    """SHA-256 of the DER certificate (what curl and browsers show as its fingerprint)."""
    return hashlib.sha256(der).digest()


def spki_sha256(key: ed25519.Ed25519PublicKey) -> bytes:
    """SHA-256 of the SubjectPublicKeyInfo DER: the RFC 7469 pin (curl ``--pinnedpubkey``)."""
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def load_certificates(path: str | os.PathLike[str]) -> list[x509.Certificate]:
    """Every certificate of a PEM file; ConfigurationError if there is none or it is unreadable."""
    try:
        certificates = x509.load_pem_x509_certificates(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read certificates from {path}: {exc}") from None
    return certificates


def load_ca(
    cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str]
) -> tuple[x509.Certificate, object]:
    """An operator's CA: its certificate and (unencrypted PEM) private key."""
    certificate = load_certificates(cert_path)[0]
    try:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"cannot read the CA key {key_path}: {type(exc).__name__}"
        ) from None
    return certificate, key


def pem(certificates: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def private_key_pem(identity: Identity) -> bytes:
    """The signing key as unencrypted PKCS#8 PEM: only for :func:`key_files` and the CLI."""
    return identity.signing_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@contextlib.contextmanager
def key_files(identity: Identity, chain: Sequence[x509.Certificate]) -> Iterator[tuple[str, str]]:
    """(certificate chain file, key file) in a 0700 folder, both 0600; removed on exit.

    Python's ``ssl`` loads keys from files only; they exist for the moment it
    takes ``load_cert_chain`` to read them.
    """
    with tempfile.TemporaryDirectory(prefix="sealwire-tls-") as folder:
        os.chmod(folder, 0o700)
        cert_path = os.path.join(folder, "cert.pem")
        key_path = os.path.join(folder, "key.pem")
        for path, data in ((cert_path, pem(chain)), (key_path, private_key_pem(identity))):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
        yield cert_path, key_path
