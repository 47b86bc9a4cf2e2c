"""DTLS records (RFC 6347 §4.1), the anti-replay window and stateless cookies: see
:mod:`._dtls`, points 1, 2 and 4."""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import struct
from collections.abc import Callable

import attrs

from sealwire_tls._dtls_errors import (
    DtlsDecodeError,
    DtlsReplayError,
)

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
