"""A ratchet state as a JSON-ready record, for a protocol's own stored session format.

:func:`state_to_record` gives a ``dict`` of JSON types (bytes as unpadded
URL-safe base64); :func:`state_from_record` reads one back as untrusted input:
every field is type- and length-checked, lists are bounded, and anything wrong
is a :class:`RatchetDecodeError` naming the field, never a crash. The record
holds secrets (root, chain and message keys, the private ratchet key): it goes
only into the agent's encrypted store.

The field names are those of the Signal plugin's stored sessions
(``sealwire-signal/session`` version 1), which embed this record unchanged
(its version 2 records hold the binary form below).
:func:`state_to_bytes` / :func:`state_from_bytes` are a compact binary form of
the same state, for a protocol that commits it on every message.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from typing import Any

from sealwire.ratchet._chain import MAX_PREVIOUS_CHAINS, MAX_SKIPPED_KEYS, RatchetState
from sealwire.ratchet._crypto import KEY_LEN, DHKeyPair
from sealwire.ratchet._errors import RatchetDecodeError

__all__ = [
    "MAX_STORED_PREVIOUS",
    "RecordFields",
    "b64_field",
    "state_from_bytes",
    "state_from_record",
    "state_to_bytes",
    "state_to_record",
]

MAX_STORED_PREVIOUS = 64
"""Earlier chain ids read from a record: more than MAX_PREVIOUS_CHAINS (the
newest of them are kept), few enough that a corrupted record costs nothing."""
_MAX_U32 = 0xFFFF_FFFF


def b64_field(data: bytes) -> str:
    """Bytes as a stored record's field: unpadded URL-safe base64."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _opt(data: bytes | None) -> str | None:
    return None if data is None else b64_field(data)


def _unb64(text: Any, field: str, length: int | None = None) -> bytes:
    if not isinstance(text, str):
        raise RatchetDecodeError("expected base64 text", field=field)
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise RatchetDecodeError("bad base64", field=field) from None
    if length is not None and len(raw) != length:
        raise RatchetDecodeError(f"expected {length} bytes", field=field)
    return raw


class RecordFields:
    """Typed, bounded access to one decoded JSON object of a stored record (fields
    of bytes as :func:`b64_field` writes them); RatchetDecodeError naming the field."""

    def __init__(self, record: Any, what: str) -> None:
        if not isinstance(record, dict):
            raise RatchetDecodeError("expected an object", field=what)
        self.record, self.what = record, what

    def _get(self, name: str, kind: type | tuple[type, ...]) -> Any:
        value = self.record.get(name)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise RatchetDecodeError("missing or mistyped", field=f"{self.what}.{name}")
        return value

    def text(self, name: str) -> str:
        return str(self._get(name, str))

    def integer(self, name: str, limit: int = _MAX_U32) -> int:
        value = int(self._get(name, int))
        if not 0 <= value <= limit:
            raise RatchetDecodeError("out of range", field=f"{self.what}.{name}")
        return value

    def number(self, name: str) -> float:
        value = float(self._get(name, (int, float)))
        if not math.isfinite(value):
            raise RatchetDecodeError("not a finite number", field=f"{self.what}.{name}")
        return value

    def flag(self, name: str) -> bool:
        return bool(self._get(name, bool))

    def raw(self, name: str, length: int | None = None) -> bytes:
        return _unb64(self._get(name, str), f"{self.what}.{name}", length)

    def optional_raw(self, name: str, length: int | None = None) -> bytes | None:
        return None if self.record.get(name) is None else self.raw(name, length)

    def items(self, name: str, limit: int) -> list[Any]:
        value = self._get(name, list)
        if len(value) > limit:
            raise RatchetDecodeError("too many entries", field=f"{self.what}.{name}")
        return list(value)


def state_to_record(s: RatchetState) -> dict[str, Any]:
    """The state as a JSON-ready mapping (secrets included: store it encrypted)."""
    return {
        "dhs": b64_field(s.dhs.private_bytes_for_storage()), "dhr": _opt(s.dhr),
        "rk": b64_field(s.rk), "cks": _opt(s.cks), "ckr": _opt(s.ckr),
        "ns": s.ns, "nr": s.nr, "pn": s.pn,
        "skipped": [
            [b64_field(c), n, b64_field(mk), exp] for (c, n), (mk, exp) in s.skipped.items()
        ],
        "previous": [b64_field(c) for c in s.previous], "he": s.header_encryption,
        "hks": _opt(s.hks), "hkr": _opt(s.hkr), "nhks": _opt(s.nhks), "nhkr": _opt(s.nhkr),
    }  # fmt: skip


def _skipped(f: RecordFields) -> dict[tuple[bytes, int], tuple[bytes, float]]:
    skipped: dict[tuple[bytes, int], tuple[bytes, float]] = {}
    for entry in f.items("skipped", MAX_SKIPPED_KEYS):
        if not isinstance(entry, list) or len(entry) != 4:
            raise RatchetDecodeError("bad skipped-key entry", field="ratchet.skipped")
        e = RecordFields(dict(zip(("c", "n", "mk", "exp"), entry, strict=True)), "ratchet.skipped")
        skipped[(e.raw("c", KEY_LEN), e.integer("n"))] = (e.raw("mk", KEY_LEN), e.number("exp"))
    return skipped


