"""The DTLS engine on pyOpenSSL's memory BIOs and its OpenSSL context: see :mod:`._dtls`,
points 2, 3 and 5."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

from sealwire_tls._dtls_errors import (
    VERSIONS,
    DtlsAuthenticationError,
    DtlsConfigurationError,
    DtlsDecodeError,
    DtlsEpochError,
    DtlsHandshakeError,
    DtlsStateError,
    DtlsVersion,
)
from sealwire_tls._dtls_records import (
    CLIENT_HELLO,
    HANDSHAKE_HEADER,
    MAX_PLAINTEXT,
    RECORD_HEADER,
    ContentType,
    CookieJar,
    Record,
    ReplayWindow,
    pack_datagrams,
    split_records,
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
