"""What a post-quantum TLS connection negotiated: :class:`TlsSessionInfo` (version,
suite, group, ALPN, stack), read from pyOpenSSL (:class:`SslObject`, the carrier's
``ssl_object``) or, without the group, from Python's ``ssl``; and :func:`check_group`,
the downgrade rule applied to it (:mod:`._pq` docstring)."""

from __future__ import annotations

import hashlib
import logging
import ssl

import attrs
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from sealwire_tls._pq import (
    HYBRID_GROUP,
    PQ_GROUPS,
    WHEEL_OPENSSL,
    PostQuantum,
    TlsDowngradeError,
)

__all__ = [
    "PYOPENSSL_STACK",
    "STDLIB_STACK",
    "SslObject",
    "TlsSessionInfo",
    "check_group",
    "info_from_ssl_object",
    "info_of",
]

log = logging.getLogger(__name__)


@attrs.frozen
class TlsSessionInfo:
    """What one TLS connection negotiated; ``group`` is None where the stack cannot say
    (Python 3.11's ``ssl``, aioquic)."""

    stack: str
    version: str | None
    cipher: str | None
    group: str | None
    alpn: str | None = None
    certificate: bytes | None = None
    """SHA-256 of the DER certificate this end presented (a server with two certificates
    says which one the client got); None where the stack cannot say."""

    @property
    def post_quantum(self) -> bool | None:
        """True when the key exchange is post-quantum; None when the group is unknown."""
        if self.group is None:
            return None
        return self.group.lower() in {g.lower() for g in PQ_GROUPS}

    def describe(self) -> str:
        """One line for logs and ``--verbose``: no secrets, only names."""
        group = self.group or "group not reported by this stack"
        pq = {True: "post-quantum", False: "classical", None: "unknown"}[self.post_quantum]
        return (
            f"{self.version or '?'} {self.cipher or '?'}, key exchange {group} ({pq}), "
            f"ALPN {self.alpn or '-'}, {self.stack}"
        )


PYOPENSSL_STACK = f"pyOpenSSL on {WHEEL_OPENSSL}"
STDLIB_STACK = f"Python ssl on {ssl.OPENSSL_VERSION}"


def info_of(connection: SSL.Connection) -> TlsSessionInfo:
    alpn = connection.get_alpn_proto_negotiated()
    own = connection.get_certificate(as_cryptography=True)
    presented = None if own is None else hashlib.sha256(own.public_bytes(Encoding.DER)).digest()
    return TlsSessionInfo(
        stack=PYOPENSSL_STACK,
        version=connection.get_protocol_version_name(),
        cipher=connection.get_cipher_name(),
        group=connection.get_group_name(),
        alpn=alpn.decode("ascii", "replace") if alpn else None,
        certificate=presented,
    )


def info_from_ssl_object(ssl_object: object) -> TlsSessionInfo | None:
    """The session of an ``ssl_object`` as asyncio, httpcore or :class:`TlsStream` give it."""
    if isinstance(ssl_object, SslObject):
        return ssl_object.info
    if isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        cipher = ssl_object.cipher()
        # Python 3.11's ssl has no SSL_get0_group_name; a later ssl may offer group().
        group = getattr(ssl_object, "group", None)
        return TlsSessionInfo(
            stack=STDLIB_STACK,
            version=ssl_object.version(),
            cipher=cipher[0] if cipher else None,
            group=group() if callable(group) else None,
            alpn=ssl_object.selected_alpn_protocol(),
        )
    return None


class SslObject:
    """What asyncio's ``ssl_object`` offers that httpcore reads, for one
    pyOpenSSL connection; ``info`` adds the negotiated group."""

    def __init__(self, connection: SSL.Connection) -> None:
        self._connection = connection
        self.info = info_of(connection)

    def selected_alpn_protocol(self) -> str | None:
        return self.info.alpn

    def version(self) -> str | None:
        return self.info.version

    def cipher(self) -> tuple[str, str, int] | None:
        if self.info.cipher is None:
            return None
        return (self.info.cipher, self.info.version or "", self._connection.get_cipher_bits() or 0)

    def group(self) -> str | None:
        return self.info.group

    def getpeercert(self, binary_form: bool = False) -> bytes | None:
        """The peer's leaf, DER (only ``binary_form``: nothing reads the dict form here)."""
        if not binary_form:
            raise ValueError("only the DER form of the peer certificate is offered")
        certificate = self._connection.get_peer_certificate(as_cryptography=True)
        if certificate is None:
            return None
        return certificate.public_bytes(Encoding.DER)


def check_group(info: TlsSessionInfo, mode: PostQuantum, *, peer_offers_hybrid: bool) -> None:
    """The downgrade rule (module docstring); logs the group at debug either way."""
    log.debug("TLS session: %s", info.describe())
    if mode is PostQuantum.OFF or info.post_quantum:
        return
    if mode is PostQuantum.REQUIRE:
        raise TlsDowngradeError(
            f"post-quantum key exchange required, the peer negotiated {info.group or 'unknown'}"
        )
    if peer_offers_hybrid:
        raise TlsDowngradeError(
            f"both ends offer {HYBRID_GROUP}, the peer negotiated {info.group or 'unknown'}"
        )
