"""Post-quantum TLS 1.3 (X25519MLKEM768) on the OpenSSL inside ``cryptography``'s wheel.

Python's ``ssl`` links the system's OpenSSL (3.0 here: no ML-KEM group, and
Python 3.11 can neither set a groups list nor say which group a connection
negotiated). ``cryptography``'s wheel carries its own OpenSSL (4.0 here),
which has the hybrid group X25519MLKEM768 (draft-ietf-tls-ecdhe-mlkem);
pyOpenSSL drives that OpenSSL, as the DTLS engine (:mod:`._dtls`) already does.

This module is the shared piece of the ``post_quantum`` option (what a connection
negotiated is in :mod:`._pq_session`, the carrier in :mod:`._pq_stream`):

* :func:`tls_context` - a pyOpenSSL TLS 1.3 context: our certificate, the
  peer's certificates verified against the given anchors, ALPN, and the groups
  list (:data:`PREFERRED_GROUPS`, the hybrid first, or :data:`REQUIRED_GROUPS`,
  the hybrid alone);
* :class:`PostQuantum` - the option's modes and their groups, and the errors
  of a connection under it;
* the downgrade rule (:func:`._pq_session.check_group`): :class:`TlsDowngradeError`
  when the hybrid was required, or offered by both ends, and a classical group
  was negotiated; :func:`card_offers_hybrid` and :func:`card_requires_hybrid`
  read what a peer's card offers.

**pyOpenSSL private attribute (why, and where).** pyOpenSSL 26.4 (the newest)
can read the negotiated group (``Connection.get_group_name``) but has no call
to *set* the groups list; OpenSSL's ``SSL_CTX_set1_groups_list`` is bound by
``cryptography`` (``Binding.lib.SSL_CTX_set1_curves_list``, its older name) and
needs the ``SSL_CTX *`` that pyOpenSSL keeps in ``Context._context``. Only
:func:`set_groups` touches it, and fails with a :class:`ConfigurationError`
naming the cause if a pyOpenSSL release drops it (a test checks it).
:func:`set_signature_algorithms` uses it the same way for
``SSL_CTX_set1_sigalgs_list`` (the gRPC option's second certificate, README "gRPC").
"""

from __future__ import annotations

import contextlib
import enum
import functools
import os
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.bindings.openssl.binding import Binding
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from OpenSSL import SSL, crypto

from sealwire.errors import (
    ConfigurationError,
    PolicyError,
)
from sealwire.transport import TransportError
from sealwire_tls._certs import pem

__all__ = [
    "CLIENT_KEY_SHARES",
    "HYBRID_GROUP",
    "PQ_GROUPS",
    "PREFERRED_GROUPS",
    "REQUIRED_GROUPS",
    "SERVER_SIGNATURE_ALGORITHMS",
    "PostQuantum",
    "TlsDowngradeError",
    "TlsHandshakeError",
    "TlsRecordError",
    "WHEEL_OPENSSL",
    "add_anchor",
    "card_offers_hybrid",
    "card_requires_hybrid",
    "hybrid_available",
    "post_quantum_option",
    "set_groups",
    "set_signature_algorithms",
    "tls_context",
]

WHEEL_OPENSSL = SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()
"""The OpenSSL that pyOpenSSL drives: the one inside cryptography's wheel."""

HYBRID_GROUP = "X25519MLKEM768"
"""The hybrid key exchange (X25519 + ML-KEM-768, FIPS 203), codepoint 0x11EC."""
PQ_GROUPS = frozenset({HYBRID_GROUP, "SecP256r1MLKEM768", "SecP384r1MLKEM1024",
                       "MLKEM512", "MLKEM768", "MLKEM1024"})  # fmt: skip
"""Groups whose key exchange is post-quantum (OpenSSL's names, compared case-blind)."""
PREFERRED_GROUPS = (HYBRID_GROUP, "X25519", "secp256r1", "secp384r1")
"""``post_quantum = "prefer"``: the hybrid first, then the classical groups Python's
``ssl`` clients offer, so a classical client still connects."""
REQUIRED_GROUPS = (HYBRID_GROUP,)
"""``post_quantum = "require"``: a server offers the hybrid alone (a classical client
fails the handshake); a client refuses any other outcome (:func:`._pq_session.check_group`)."""
CLIENT_KEY_SHARES = 2
"""Key shares a client sends (OpenSSL's ``*`` marks): the hybrid and X25519, as
OpenSSL's own default does, so a classical server needs no HelloRetryRequest
(one round trip more) - 32 bytes more in the ClientHello."""
SERVER_SIGNATURE_ALGORITHMS = (
    "ed25519", "ed448", "ecdsa_secp256r1_sha256", "ecdsa_secp384r1_sha384",
    "ecdsa_secp521r1_sha512", "rsa_pss_rsae_sha256", "rsa_pss_rsae_sha384",
    "rsa_pss_rsae_sha512", "rsa_pss_pss_sha256", "rsa_pss_pss_sha384", "rsa_pss_pss_sha512",
    "rsa_pkcs1_sha256", "rsa_pkcs1_sha384", "rsa_pkcs1_sha512",
)  # fmt: skip
"""A server with two certificates (Ed25519 and ECDSA P-256), in its order of preference:
OpenSSL picks the certificate of the first algorithm both ends accept, and its default
order puts ECDSA first - every client offering both would get the ECDSA chain. With
Ed25519 first (and the server's order ruling), a client offering Ed25519 (Sealwire,
OpenSSL, Go) gets the agent's Ed25519 certificate, one without it (grpcio's BoringSSL)
the ECDSA chain. OpenSSL's default list otherwise, for client certificates too."""


