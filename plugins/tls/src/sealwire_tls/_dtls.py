"""DTLS (RFC 6347) for the ``dtls`` binding: a sans-I/O engine around pyOpenSSL's memory BIOs.

This module gathers the engine's parts, each in its own module: errors and the
version table (:mod:`._dtls_errors`), records, the replay window and cookies
(:mod:`._dtls_records`), the OpenSSL context and the engine (:mod:`._dtls_engine`),
and binding-level fragmentation (:mod:`._dtls_fragments`).

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

from sealwire_tls._dtls_engine import (
    DEFAULT_MTU,
    DtlsEngine,
    dtls_context,
)
from sealwire_tls._dtls_errors import (
    DTLS_1_2,
    DTLS_1_3,
    VERSIONS,
    DtlsAuthenticationError,
    DtlsConfigurationError,
    DtlsDecodeError,
    DtlsEpochError,
    DtlsFragmentError,
    DtlsHandshakeError,
    DtlsReplayError,
    DtlsStateError,
    DtlsVersion,
    dtls_version,
)
from sealwire_tls._dtls_fragments import (
    DEFAULT_MAX_MESSAGE,
    FRAGMENT_HEADER,
    MAX_FRAGMENTS,
    MAX_PENDING_MESSAGES,
    REASSEMBLY_TIMEOUT,
    Fragment,
    Fragmenter,
    Reassembler,
)
from sealwire_tls._dtls_records import (
    COOKIE_ROTATION,
    MAX_RECORD,
    RECORD_HEADER,
    REPLAY_WINDOW,
    ContentType,
    CookieJar,
    Record,
    ReplayWindow,
    split_records,
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
