"""Binding-level fragmentation of A2A frames over DTLS records: see :mod:`._dtls`."""

from __future__ import annotations

import struct
from collections.abc import Callable

import attrs

from sealwire_tls._dtls_errors import (
    DtlsConfigurationError,
    DtlsFragmentError,
    DtlsStateError,
)

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
