"""DTLS errors and the version table (:data:`VERSIONS`): see :mod:`._dtls`."""

from __future__ import annotations

import attrs

from sealwire.errors import (
    AuthenticationError,
    ConfigurationError,
    DecodeError,
    RemoteProtocolError,
    StateError,
)

# -- errors -------------------------------------------------------------------------------


class DtlsDecodeError(DecodeError):
    """A datagram, record or fragment is malformed or over a bound."""


class DtlsFragmentError(DtlsDecodeError):
    """A binding-level fragment is malformed, inconsistent or over a bound."""


class DtlsAuthenticationError(AuthenticationError):
    """A record did not authenticate, or the channel binding differs."""


class DtlsReplayError(RemoteProtocolError):
    """A record already received (or older than the replay window)."""


class DtlsEpochError(RemoteProtocolError):
    """A record of an epoch this session does not have."""


class DtlsHandshakeError(RemoteProtocolError):
    """The DTLS handshake failed (an alert, a bad message, or no answer in time)."""


class DtlsStateError(StateError):
    """The engine cannot do this now (closed, handshake not finished, too large)."""


class DtlsConfigurationError(ConfigurationError):
    """A DTLS option asks for what this stack cannot do."""


# -- versions -----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class DtlsVersion:
    """One DTLS version as the engine runs it: the switch DTLS 1.3 will flip.

    ``openssl`` is the value for ``SSL_CTX_set_{min,max}_proto_version``;
    ``ciphers`` the OpenSSL cipher list (AEAD with ECDHE only); ``blocked_by``
    says why an unavailable version cannot be used here.
    """

    name: str
    openssl: int
    wire: int
    ciphers: bytes
    available: bool
    blocked_by: str = ""


DTLS_1_2 = DtlsVersion(
    name="1.2",
    openssl=0xFEFD,
    wire=0xFEFD,
    ciphers=b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:"
    b"ECDHE-ECDSA-AES256-GCM-SHA384",
    available=True,
)
DTLS_1_3 = DtlsVersion(
    name="1.3",
    openssl=0xFEFC,
    wire=0xFEFD,  # RFC 9147 keeps {254, 253} in the legacy record version
    ciphers=b"",
    available=False,
    blocked_by=(
        "no DTLS 1.3 (RFC 9147) stack installs from the registries: the OpenSSL in "
        "cryptography's wheel and Debian's OpenSSL refuse a DTLS 1.3 maximum version, "
        "Debian's wolfSSL is built without it"
    ),
)
VERSIONS: dict[str, DtlsVersion] = {v.name: v for v in (DTLS_1_3, DTLS_1_2)}
"""Every version the binding knows, newest first."""
DTLS_1_0_WIRE = 0xFEFF
"""The record version of a ClientHello and HelloVerifyRequest (RFC 6347 §4.2.1)."""


def dtls_version(name: str) -> DtlsVersion:
    """The version called ``name``; DtlsConfigurationError when unknown or unavailable."""
    version = VERSIONS.get(name)
    if version is None:
        raise DtlsConfigurationError(f"unknown DTLS version {name!r} (known: {sorted(VERSIONS)})")
    if not version.available:
        raise DtlsConfigurationError(f"DTLS {name} is not available: {version.blocked_by}")
    return version