class TlsHandshakeError(TransportError):
    """The TLS handshake failed (OpenSSL's reason, never key material)."""


class TlsRecordError(TransportError):
    """A TLS record after the handshake was refused by OpenSSL (the connection is dropped)."""


class TlsDowngradeError(PolicyError):
    """A classical key exchange was negotiated where the hybrid was required, or where
    both ends offered it: a downgrade. Nothing is sent or handed on over that connection."""


class PostQuantum(enum.Enum):
    """The ``post_quantum`` option of ``[bindings.tls]``."""

    OFF = "off"  # Python's ssl (the system's OpenSSL), as before
    PREFER = "prefer"  # pyOpenSSL, the hybrid first, classical peers still served
    REQUIRE = "require"  # pyOpenSSL, the hybrid alone

    @property
    def groups(self) -> tuple[str, ...]:
        return REQUIRED_GROUPS if self is PostQuantum.REQUIRE else PREFERRED_GROUPS


def post_quantum_option(value: object) -> PostQuantum:
    """``post_quantum`` as configured: false/absent, ``"prefer"`` (or true), ``"require"``."""
    if value is None or value is False or value == "off":
        return PostQuantum.OFF
    if value is True or value == "prefer":
        mode = PostQuantum.PREFER
    elif value == "require":
        mode = PostQuantum.REQUIRE
    else:
        raise ConfigurationError(
            'bindings.tls: post_quantum is false, "prefer" (or true) or "require"'
        )
    if not hybrid_available():
        raise ConfigurationError(
            f"bindings.tls: post_quantum needs {HYBRID_GROUP} in the OpenSSL of cryptography's "
            f"wheel; it is {WHEEL_OPENSSL} (3.5 or newer needed)"
        )
    return mode


def set_groups(context: SSL.Context, groups: Sequence[str], *, key_shares: int = 1) -> None:
    """``SSL_CTX_set1_groups_list`` on a pyOpenSSL context (the module docstring says why
    through ``Context._context``); the first ``key_shares`` groups get a key share."""
    names = [("*" if i < key_shares and key_shares > 1 else "") + g for i, g in enumerate(groups)]
    handle = getattr(context, "_context", None)
    if handle is None:
        raise ConfigurationError("this pyOpenSSL keeps no SSL_CTX in Context._context")
    if Binding.lib.SSL_CTX_set1_curves_list(handle, ":".join(names).encode()) != 1:
        Binding.lib.ERR_clear_error()  # pyOpenSSL reads this queue after its own calls
        raise ConfigurationError(f"the linked OpenSSL refuses the groups {':'.join(groups)}")


def set_signature_algorithms(context: SSL.Context, algorithms: Sequence[str]) -> None:
    """``SSL_CTX_set1_sigalgs_list`` on a pyOpenSSL context, through ``Context._context``
    as :func:`set_groups` (pyOpenSSL has no call for it)."""
    handle = getattr(context, "_context", None)
    if handle is None:
        raise ConfigurationError("this pyOpenSSL keeps no SSL_CTX in Context._context")
    if Binding.lib.SSL_CTX_set1_sigalgs_list(handle, ":".join(algorithms).encode()) != 1:
        Binding.lib.ERR_clear_error()
        raise ConfigurationError(
            f"the linked OpenSSL refuses the signature algorithms {':'.join(algorithms)}"
        )


@functools.cache
def hybrid_available() -> bool:
    """Whether cryptography's OpenSSL (through pyOpenSSL) has X25519MLKEM768."""
    try:
        set_groups(SSL.Context(SSL.TLS_METHOD), [HYBRID_GROUP])
    except ConfigurationError:
        return False
    return True


# -- contexts -------------------------------------------------------------------------------


