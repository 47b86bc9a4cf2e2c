"""Versioned serialization of sessions and prekeys for the agent's store.

The store encrypts records at rest; this module still decodes them as untrusted
input (a corrupted file must give EnvelopeDecodeError naming the field, never a
crash), and a newer version than this release writes is refused
(UnsupportedVersionError).

Sessions, version 2 (:data:`SESSION_VERSION`), are binary, written on every
message. Integers big-endian, ``opaque16<x>``/``opaque32<x>`` a length then the
bytes::

    struct {
        uint8  magic[4] = "SWSS";
        uint8  version = 2;
        uint8  flags;                 // bit 0: pending present, bit 1: peer_holds present
        opaque16 local_id;            // UTF-8, <= 256 bytes
        opaque16 peer_id;             // UTF-8, <= 256 bytes
        uint8  peer_identity_key[32];
        uint8  associated_data[66];   // X3DH AD
        uint8  base_key[32];          // EK_A
        uint8  peer_card_sha256[32];  // the card itself is stored apart, once
        uint8  peer_holds[32];        // when bit 1: SHA-256 of our card as the peer holds it
        opaque32 pending;             // when bit 0: _wire.PrekeyPart
        opaque32 ratchet;             // sealwire.ratchet.state_to_bytes
    } SessionRecord;

The peer's signed card is not in the record: the caller stores it once per
distinct card and hands :func:`decode_session` a lookup by SHA-256, whose
answer must hash to the digest the record names.

Version 1 sessions, and prekeys (version 1), are compact JSON objects
``{"format": ..., "v": N, ...}`` with bytes in unpadded URL-safe base64 (a v1
session embeds its card). Reading an older JSON version runs the registered
migrations in order (``MIGRATIONS[(format, v)]`` turns version ``v`` into
``v + 1``); a v1 session is read as is and written back as version 2.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs

from sealwire.errors import LocalProtocolError
from sealwire.ratchet import (
    RecordFields,
    b64_field,
    state_from_bytes,
    state_from_record,
    state_to_bytes,
)
from sealwire_signal._crypto import KEY_LEN
from sealwire_signal._errors import EnvelopeDecodeError, UnsupportedVersionError, signal_errors
from sealwire_signal._session import Session
from sealwire_signal._wire import (
    CARD_DIGEST_LEN,
    MAX_ID_LEN,
    PrekeyPart,
    Reader,
    card_digest,
    opaque,
)

__all__ = [
    "CARD_DIGEST_LEN",
    "MIGRATIONS",
    "PREKEY_FORMAT",
    "SESSION_FORMAT",
    "SESSION_MAGIC",
    "SESSION_VERSION",
    "STATE_VERSION",
    "CardLookup",
    "StoredPrekey",
    "card_digest",
    "decode_prekey",
    "decode_session",
    "encode_prekey",
    "encode_session",
    "is_current_record",
]

STATE_VERSION = 1
"""The version of the JSON records: prekeys, and sessions as written before version 2."""
SESSION_VERSION = 2
"""The version of the session records this release writes (binary, see above)."""
SESSION_FORMAT = "sealwire-signal/session"
PREKEY_FORMAT = "sealwire-signal/prekey"
SESSION_MAGIC = b"SWSS"
_FLAG_PENDING = 0x01
_FLAG_PEER_HOLDS = 0x02
_ASSOCIATED_DATA_LEN = 2 * (1 + KEY_LEN)
"""X3DH AD: the encoded identity keys of both sides (0x05 || 32 bytes each)."""
MAX_RECORD_LEN = 1 << 20
"""A session holds at most MAX_SKIPPED_KEYS skipped keys (~200 KiB as JSON, ~100 KiB
binary) and a pending part of at most MAX_CARD_LEN plus ~4.5 KiB; 1 MiB bounds it."""

CardLookup = Callable[[bytes], bytes | None]
"""The peer card stored under a SHA-256 digest, or None: how a v2 record gets its card."""

Record = dict[str, Any]
MIGRATIONS: dict[tuple[str, int], Callable[[Record], Record]] = {}
"""Upgrade steps, ``(format, v) -> function(record at v) -> record at v + 1``."""


@attrs.frozen(kw_only=True)
class StoredPrekey:
    """A prekey's secret as kept in the store.

    ``kind`` is ``spk`` (signed X25519), ``opk`` (one-time X25519) or ``kem``
    (ML-KEM-768; ``private`` is its 64-byte seed). ``retired`` is when a newer
    key replaced it (kept for a grace period), ``last_resort`` marks the PQSPK.
    """

    kind: str
    id: int
    private: bytes = attrs.field(repr=False)
    created: float
    signature: bytes = b""
    last_resort: bool = False
    retired: float | None = None
    mldsa_signature: bytes | None = None


def _load(data: bytes, fmt: str) -> Record:
    if len(data) > MAX_RECORD_LEN:
        raise EnvelopeDecodeError("record too large", field=fmt)
    try:
        record = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise EnvelopeDecodeError("not JSON", field=fmt) from None
    head = RecordFields(record, fmt)
    if head.text("format") != fmt:
        raise EnvelopeDecodeError("wrong record format", field=fmt)
    version = head.integer("v")
    if version > STATE_VERSION:
        raise UnsupportedVersionError(f"state version {version}", field=fmt)
    while version < STATE_VERSION:
        migrate = MIGRATIONS.get((fmt, version))
        if migrate is None:
            raise UnsupportedVersionError(f"no migration from {version}", field=fmt)
        record = migrate(record)
        version += 1
    return dict(record)


def _dump(record: Record) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def encode_session(session: Session) -> bytes:
    """Serialize a session (format :data:`SESSION_MAGIC`, version :data:`SESSION_VERSION`),
    naming its peer card by :func:`card_digest`: the caller stores the card itself."""
    flags = 0 if session.pending is None else _FLAG_PENDING
    flags |= 0 if session.peer_holds is None else _FLAG_PEER_HOLDS
    parts = [
        SESSION_MAGIC, bytes((SESSION_VERSION, flags)),
        _agent_id(session.local_id), _agent_id(session.peer_id),
        session.peer_identity_key, session.associated_data, session.base_key,
        card_digest(session.peer_card),
    ]  # fmt: skip
    if session.peer_holds is not None:
        parts.append(session.peer_holds)
    if session.pending is not None:
        parts.append(opaque(session.pending.to_bytes(), 4))
    parts.append(opaque(state_to_bytes(session.ratchet), 4))
    return b"".join(parts)


def decode_session(data: bytes, cards: CardLookup) -> Session:
    """Read a stored session (a v2 record, or an older JSON one); EnvelopeDecodeError
    naming the field if corrupt, UnsupportedVersionError if newer than this release.

    ``cards`` finds the peer card a v2 record names by its SHA-256 (a v1 record
    embeds its card and does not call it); a missing card, or one that does not
    hash to the digest, is an EnvelopeDecodeError.
    """
    with signal_errors():  # the ratchet codec's errors, as this plugin's
        if data[:1] == b"{":
            return _decode_session_v1(data)
        return _decode_session_v2(data, cards)


def is_current_record(data: bytes | None) -> bool:
    """Whether ``data`` claims to be a session record of this release's format
    (a record to rewrite otherwise); says nothing of its validity."""
    return data is not None and data[:5] == SESSION_MAGIC + bytes((SESSION_VERSION,))


def _decode_session_v2(data: bytes, cards: CardLookup) -> Session:
    if len(data) > MAX_RECORD_LEN:
        raise EnvelopeDecodeError("record too large", field="session")
    r = Reader(data, "session")
    if r.take(len(SESSION_MAGIC), "magic") != SESSION_MAGIC:
        raise EnvelopeDecodeError("wrong record format", field="session.magic")
    version = r.uint(1, "version")
    if version > SESSION_VERSION:
        raise UnsupportedVersionError(f"state version {version}", field="session.version")
    if version != SESSION_VERSION:  # binary records start at version 2
        raise EnvelopeDecodeError(f"no binary version {version}", field="session.version")
    flags = r.uint(1, "flags")
    if flags & ~(_FLAG_PENDING | _FLAG_PEER_HOLDS):
        raise EnvelopeDecodeError("unknown flags", field="session.flags")
    local_id, peer_id = r.text("local_id"), r.text("peer_id")
    peer_ik = r.take(KEY_LEN, "peer_identity_key")
    ad = r.take(_ASSOCIATED_DATA_LEN, "associated_data")
    base_key = r.take(KEY_LEN, "base_key")
    digest = r.take(CARD_DIGEST_LEN, "peer_card")
    holds = r.take(CARD_DIGEST_LEN, "peer_holds") if flags & _FLAG_PEER_HOLDS else None
    pending = None
    if flags & _FLAG_PENDING:
        part = Reader(r.opaque(4, MAX_RECORD_LEN, "pending"), "session.pending")
        pending = PrekeyPart.read(part)
        part.finish()
    ratchet = state_from_bytes(r.opaque(4, MAX_RECORD_LEN, "ratchet"))
    r.finish()
    card = cards(digest)
    if card is None:
        raise EnvelopeDecodeError("the stored card is missing", field="session.peer_card")
    if card_digest(card) != digest:
        raise EnvelopeDecodeError("the stored card does not match", field="session.peer_card")
    return Session(
        local_id=local_id, peer_id=peer_id, peer_identity_key=peer_ik, associated_data=ad,
        base_key=base_key, ratchet=ratchet, pending=pending, peer_card=card, peer_holds=holds,
    )  # fmt: skip


def _decode_session_v1(data: bytes) -> Session:
    f = RecordFields(_load(data, SESSION_FORMAT), "session")
    pending_raw = f.optional_raw("pending")
    pending = None
    if pending_raw is not None:
        reader = Reader(pending_raw, "session.pending")
        pending = PrekeyPart.read(reader)
        reader.finish()
    return Session(
        local_id=f.text("local"), peer_id=f.text("peer"),
        peer_identity_key=f.raw("peer_ik", KEY_LEN),
        associated_data=f.raw("ad", _ASSOCIATED_DATA_LEN),
        base_key=f.raw("base", KEY_LEN), ratchet=state_from_record(f.record.get("ratchet")),
        pending=pending, peer_card=f.raw("card"),
    )  # fmt: skip


def _agent_id(agent_id: str) -> bytes:
    data = agent_id.encode()
    if len(data) > MAX_ID_LEN:  # what the reader refuses is never written
        raise LocalProtocolError(f"agent id longer than {MAX_ID_LEN} bytes")
    return opaque(data, 2)


def encode_prekey(prekey: StoredPrekey) -> bytes:
    return _dump({
        "format": PREKEY_FORMAT, "v": STATE_VERSION, "kind": prekey.kind, "id": prekey.id,
        "private": b64_field(prekey.private), "created": prekey.created,
        "signature": b64_field(prekey.signature), "last_resort": prekey.last_resort,
        "retired": prekey.retired,
        **({} if prekey.mldsa_signature is None
           else {"mldsa_signature": b64_field(prekey.mldsa_signature)}),
    })  # fmt: skip


def decode_prekey(data: bytes) -> StoredPrekey:
    """Read a stored prekey (migrating older versions); EnvelopeDecodeError if corrupt."""
    with signal_errors():  # the record reader's errors, as this plugin's
        return _decode_prekey(data)


def _decode_prekey(data: bytes) -> StoredPrekey:
    f = RecordFields(_load(data, PREKEY_FORMAT), "prekey")
    kind = f.text("kind")
    if kind not in ("spk", "opk", "kem"):
        raise EnvelopeDecodeError("unknown prekey kind", field="prekey.kind")
    retired = None if f.record.get("retired") is None else f.number("retired")
    return StoredPrekey(
        kind=kind, id=f.integer("id"),
        private=f.raw("private", 64 if kind == "kem" else KEY_LEN),
        created=f.number("created"), signature=f.raw("signature"),
        last_resort=f.flag("last_resort"), retired=retired,
        mldsa_signature=f.optional_raw("mldsa_signature"),
    )  # fmt: skip
