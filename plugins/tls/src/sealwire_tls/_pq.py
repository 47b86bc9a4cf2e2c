"""Post-quantum TLS 1.3 (X25519MLKEM768) on the OpenSSL inside ``cryptography``'s wheel.

Python's ``ssl`` links the system's OpenSSL (3.0 here: no ML-KEM group, and
Python 3.11 can neither set a groups list nor say which group a connection
negotiated). ``cryptography``'s wheel carries its own OpenSSL (4.0 here),
which has the hybrid group X25519MLKEM768 (draft-ietf-tls-ecdhe-mlkem);
pyOpenSSL drives that OpenSSL, as the DTLS engine (:mod:`._dtls`) already does.

This module is the shared piece of the ``post_quantum`` option:

* :func:`tls_context` - a pyOpenSSL TLS 1.3 context: our certificate, the
  peer's certificates verified against the given anchors, ALPN, and the groups
  list (:data:`PREFERRED_GROUPS`, the hybrid first, or :data:`REQUIRED_GROUPS`,
  the hybrid alone);
* :class:`TlsStream` - an asyncio protocol running one pyOpenSSL connection
  over memory BIOs (handshake, records, close_notify), the carrier of both
  the server (:mod:`._pq_server`) and the client (:mod:`._pq_client`);
* :class:`TlsSessionInfo` - what a connection negotiated (version, suite,
  group, ALPN, stack), read from pyOpenSSL or, without the group, from ``ssl``;
* :func:`check_group` - the downgrade rule: :class:`TlsDowngradeError` when
  the hybrid was required, or offered by both ends, and a classical group was
  negotiated.

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

import asyncio
import contextlib
import enum
import functools
import hashlib
import logging
import os
import socket
import ssl
import tempfile
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.bindings.openssl.binding import Binding
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL, crypto

from sealwire.errors import (
    AuthenticationError,
    ConfigurationError,
    PolicyError,
    RemoteProtocolError,
)
from sealwire.transport import TransportError
from sealwire_tls._certs import pem

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "HYBRID_GROUP",
    "PQ_GROUPS",
    "PREFERRED_GROUPS",
    "REQUIRED_GROUPS",
    "SERVER_SIGNATURE_ALGORITHMS",
    "PostQuantum",
    "TlsDowngradeError",
    "TlsHandshakeError",
    "TlsRecordError",
    "TlsSessionInfo",
    "TlsStream",
    "check_group",
    "hybrid_available",
    "info_from_ssl_object",
    "post_quantum_option",
    "set_groups",
    "set_signature_algorithms",
    "tls_context",
]

log = logging.getLogger(__name__)

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
fails the handshake); a client refuses any other outcome (:func:`check_group`)."""
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
HANDSHAKE_TIMEOUT = 10.0
"""Seconds a TLS handshake may take before the connection is dropped (as core's
HTTPS server allows Python's ``ssl``)."""
READ_CHUNK = 1 << 16
"""Bytes asked of OpenSSL per read: more than one record's plaintext (2^14)."""
HIGH_WATER = 1 << 18
"""Received bytes buffered in the read BIO before the socket stops being read
(resumed once OpenSSL drained them): a slow reader does not grow the buffer."""
CLOSE_TIMEOUT = 5.0
"""Seconds a closed connection may take to flush what it queued before it is aborted."""
WRITE_HIGH_WATER = 1 << 18
"""Bytes queued in the transport before ``drain`` waits (asyncio's default is 64 KiB)."""


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


# -- what a connection negotiated -----------------------------------------------------------


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


def _reasons(exc: SSL.Error) -> str:
    """OpenSSL's reason strings (never key material)."""
    parts = [str(item[-1]) for item in (exc.args[0] if exc.args else []) if item]
    return "; ".join(p for p in parts if p) or type(exc).__name__


# -- the carrier ----------------------------------------------------------------------------


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


