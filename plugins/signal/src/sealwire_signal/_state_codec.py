"""Versioned serialization of sessions and prekeys for the agent's store.

Records are compact JSON objects ``{"format": ..., "v": N, ...}`` with bytes in
unpadded URL-safe base64. The store encrypts them at rest; this module still
decodes them as untrusted input (a corrupted file must give EnvelopeDecodeError,
never a crash). Reading an older version runs the registered migrations in
order (``MIGRATIONS[(format, v)]`` turns version ``v`` into ``v + 1``); a newer
version than :data:`STATE_VERSION` is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs

from sealwire.ratchet import RecordFields, b64_field, state_from_record, state_to_record
from sealwire_signal._crypto import KEY_LEN
from sealwire_signal._errors import EnvelopeDecodeError, UnsupportedVersionError, signal_errors
from sealwire_signal._session import Session
from sealwire_signal._wire import PrekeyPart, Reader

__all__ = [
    "MIGRATIONS",
    "PREKEY_FORMAT",
    "SESSION_FORMAT",
    "STATE_VERSION",
    "StoredPrekey",
    "decode_prekey",
    "decode_session",
    "encode_prekey",
    "encode_session",
]

STATE_VERSION = 1
SESSION_FORMAT = "sealwire-signal/session"
PREKEY_FORMAT = "sealwire-signal/prekey"
MAX_RECORD_LEN = 1 << 20
"""A session holds at most MAX_SKIPPED_KEYS skipped keys (~200 KiB as JSON); 1 MiB bounds it."""

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
    """Serialize a session (format :data:`SESSION_FORMAT`, version :data:`STATE_VERSION`)."""
    pending = None if session.pending is None else session.pending.to_bytes()
    return _dump({
        "format": SESSION_FORMAT, "v": STATE_VERSION, "local": session.local_id,
        "peer": session.peer_id, "peer_ik": b64_field(session.peer_identity_key),
        "ad": b64_field(session.associated_data), "base": b64_field(session.base_key),
        "pending": None if pending is None else b64_field(pending),
        "card": b64_field(session.peer_card),
        "ratchet": state_to_record(session.ratchet),
    })  # fmt: skip


def decode_session(data: bytes) -> Session:
    """Read a stored session (migrating older versions); EnvelopeDecodeError if corrupt."""
    with signal_errors():  # the ratchet record's errors, as this plugin's
        return _decode_session(data)


def _decode_session(data: bytes) -> Session:
    f = RecordFields(_load(data, SESSION_FORMAT), "session")
    pending_raw = f.optional_raw("pending")
    pending = None
    if pending_raw is not None:
        reader = Reader(pending_raw, "session.pending")
        pending = PrekeyPart.read(reader)
        reader.finish()
    return Session(
        local_id=f.text("local"), peer_id=f.text("peer"),
        peer_identity_key=f.raw("peer_ik", KEY_LEN), associated_data=f.raw("ad", 66),
        base_key=f.raw("base", KEY_LEN), ratchet=state_from_record(f.record.get("ratchet")),
        pending=pending, peer_card=f.raw("card"),
    )  # fmt: skip


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
