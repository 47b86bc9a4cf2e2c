"""DTLS (RFC 6347) for the ``dtls`` binding: a sans-I/O engine around pyOpenSSL's memory BIOs.

Nothing here touches a socket or a clock it was not given: datagrams go in
(:meth:`DtlsEngine.receive_record`), datagrams come out
(:meth:`DtlsEngine.datagrams`), and the caller asks when the next
retransmission is due (:meth:`DtlsEngine.timeout`, :meth:`DtlsEngine.handle_timeout`).

What this module guarantees, in the order a datagram meets it:

1. **Record framing** (RFC 6347 §4.1): a datagram is split into whole records;
   a truncated header or body, an unknown content type, a version other than
   DTLS, or a record longer than :data:`MAX_RECORD` rejects the whole datagram
   with :class:`DtlsDecodeError` before OpenSSL sees any of it.
2. **Stateless cookies** (§4.2.1): :meth:`DtlsEngine.accept` answers a
   ClientHello without a valid cookie with a HelloVerifyRequest from a
   throw-away OpenSSL object; nothing of it is kept. The cookie is
   HMAC-SHA256(secret, client address) (:class:`CookieJar`), the secret
   rotating every :data:`COOKIE_ROTATION` seconds (the previous one still
   verifies).
3. **Epochs**: this binding never renegotiates, so the only epochs are 0
   (handshake) and 1 (keys of the one handshake). A record of another epoch,
   or application data in epoch 0, is refused with :class:`DtlsEpochError`.
4. **Anti-replay** (§4.1.2.6): a :data:`REPLAY_WINDOW`-record sliding window
   over epoch-1 sequence numbers, updated only once OpenSSL authenticated
   the record; a replay is refused with :class:`DtlsReplayError` before
   OpenSSL sees it (OpenSSL keeps its own window too), an application record
   that does not authenticate with :class:`DtlsAuthenticationError`.
5. **Retransmission** (§4.2.4): OpenSSL's timer: 1 s initially, doubled on
   each expiry up to 60 s, reset when a flight is answered; after 12 expiries
   the handshake fails (:class:`DtlsHandshakeError`).

Handshake messages are fragmented by OpenSSL to the path MTU given
(:data:`DEFAULT_MTU`, ``OP_NO_QUERY_MTU``: a memory BIO cannot ask the
kernel). A2A frames longer than one record are fragmented one level up,
by :class:`Fragmenter` and :class:`Reassembler`, within :data:`DEFAULT_MAX_MESSAGE`.

Versions are a table (:data:`VERSIONS`): DTLS 1.3 (RFC 9147) is one entry,
refused today with the reason (:data:`DTLS_1_3`); the rest of the engine
asks the table, not the version number.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import os
import struct
from collections.abc import Callable, Sequence
from typing import cast

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

from sealwire.errors import (
    AuthenticationError,
    ConfigurationError,
    DecodeError,
    RemoteProtocolError,
    StateError,
)

__all__ = [
    "COOKIE_ROTATION",
    "DEFAULT_MAX_MESSAGE",
    "DEFAULT_MTU",
    "DTLS_1_2",
    "DTLS_1_3",
    "FRAGMENT_HEADER",
    "MAX_FRAGMENTS",
    "MAX_PENDING_MESSAGES",
    "MAX_RECORD",
    "REASSEMBLY_TIMEOUT",
    "RECORD_HEADER",
    "REPLAY_WINDOW",
    "VERSIONS",
    "ContentType",
    "CookieJar",
    "DtlsAuthenticationError",
    "DtlsConfigurationError",
    "DtlsDecodeError",
    "DtlsEngine",
    "DtlsEpochError",
    "DtlsFragmentError",
    "DtlsHandshakeError",
    "DtlsReplayError",
    "DtlsStateError",
    "DtlsVersion",
    "Fragment",
    "Fragmenter",
    "Reassembler",
    "Record",
    "ReplayWindow",
    "dtls_context",
    "dtls_version",
    "split_records",
]


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


# -- records ------------------------------------------------------------------------------


class ContentType(enum.IntEnum):
    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23


RECORD_HEADER = 13
"""type (1) || version (2) || epoch (2) || sequence_number (6) || length (2)."""
MAX_RECORD = 2**14 + 2048
"""The longest DTLSCiphertext fragment RFC 6347 §4.1 / RFC 5246 §6.2.3 allow."""
MAX_PLAINTEXT = 2**14
"""The longest DTLSPlaintext fragment (RFC 6347 §4.1): a record never carries more."""
HANDSHAKE_HEADER = 12
CLIENT_HELLO = 1
MAX_RECORDS_PER_DATAGRAM = 64
"""A 1,200-byte datagram holds at most 92 empty records; 64 is more than any flight."""
_RECORD = struct.Struct(">BHH6sH")


@attrs.frozen(kw_only=True)
class Record:
    """One record of a datagram (the header parsed, the bytes kept whole)."""

    content_type: ContentType
    version: int
    epoch: int
    sequence: int
    raw: bytes = attrs.field(repr=False)


def split_records(datagram: bytes) -> list[Record]:
    """Every record of a datagram; DtlsDecodeError when any is malformed (nothing fed)."""
    records: list[Record] = []
    offset = 0
    if not datagram:
        raise DtlsDecodeError("empty datagram", field="dtls.datagram")
    while offset < len(datagram):
        if len(records) >= MAX_RECORDS_PER_DATAGRAM:
            raise DtlsDecodeError("too many records in one datagram", field="dtls.datagram")
        if len(datagram) - offset < RECORD_HEADER:
            raise DtlsDecodeError("truncated record header", field="dtls.record")
        kind, version, epoch, seq, length = _RECORD.unpack_from(datagram, offset)
        if kind not in ContentType._value2member_map_:
            raise DtlsDecodeError("unknown content type", field="dtls.record.type")
        if version >> 8 != 0xFE:
            raise DtlsDecodeError("not a DTLS record version", field="dtls.record.version")
        if length > MAX_RECORD:
            raise DtlsDecodeError("record longer than the protocol allows", field="dtls.record")
        end = offset + RECORD_HEADER + length
        if end > len(datagram):
            raise DtlsDecodeError("truncated record", field="dtls.record")
        records.append(
            Record(
                content_type=ContentType(kind),
                version=version,
                epoch=epoch,
                sequence=int.from_bytes(seq, "big"),
                raw=datagram[offset:end],
            )
        )
        offset = end
    return records


def pack_datagrams(records: bytes, mtu: int) -> list[bytes]:
    """OpenSSL's output (records back to back in a memory BIO) packed into datagrams of
    at most ``mtu`` bytes, whole records only (a record longer than ``mtu`` goes alone)."""
    out: list[bytes] = []
    current = bytearray()
    offset = 0
    while offset + RECORD_HEADER <= len(records):
        length = int.from_bytes(records[offset + 11 : offset + 13], "big")
        record = records[offset : offset + RECORD_HEADER + length]
        offset += RECORD_HEADER + length
        if current and len(current) + len(record) > mtu:
            out.append(bytes(current))
            current = bytearray()
        current += record
    if current:
        out.append(bytes(current))
    return out


REPLAY_WINDOW = 64
"""Records of the sliding window (RFC 6347 §4.1.2.6: 32 MUST, 64 preferred)."""


class ReplayWindow:
    """The §4.1.2.6 sliding window over one epoch's 48-bit sequence numbers."""

    def __init__(self) -> None:
        self._top = -1
        self._bits = 0  # bit i: sequence (top - i) was received

    def check(self, sequence: int) -> None:
        """DtlsReplayError when ``sequence`` was seen or is left of the window."""
        if sequence > self._top:
            return
        offset = self._top - sequence
        if offset >= REPLAY_WINDOW:
            raise DtlsReplayError("record older than the replay window")
        if self._bits >> offset & 1:
            raise DtlsReplayError("record already received")

    def mark(self, sequence: int) -> None:
        """Record ``sequence`` as received (after it authenticated)."""
        if sequence > self._top:
            shift = sequence - self._top
            self._bits = (self._bits << shift | 1) & ((1 << REPLAY_WINDOW) - 1)
            self._top = sequence
        else:
            self._bits |= 1 << (self._top - sequence)