def state_from_record(record: Any) -> RatchetState:
    """Read a record made by :func:`state_to_record`; RatchetDecodeError if malformed."""
    f = RecordFields(record, "ratchet")
    previous = [
        _unb64(c, "ratchet.previous", KEY_LEN) for c in f.items("previous", MAX_STORED_PREVIOUS)
    ]
    return RatchetState(
        dhs=DHKeyPair.from_private_bytes(f.raw("dhs", KEY_LEN)),
        dhr=f.optional_raw("dhr", KEY_LEN), rk=f.raw("rk", KEY_LEN),
        cks=f.optional_raw("cks", KEY_LEN), ckr=f.optional_raw("ckr", KEY_LEN),
        ns=f.integer("ns"), nr=f.integer("nr"), pn=f.integer("pn"),
        skipped=_skipped(f), previous=tuple(previous[-MAX_PREVIOUS_CHAINS:]),
        header_encryption=f.flag("he"),
        hks=f.optional_raw("hks", KEY_LEN), hkr=f.optional_raw("hkr", KEY_LEN),
        nhks=f.optional_raw("nhks", KEY_LEN), nhkr=f.optional_raw("nhkr", KEY_LEN),
    )  # fmt: skip


# -- the compact binary form -----------------------------------------------------------

BINARY_VERSION = 1
_OPTIONAL = ("dhr", "cks", "ckr", "hks", "hkr", "nhks", "nhkr")
_SKIPPED_ENTRY = struct.Struct(">32sI32sd")
_COUNTERS = struct.Struct(">III")


def state_to_bytes(s: RatchetState) -> bytes:
    """The state as compact bytes, for a protocol that commits it on every message
    (a few µs, against tens for the JSON record). Layout, big-endian::

        version (1) = 1 || flags (1): bit 0 header encryption, bits 1-7 which of
        dhr, cks, ckr, hks, hkr, nhks, nhkr are present || dhs private (32) ||
        rk (32) || the present optional keys (32 each, in that order) ||
        ns, nr, pn (uint32 each) || u8 count, previous chain ids (32 each) ||
        u16 count, skipped keys (chain id 32, n uint32, key 32, expiry float64)
    """
    flags = int(s.header_encryption)
    optional = []
    for bit, name in enumerate(_OPTIONAL, start=1):
        value = getattr(s, name)
        if value is not None:
            flags |= 1 << bit
            optional.append(value)
    parts = [
        bytes((BINARY_VERSION, flags)), s.dhs.private_bytes_for_storage(), s.rk, *optional,
        _COUNTERS.pack(s.ns, s.nr, s.pn), bytes((len(s.previous),)), *s.previous,
        len(s.skipped).to_bytes(2, "big"),
    ]  # fmt: skip
    parts += [_SKIPPED_ENTRY.pack(c, n, mk, exp) for (c, n), (mk, exp) in s.skipped.items()]
    return b"".join(parts)


def state_from_bytes(data: bytes) -> RatchetState:
    """Read :func:`state_to_bytes` output (untrusted): RatchetDecodeError if malformed."""
    view = memoryview(data)
    pos = 0

    def take(n: int, field: str) -> bytes:
        nonlocal pos
        if pos + n > len(view):
            raise RatchetDecodeError("truncated", field=f"ratchet.{field}")
        out = bytes(view[pos : pos + n])
        pos += n
        return out

    version, flags = take(2, "version")
    if version != BINARY_VERSION:
        raise RatchetDecodeError(f"unknown version {version}", field="ratchet.version")
    dhs = DHKeyPair.from_private_bytes(take(KEY_LEN, "dhs"))
    rk = take(KEY_LEN, "rk")
    optional = {
        name: take(KEY_LEN, name) if flags >> bit & 1 else None
        for bit, name in enumerate(_OPTIONAL, start=1)
    }
    ns, nr, pn = _COUNTERS.unpack(take(_COUNTERS.size, "counters"))
    count = take(1, "previous")[0]
    if count > MAX_STORED_PREVIOUS:
        raise RatchetDecodeError("too many entries", field="ratchet.previous")
    previous = tuple(take(KEY_LEN, "previous") for _ in range(count))
    count = int.from_bytes(take(2, "skipped"), "big")
    if count > MAX_SKIPPED_KEYS:
        raise RatchetDecodeError("too many entries", field="ratchet.skipped")
    skipped: dict[tuple[bytes, int], tuple[bytes, float]] = {}
    for _ in range(count):
        chain, n, mk, exp = _SKIPPED_ENTRY.unpack(take(_SKIPPED_ENTRY.size, "skipped"))
        if not math.isfinite(exp):
            raise RatchetDecodeError("not a finite number", field="ratchet.skipped")
        skipped[(chain, n)] = (mk, exp)
    if pos != len(view):
        raise RatchetDecodeError("trailing bytes", field="ratchet")
    return RatchetState(
        dhs=dhs, rk=rk, ns=ns, nr=nr, pn=pn, skipped=skipped,
        previous=previous[-MAX_PREVIOUS_CHAINS:], header_encryption=bool(flags & 1),
        **optional,
    )  # fmt: skip