def tls_context(
    *,
    server: bool,
    mode: PostQuantum,
    chain: Sequence[x509.Certificate] = (),
    key: ed25519.Ed25519PrivateKey | None = None,
    anchors: Iterable[bytes] = (),
    verify: bool = True,
    require_certificate: bool = True,
    alpn: Sequence[str] = ("h2", "http/1.1"),
    second: tuple[Sequence[x509.Certificate], ec.EllipticCurvePrivateKey] | None = None,
) -> SSL.Context:
    """A TLS 1.3-only pyOpenSSL context.

    ``mode``: the groups (:attr:`PostQuantum.groups`); ``OFF`` is for a server only, with
    the groups OpenSSL offers by default (the ``grpc`` option without ``post_quantum``).
    ``chain`` and ``key``: our certificate (optional for a client). ``second``: a
    server's ECDSA chain and key beside it, each chain in its own OpenSSL slot, chosen
    by the client's signature algorithms (:data:`SERVER_SIGNATURE_ALGORITHMS`). ``anchors``
    (DER): the peer's certificate must chain to one (a pinned leaf is an anchor of
    its own, ``PARTIAL_CHAIN``); ``verify=False`` accepts any (the probe: the key
    is checked against the card afterwards). A server with ``require_certificate``
    false admits a client without a certificate. ``alpn``: a client's offer, a
    server's preference.
    """
    if mode is PostQuantum.OFF and not server:
        raise ConfigurationError("a pyOpenSSL client context is for the post_quantum option")
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_3_VERSION)
    context.set_max_proto_version(SSL.TLS1_3_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
    if server and mode is not PostQuantum.OFF:
        set_groups(context, mode.groups)
    else:
        # A client offers the hybrid and classical groups in either mode and checks the
        # outcome (check_group): a classical server then fails with TlsDowngradeError,
        # which says what happened, rather than an opaque handshake_failure alert.
        set_groups(context, PREFERRED_GROUPS, key_shares=CLIENT_KEY_SHARES)
    if chain:
        if key is None:
            raise ConfigurationError("a certificate needs its key")
        _use_chain(context, chain, key)
    if second is not None:
        if not server or not chain:
            raise ConfigurationError("a second certificate is a server's, beside its first")
        _use_chain(context, *second)
        # The server's order of signature algorithms decides, Ed25519 first.
        context.set_options(SSL.OP_CIPHER_SERVER_PREFERENCE)
        set_signature_algorithms(context, SERVER_SIGNATURE_ALGORITHMS)
    store = context.get_cert_store()
    if store is None:  # pragma: no cover - pyOpenSSL always makes one
        raise ConfigurationError("pyOpenSSL gave no certificate store")
    store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
    for der in anchors:
        add_anchor(context, der)
    if not verify:
        context.set_verify(SSL.VERIFY_PEER, lambda *_: True)
    elif server:
        flags = SSL.VERIFY_PEER | (SSL.VERIFY_FAIL_IF_NO_PEER_CERT if require_certificate else 0)
        context.set_verify(flags)
    else:
        context.set_verify(SSL.VERIFY_PEER)
    protocols = [p.encode("ascii") for p in alpn]
    if server:
        context.set_alpn_select_callback(functools.partial(_select_alpn, protocols))
    else:
        context.set_alpn_protos(protocols)
    return context


def _use_chain(
    context: SSL.Context,
    chain: Sequence[x509.Certificate],
    key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey,
) -> None:
    """Our certificate chain in the OpenSSL slot of its key type, then the key.

    ``SSL_CTX_use_certificate_chain_file`` keeps the chain with its slot (pyOpenSSL's
    ``add_extra_chain_cert`` would give one chain to every slot); it reads a file, of
    public certificates only, removed at once."""
    with tempfile.TemporaryDirectory(prefix="sealwire-tls-") as folder:
        path = os.path.join(folder, "chain.pem")
        with open(path, "wb") as out:
            out.write(pem(chain))
        context.use_certificate_chain_file(path)
    context.use_privatekey(key)
    context.check_privatekey()


def add_anchor(context: SSL.Context, der: bytes) -> None:
    """Trust ``der`` (a CA, or a pinned leaf) for the peers of ``context``'s connections."""
    store = context.get_cert_store()
    if store is None:  # pragma: no cover
        raise ConfigurationError("pyOpenSSL gave no certificate store")
    with contextlib.suppress(crypto.X509StoreContextError, SSL.Error):
        store.add_cert(crypto.X509.from_cryptography(x509.load_der_x509_certificate(der)))


def _select_alpn(ours: Sequence[bytes], _connection: SSL.Connection, offered: list[bytes]) -> Any:
    for protocol in ours:
        if protocol in offered:
            return protocol
    return SSL.NO_OVERLAPPING_PROTOCOLS


# -- what a peer's card offers -----------------------------------------------------------


def card_offers_hybrid(card: object) -> bool:
    """Whether a verified card's ``tls`` offer lists the hybrid group in ``keyExchange``."""
    offer = getattr(card, "offer", None)
    found = offer("tls") if callable(offer) else None
    groups = getattr(found, "params", {}).get("keyExchange") if found is not None else None
    return isinstance(groups, list) and HYBRID_GROUP in groups


def card_requires_hybrid(card: object) -> bool:
    """Whether a verified card's ``tls`` offer accepts the hybrid group alone."""
    offer = getattr(card, "offer", None)
    found = offer("tls") if callable(offer) else None
    groups = getattr(found, "params", {}).get("keyExchange") if found is not None else None
    return groups == [HYBRID_GROUP]