# -- cookies ------------------------------------------------------------------------------

COOKIE_ROTATION = 300.0
"""Seconds a cookie secret is current; the previous one still verifies, so a cookie
lives 5 to 10 minutes: far longer than a HelloVerifyRequest round trip, short
enough that a harvested cookie soon stops working."""
COOKIE_LENGTH = 32
"""HMAC-SHA256, untruncated (RFC 6347 allows up to 255 bytes)."""


class CookieJar:
    """Stateless cookies: HMAC-SHA256 of the client's address under a rotating secret."""

    def __init__(
        self, clock: Callable[[], float], random: Callable[[int], bytes] = os.urandom
    ) -> None:
        self._clock = clock
        self._random = random
        self._period = int(clock() // COOKIE_ROTATION)
        self._secrets = (random(32), random(32))  # current, previous

    def __repr__(self) -> str:
        return "<CookieJar>"

    def _current(self) -> tuple[bytes, bytes]:
        period = int(self._clock() // COOKIE_ROTATION)
        if period != self._period:
            fresh = self._random(32)
            self._secrets = (fresh, self._secrets[0] if period == self._period + 1 else fresh)
            self._period = period
        return self._secrets

    def make(self, address: bytes) -> bytes:
        return hmac.new(self._current()[0], address, hashlib.sha256).digest()

    def verify(self, address: bytes, cookie: bytes) -> bool:
        return any(
            hmac.compare_digest(cookie, hmac.new(secret, address, hashlib.sha256).digest())
            for secret in self._current()
        )


# -- the OpenSSL context ------------------------------------------------------------------

OPTIONS = (
    SSL.OP_NO_QUERY_MTU  # a memory BIO has no MTU to query: we set it
    | SSL.OP_NO_TICKET  # no resumption: every session is a full, mutually authenticated one
    | SSL.OP_NO_RENEGOTIATION  # one epoch of keys: anything else is refused
    | SSL.OP_NO_COMPRESSION
    | SSL.OP_CIPHER_SERVER_PREFERENCE
)


def _app_address(connection: SSL.Connection) -> bytes:
    data = connection.get_app_data()
    return data if isinstance(data, bytes) else b""


def dtls_context(
    *,
    server: bool,
    versions: Sequence[DtlsVersion],
    certificate: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    cookies: CookieJar | None = None,
) -> SSL.Context:
    """An OpenSSL context: these versions only (newest first, as :data:`VERSIONS`), AEAD +
    ECDHE suites, a peer certificate required (it is checked against the peer's card by
    the binding, not by OpenSSL)."""
    if not versions or not all(v.available for v in versions):
        raise DtlsConfigurationError("DTLS needs at least one available version")
    order = list(VERSIONS.values())
    versions = sorted(versions, key=order.index)
    context = SSL.Context(SSL.DTLS_METHOD)
    context.set_min_proto_version(versions[-1].openssl)
    context.set_max_proto_version(versions[0].openssl)
    context.set_cipher_list(b":".join(v.ciphers for v in versions if v.ciphers))
    context.set_options(OPTIONS)
    context.use_certificate(certificate)
    context.use_privatekey(key)
    context.check_privatekey()
    # OpenSSL cannot check a certificate against an agent card: accept the chain here,
    # and let the binding refuse it before any A2A frame (DtlsEngine.peer_certificate).
    context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *_: True)
    if server:
        if cookies is None:
            raise DtlsConfigurationError("a DTLS server needs a cookie jar")
        jar = cookies
        if SSL.OP_COOKIE_EXCHANGE is None:  # an OpenSSL built without DTLS cookies
            raise DtlsConfigurationError("this OpenSSL has no DTLS cookie exchange")
        context.set_options(SSL.OP_COOKIE_EXCHANGE)
        context.set_cookie_generate_callback(lambda conn: jar.make(_app_address(conn)))
        context.set_cookie_verify_callback(
            lambda conn, cookie: jar.verify(_app_address(conn), cookie)
        )
    return context


# -- the engine ---------------------------------------------------------------------------

DEFAULT_MTU = 1200
"""Bytes of UDP payload per datagram: under IPv6's minimum MTU (1,280 - 40 - 8) with room
for tunnels, the value QUIC (RFC 9000 §14) also assumes without path MTU discovery."""
MIN_MTU = 256
"""Below this a certificate flight needs dozens of datagrams: refused as a misconfiguration."""
READ_CHUNK = 1 << 16
"""Bytes asked of OpenSSL per read: more than one record's plaintext (2^14)."""


def _drain(connection: SSL.Connection) -> bytes:
    """Everything OpenSSL wrote to its memory BIO. A read shorter than asked emptied it,
    so the common case (one record) costs one call and no WantReadError."""
    out = b""
    while True:
        try:
            chunk = connection.bio_read(READ_CHUNK)
        except SSL.WantReadError:
            return out
        out += chunk
        if len(chunk) < READ_CHUNK:
            return out


class DtlsEngine:
    """One side of one DTLS association, sans I/O.

    Build a client with :meth:`client`, a server with :meth:`accept` (which is
    stateless until the cookie verifies). Then feed records, send data, and
    send what :meth:`datagrams` returns after every call.
    """

    def __init__(self, connection: SSL.Connection, *, server: bool, mtu: int) -> None:
        self._conn = connection
        self.server = server
        self.mtu = mtu
        self.handshake_done = False
        self.peer_closed = False
        self.closed = False
        self._window = ReplayWindow()
        self._out = bytearray()

    def __repr__(self) -> str:
        role = "server" if self.server else "client"
        return f"<DtlsEngine {role} handshake_done={self.handshake_done}>"

    @staticmethod
    def _check_mtu(mtu: int) -> int:
        if mtu < MIN_MTU:
            raise DtlsConfigurationError(f"DTLS mtu must be at least {MIN_MTU} bytes")
        return mtu

    @classmethod
    def client(cls, context: SSL.Context, *, mtu: int = DEFAULT_MTU) -> DtlsEngine:
        """A client; its ClientHello is ready in :meth:`datagrams`."""
        connection = SSL.Connection(context, None)
        connection.set_connect_state()
        connection.set_ciphertext_mtu(cls._check_mtu(mtu))
        engine = cls(connection, server=False, mtu=mtu)
        engine._advance()
        return engine

    @classmethod
    def accept(
        cls, context: SSL.Context, datagram: bytes, address: bytes, *, mtu: int = DEFAULT_MTU
    ) -> tuple[DtlsEngine | None, list[bytes]]:
        """A server's answer to one datagram from ``address`` before any state exists.

        ``(None, [HelloVerifyRequest])`` for a ClientHello without a valid cookie:
        the OpenSSL object that wrote it is discarded, nothing is kept.
        ``(engine, [server flight])`` for a ClientHello with a valid cookie.
        DtlsDecodeError for anything that is not a lone ClientHello.
        """
        cls._check_mtu(mtu)
        records = split_records(datagram)
        if len(records) != 1:
            raise DtlsDecodeError("a ClientHello comes alone", field="dtls.client_hello")
        record = records[0]
        body = record.raw[RECORD_HEADER:]
        if (
            record.content_type is not ContentType.HANDSHAKE
            or record.epoch != 0
            or len(body) < HANDSHAKE_HEADER
            or body[0] != CLIENT_HELLO
        ):
            raise DtlsDecodeError("expected a ClientHello", field="dtls.client_hello")
        connection = SSL.Connection(context, None)
        connection.set_app_data(address)
        connection.set_accept_state()
        connection.set_ciphertext_mtu(mtu)
        connection.bio_write(record.raw)
        try:
            connection.DTLSv1_listen()
        except SSL.WantReadError:
            return None, pack_datagrams(_drain(connection), mtu)
        except SSL.Error:
            raise DtlsDecodeError("malformed ClientHello", field="dtls.client_hello") from None
        engine = cls(connection, server=True, mtu=mtu)
        engine._advance()
        return engine, engine.datagrams()

    # -- input ---------------------------------------------------------------------------

    def receive_record(self, record: Record) -> bytes | None:
        """Feed one record; the application data it carried, if any.

        Typed errors (epoch, replay, authentication, a failed handshake) leave
        the state as it was, except DtlsHandshakeError, after which the engine
        is dead.
        """
        if self.closed:
            raise DtlsStateError("the DTLS engine is closed")
        if record.epoch > 1:
            raise DtlsEpochError(f"record for unknown epoch {record.epoch}")
        application = record.content_type is ContentType.APPLICATION_DATA
        if application and record.epoch == 0:
            raise DtlsEpochError("application data in epoch 0")
        guarded = self.handshake_done and record.epoch == 1 and application
        if not guarded:
            self._conn.bio_write(record.raw)
            return self._advance() or None
        self._window.check(record.sequence)
        self._conn.bio_write(record.raw)
        try:
            # Application data after the handshake: OpenSSL answers nothing to it, so
            # there is no output to drain (a drain would cost a WantReadError per record).
            data = self._read()
        except SSL.ZeroReturnError:  # not expected in an application record, but final
            self.peer_closed = True
            return None
        except SSL.Error as exc:
            self.closed = True
            raise DtlsHandshakeError(f"DTLS failed: {_reason(exc)}") from None
        if not data:
            raise DtlsAuthenticationError("record failed authentication")
        self._window.mark(record.sequence)
        return data

    def _advance(self) -> bytes:
        """Run OpenSSL on what was fed: the handshake, then reads. Returns plaintext."""
        try:
            if not self.handshake_done:
                try:
                    self._conn.do_handshake()
                except SSL.WantReadError:
                    return b""
                self.handshake_done = True
            return self._read()
        except SSL.ZeroReturnError:
            self.peer_closed = True
            return b""
        except SSL.Error as exc:
            self.closed = True
            raise DtlsHandshakeError(f"DTLS failed: {_reason(exc)}") from None
        finally:
            self._out += _drain(self._conn)

    def _read(self) -> bytes:
        out = b""
        while True:
            try:
                out += self._conn.read(READ_CHUNK)
            except SSL.WantReadError:
                return out
            if not self._conn.pending():  # one record read whole: no second call to fail
                return out

    # -- output --------------------------------------------------------------------------

    @property
    def max_plaintext(self) -> int:
        """Bytes one record carries within the MTU (after the handshake)."""
        if not self.handshake_done:
            raise DtlsStateError("the DTLS handshake is not finished")
        return min(int(self._conn.get_cleartext_mtu()), MAX_PLAINTEXT)

    def send(self, data: bytes) -> None:
        """Seal ``data`` as one application record (at most :attr:`max_plaintext`)."""
        if self.closed or self.peer_closed:
            raise DtlsStateError("the DTLS session is closed")
        if len(data) > self.max_plaintext:
            raise DtlsStateError(f"a record carries at most {self.max_plaintext} bytes")
        try:
            self._conn.write(data)
        except SSL.Error as exc:
            raise DtlsStateError(f"DTLS write failed: {_reason(exc)}") from None
        self._out += _drain(self._conn)

    def datagrams(self) -> list[bytes]:
        """What to send now, as datagrams of at most :attr:`mtu` bytes."""
        if not self._out:
            return []
        # OpenSSL writes whole records: when they fit one datagram, no need to parse them.
        out = (
            [bytes(self._out)]
            if len(self._out) <= self.mtu
            else pack_datagrams(bytes(self._out), self.mtu)
        )
        self._out.clear()
        return out

    def close(self) -> None:
        """Queue a close_notify alert (idempotent)."""
        if self.closed:
            return
        self.closed = True
        if self.handshake_done:
            # The peer closed first or the session failed: nothing more to say.
            with contextlib.suppress(SSL.Error):
                self._conn.shutdown()
            self._out += _drain(self._conn)

    # -- time ----------------------------------------------------------------------------

    def timeout(self) -> float | None:
        """Seconds until OpenSSL's retransmission timer expires (None: no timer running)."""
        if self.closed:
            return None
        return cast(float | None, self._conn.DTLSv1_get_timeout())

    def handle_timeout(self) -> None:
        """Retransmit the last flight when its timer expired (§4.2.4)."""
        try:
            self._conn.DTLSv1_handle_timeout()
        except SSL.Error as exc:
            self.closed = True
            raise DtlsHandshakeError(f"DTLS retransmissions exhausted: {_reason(exc)}") from None
        finally:
            self._out += _drain(self._conn)

    # -- what the handshake established --------------------------------------------------

    def peer_certificate(self) -> x509.Certificate:
        certificate = self._conn.get_peer_certificate(as_cryptography=True)
        if certificate is None:
            raise DtlsHandshakeError("the peer sent no certificate")
        return certificate

    def export(self, label: bytes, context: bytes, length: int = 32) -> bytes:
        """RFC 5705 keying material (the channel binding)."""
        if not self.handshake_done:
            raise DtlsStateError("the DTLS handshake is not finished")
        return self._conn.export_keying_material(label, length, context)

    @property
    def version(self) -> str:
        return str(self._conn.get_protocol_version_name())

    @property
    def cipher(self) -> str:
        return str(self._conn.get_cipher_name())

    @property
    def group(self) -> str | None:
        """The (EC)DHE group negotiated (``SSL_get0_group_name``); None before the handshake."""
        if not self.handshake_done:
            return None
        return self._conn.get_group_name()


def _reason(exc: SSL.Error) -> str:
    """OpenSSL's reason strings (never key material), for logs and typed errors."""
    parts = []
    for item in exc.args[0] if exc.args and isinstance(exc.args[0], list) else []:
        if isinstance(item, tuple) and item:
            parts.append(str(item[-1]))
    return ", ".join(parts) or type(exc).__name__


# -- binding-level fragmentation ----------------------------------------------------------

FRAGMENT_HEADER = 9
"""kind (1) || message id (4) || index (2) || count (2)."""
_FRAGMENT = struct.Struct(">BIHH")
DEFAULT_MAX_MESSAGE = 1 << 20
"""Largest message (A2A frame) reassembled: 1 MiB. A receiver holds a message's
fragments until the last arrives, so this bounds the memory one peer can make us
keep per pending message; A2A frames are far smaller."""
MAX_FRAGMENTS = 2048
"""Fragments of one message: 1 MiB in 512-byte pieces (MTUs below that need a smaller
message bound). A count above it is refused before anything is buffered."""
MAX_PENDING_MESSAGES = 16
"""Messages being reassembled at once; the oldest is dropped to make room."""
REASSEMBLY_TIMEOUT = 10.0
"""Seconds a partial message waits for its missing fragments (one was lost: the
whole message is, as with any datagram) before it is dropped."""


@attrs.frozen(kw_only=True)
class Fragment:
    kind: int
    message_id: int
    index: int
    count: int
    payload: bytes = attrs.field(repr=False)

    def encode(self) -> bytes:
        return _FRAGMENT.pack(self.kind, self.message_id, self.index, self.count) + self.payload

    @classmethod
    def decode(cls, data: bytes) -> Fragment:
        if len(data) < FRAGMENT_HEADER:
            raise DtlsFragmentError("truncated fragment header", field="dtls.fragment")
        kind, message_id, index, count = _FRAGMENT.unpack_from(data)
        if count == 0 or count > MAX_FRAGMENTS:
            raise DtlsFragmentError(
                f"fragment count must be 1..{MAX_FRAGMENTS}", field="dtls.fragment.count"
            )
        if index >= count:
            raise DtlsFragmentError("fragment index past its count", field="dtls.fragment.index")
        return cls(
            kind=kind,
            message_id=message_id,
            index=index,
            count=count,
            payload=data[FRAGMENT_HEADER:],
        )


class Fragmenter:
    """Splits messages into record-sized fragments, numbering messages from 0."""

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self.max_message = max_message
        self._next_id = 0

    def split(self, kind: int, message: bytes, max_plaintext: int) -> list[bytes]:
        if len(message) > self.max_message:
            raise DtlsStateError(f"a message is at most {self.max_message} bytes")
        room = max_plaintext - FRAGMENT_HEADER
        if room <= 0:
            raise DtlsConfigurationError("the DTLS record is too small to carry a fragment")
        message_id = self._next_id
        if len(message) <= room:  # the common case: one fragment, no objects
            self._next_id = (message_id + 1) & 0xFFFFFFFF
            return [_FRAGMENT.pack(kind, message_id, 0, 1) + message]
        count = -(-len(message) // room)
        if count > MAX_FRAGMENTS:
            raise DtlsStateError(f"a message is at most {MAX_FRAGMENTS} fragments")
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        return [
            Fragment(
                kind=kind,
                message_id=message_id,
                index=i,
                count=count,
                payload=message[i * room : (i + 1) * room],
            ).encode()
            for i in range(count)
        ]


@attrs.define
class _Partial:
    kind: int
    count: int
    started: float
    pieces: dict[int, bytes] = attrs.field(factory=dict, repr=False)
    size: int = 0


class Reassembler:
    """Reassembles messages from fragments, within the module's bounds."""

    def __init__(self, clock: Callable[[], float], max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self._clock = clock
        self.max_message = max_message
        self._partial: dict[int, _Partial] = {}
        self.dropped = 0

    def add(self, fragment: Fragment) -> tuple[int, bytes] | None:
        """``(kind, message)`` once complete; DtlsFragmentError when a bound is crossed
        (the partial message is dropped)."""
        if fragment.count == 1:  # the common case: nothing to keep
            if len(fragment.payload) > self.max_message:
                raise DtlsFragmentError("message over the bound", field="dtls.fragment")
            return fragment.kind, fragment.payload
        now = self._clock()
        for message_id in [
            m for m, p in self._partial.items() if now - p.started > REASSEMBLY_TIMEOUT
        ]:
            del self._partial[message_id]
            self.dropped += 1
        partial = self._partial.get(fragment.message_id)
        if partial is None:
            if len(self._partial) >= MAX_PENDING_MESSAGES:
                del self._partial[min(self._partial)]
                self.dropped += 1
            partial = self._partial[fragment.message_id] = _Partial(
                kind=fragment.kind, count=fragment.count, started=now
            )
        elif partial.count != fragment.count or partial.kind != fragment.kind:
            del self._partial[fragment.message_id]
            raise DtlsFragmentError("fragments of one message disagree", field="dtls.fragment")
        if fragment.index in partial.pieces:
            return None  # a duplicate (DTLS replay protection makes this rare)
        partial.size += len(fragment.payload)
        if partial.size > self.max_message:
            del self._partial[fragment.message_id]
            raise DtlsFragmentError("message over the bound", field="dtls.fragment")
        partial.pieces[fragment.index] = fragment.payload
        if len(partial.pieces) < partial.count:
            return None
        del self._partial[fragment.message_id]
        return partial.kind, b"".join(partial.pieces[i] for i in range(partial.count))

    @property
    def pending(self) -> int:
        return len(self._partial)