class TlsStream(asyncio.Protocol):
    """One TLS connection over an asyncio transport: pyOpenSSL over memory BIOs.

    Received bytes go straight into OpenSSL's read BIO (bounded by
    :data:`HIGH_WATER`: the socket is paused beyond it); what OpenSSL writes is
    handed to the transport at once. Writing is synchronous (:meth:`send`),
    reading waits for records (:meth:`recv`). ``on_open`` is called with the
    stream once the TCP connection is made (a server starts its task there).
    """

    def __init__(
        self, connection: SSL.Connection, on_open: Callable[[TlsStream], None] | None = None
    ) -> None:
        self._connection = connection
        self._on_open = on_open
        self.transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._buffered = 0
        self._paused = False
        self._eof = False
        self._closing = False
        self._lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ssl_object: SslObject | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Headers and body are separate records: without this, Nagle's algorithm and
            # the peer's delayed ACK add ~40 ms to every answer.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        if self._on_open is not None:
            self._on_open(self)

    def data_received(self, data: bytes) -> None:
        self._connection.bio_write(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self.transport.pause_reading()
            self._paused = True
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # nothing more can come: let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # driving OpenSSL

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _more(self) -> bool:
        """Wait for received bytes; False at end of stream. OpenSSL emptied its read BIO."""
        self._buffered = 0
        if self._paused and self.transport is not None and not self._closing:
            self.transport.resume_reading()
            self._paused = False
        if self._eof:
            return False
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        return True

    def _flush(self) -> None:
        while True:
            try:
                data = self._connection.bio_read(READ_CHUNK)
            except SSL.WantReadError:
                return
            if not data:
                return
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(data)

    async def handshake(self, timeout: float | None = HANDSHAKE_TIMEOUT) -> SslObject:
        """Run the handshake (either side, as the connection was set up); TlsHandshakeError.
        ``timeout`` None: the caller bounds it."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        self._connection.do_handshake()
                    except SSL.WantReadError:
                        self._flush()
                        if not await self._more():
                            raise TlsHandshakeError(
                                "the peer closed during the handshake"
                            ) from None
                        continue
                    except SSL.Error as exc:
                        self._flush()  # our alert, if OpenSSL wrote one
                        raise TlsHandshakeError(f"TLS handshake failed: {_reasons(exc)}") from None
                    self._flush()
                    break
        except TimeoutError:
            raise TlsHandshakeError(f"no TLS handshake within {timeout} s") from None
        self.ssl_object = SslObject(self._connection)
        return self.ssl_object

    async def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes of plaintext; ``b""`` at the end of the stream."""
        while True:
            try:
                data = self._connection.recv(size)
            except SSL.WantReadError:
                self._flush()  # e.g. a KeyUpdate answer
                if not await self._more():
                    return b""
                continue
            except SSL.ZeroReturnError:  # close_notify
                return b""
            except SSL.SysCallError:  # EOF without close_notify
                return b""
            except SSL.Error as exc:
                self._flush()
                raise TlsRecordError(f"TLS record refused: {_reasons(exc)}") from None
            self._flush()
            return bytes(data)

    def send(self, data: bytes) -> None:
        """Encrypt and queue ``data`` (a memory BIO takes it all at once).

        Once the peer closed, writes are dropped as a socket's kernel drops them: the
        reader learns of the close from :meth:`recv`, after what the peer sent last
        (an HTTP/2 GOAWAY, which makes httpcore retry on a new connection)."""
        if self._closing or self.transport is None:
            raise TlsRecordError("the TLS connection is closed")
        if self._eof or self.transport.is_closing():
            return
        try:
            self._connection.sendall(data)
        except SSL.Error as exc:
            raise TlsRecordError(f"TLS write refused: {_reasons(exc)}") from None
        self._flush()

    async def drain(self) -> None:
        if self._writable is not None and not self._writable.done():
            await self._writable

    def readable(self) -> bool:
        """Whether an idle connection has something to read (the peer closed, or sent
        what nobody asked for): httpcore then drops it rather than reuse it."""
        if self._eof:
            return True
        try:
            self._connection.recv(1, socket.MSG_PEEK)
        except SSL.WantReadError:
            return False
        except SSL.Error:
            return True
        return True

    def close(self) -> None:
        """Send close_notify and close the transport (idempotent)."""
        if self._closing:
            return
        self._closing = True
        if self.ssl_object is not None:
            with contextlib.suppress(SSL.Error):
                self._connection.shutdown()
            self._flush()
        if self.transport is not None:
            self.transport.close()

    async def wait_closed(self) -> None:
        """Wait for the transport to close; abort it after :data:`CLOSE_TIMEOUT` (a peer
        that reads nothing would otherwise keep our unsent bytes, and us, waiting)."""
        if self.transport is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._lost), CLOSE_TIMEOUT)
        except TimeoutError:
            self.transport.abort()
            await self._lost

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self.ssl_object
        if self.transport is None:
            return default
        return self.transport.get_extra_info(name, default)


def peer_certificate_der(stream: TlsStream) -> bytes:
    """The peer's leaf (DER), or RemoteProtocolError when it sent none."""
    if stream.ssl_object is None:
        raise AuthenticationError("no TLS handshake yet")
    der = stream.ssl_object.getpeercert(binary_form=True)
    if not der:
        raise RemoteProtocolError("the server sent no certificate")
    return der


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
