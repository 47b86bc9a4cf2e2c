"""The TLS presentation language as MLS uses it (RFC 9420 §2.1).

Primitives only: ``uint8`` .. ``uint64``, the MLS variable-length integer
(§2.1.2), ``opaque<V>`` and ``T<V>`` (a varint byte length then the
contents), ``optional<T>`` (a presence octet) and fixed-size arrays.

Decoding is strict: the ``0b11`` varint prefix and non-minimal varints are
rejected, every length is checked against the remaining input before
slicing, a vector's items must consume exactly the vector's bytes, and
:func:`decode_exact` rejects trailing bytes. Every failure is an
:class:`~sealwire_mls.errors.MLSDecodeError` that names the field.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import TypeVar

from sealwire_mls.errors import MLSDecodeError, MLSLocalError

__all__ = ["VARINT_MAX", "Reader", "Writer", "decode_exact", "encode_varint"]

T = TypeVar("T")

#: Largest value the §2.1.2 varint can carry (30 bits; prefix 0b11 is invalid).
VARINT_MAX = (1 << 30) - 1

# Smallest value each longer varint form may carry (smaller ones must use a
# shorter form: §2.1.2 requires the minimum encoding).
_VARINT_MIN = {1: 0, 2: 1 << 6, 4: 1 << 14}


def encode_varint(value: int) -> bytes:
    """Encode ``value`` as an MLS varint (RFC 9420 §2.1.2), minimal length."""
    if value < 0 or value > VARINT_MAX:
        raise MLSLocalError(f"varint out of range: {value}")
    if value < 1 << 6:
        return value.to_bytes(1, "big")
    if value < 1 << 14:
        return (value | 0x4000).to_bytes(2, "big")
    return (value | 0x8000_0000).to_bytes(4, "big")


class Reader:
    """A cursor over bytes that decodes the presentation language strictly."""

    __slots__ = ("_buf", "_end", "_pos")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._buf = memoryview(data).cast("B") if isinstance(data, memoryview) else memoryview(data)
        self._pos = 0
        self._end = len(self._buf)

    @property
    def position(self) -> int:
        """How many bytes were consumed so far (a mark for :meth:`since`)."""
        return self._pos

    def since(self, mark: int) -> bytes:
        """The bytes consumed from ``mark`` (a :attr:`position`) up to now."""
        return bytes(self._buf[mark : self._pos])

    def remaining(self) -> int:
        """Bytes not yet consumed."""
        return self._end - self._pos

    def _take(self, n: int, field: str) -> memoryview:
        if n < 0 or n > self._end - self._pos:
            raise MLSDecodeError(f"needs {n} bytes, {self._end - self._pos} remain", field=field)
        start = self._pos
        self._pos = start + n
        return self._buf[start : self._pos]

    def _uint(self, n: int, field: str) -> int:
        # The hot path of every decode (a 10,000-leaf tree reads ~200,000 integers):
        # bounds check and slice in place, no helper call.
        pos = self._pos
        if n > self._end - pos:
            raise MLSDecodeError(f"needs {n} bytes, {self._end - pos} remain", field=field)
        self._pos = pos + n
        return int.from_bytes(self._buf[pos : pos + n], "big")

    def uint8(self, field: str = "uint8") -> int:
        """Read a ``uint8``."""
        pos = self._pos
        if pos >= self._end:
            raise MLSDecodeError(f"needs 1 bytes, {self._end - pos} remain", field=field)
        self._pos = pos + 1
        return self._buf[pos]

    def uint16(self, field: str = "uint16") -> int:
        """Read a big-endian ``uint16``."""
        return self._uint(2, field)

    def uint32(self, field: str = "uint32") -> int:
        """Read a big-endian ``uint32``."""
        return self._uint(4, field)

    def uint64(self, field: str = "uint64") -> int:
        """Read a big-endian ``uint64``."""
        return self._uint(8, field)

    def varint(self, field: str = "varint") -> int:
        """Read an MLS varint (§2.1.2); reject prefix ``0b11`` and non-minimal forms."""
        first = self.uint8(field)
        prefix = first >> 6
        if prefix == 0:
            return first
        if prefix == 3:
            raise MLSDecodeError("invalid varint prefix 0b11", field=field)
        size = 1 << prefix
        value = ((first & 0x3F) << (8 * (size - 1))) | self._uint(size - 1, field)
        if value < _VARINT_MIN[size]:
            raise MLSDecodeError("non-minimal varint", field=field)
        return value

    def fixed(self, n: int, field: str = "fixed") -> bytes:
        """Read a fixed-size ``opaque[n]``."""
        return bytes(self._take(n, field))

    def opaque(self, field: str = "opaque") -> bytes:
        """Read ``opaque<V>``: a varint byte length, then that many bytes."""
        n = self.varint(field)
        pos = self._pos
        if n > self._end - pos:
            raise MLSDecodeError(f"needs {n} bytes, {self._end - pos} remain", field=field)
        self._pos = pos + n
        return bytes(self._buf[pos : pos + n])

    def vector(self, item: Callable[[Reader], T], field: str = "vector") -> list[T]:
        """Read ``T<V>``: a varint byte length; items must fill exactly that slice."""
        length = self.varint(field)
        if length > self._end - self._pos:
            raise MLSDecodeError(
                f"needs {length} bytes, {self._end - self._pos} remain", field=field
            )
        # Items are read by this reader, bounded to the vector's end (no reader per vector).
        outer_end, end = self._end, self._pos + length
        self._end = end
        items: list[T] = []
        try:
            while self._pos < end:
                before = self._pos
                items.append(item(self))
                if self._pos == before:
                    # An item that consumes nothing would loop forever.
                    raise MLSDecodeError("vector item consumed no bytes", field=field)
        finally:
            self._end = outer_end
        return items

    def uint16_vector(self, field: str = "vector") -> tuple[int, ...]:
        """Read ``uint16 values<V>`` in one step (every leaf's Capabilities has five)."""
        length = self.varint(field)
        pos = self._pos
        if length > self._end - pos:
            raise MLSDecodeError(f"needs {length} bytes, {self._end - pos} remain", field=field)
        if length % 2:
            raise MLSDecodeError("needs 2 bytes, 1 remain", field=field)
        self._pos = pos + length
        return struct.unpack_from(f">{length // 2}H", self._buf, pos)

    def optional(self, item: Callable[[Reader], T], field: str = "optional") -> T | None:
        """Read ``optional<T>``: presence octet 0 (absent) or 1 (present)."""
        present = self.uint8(field)
        if present == 0:
            return None
        if present != 1:
            raise MLSDecodeError(f"invalid presence octet {present}", field=field)
        return item(self)

    def finish(self, field: str = "message") -> None:
        """Raise :class:`MLSDecodeError` if any bytes remain."""
        if self._pos != self._end:
            raise MLSDecodeError(f"{self._end - self._pos} trailing bytes", field=field)


class Writer:
    """An append-only encoder; every method returns ``self`` for chaining."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def _uint(self, value: int, n: int) -> Writer:
        if value < 0 or value >= 1 << (8 * n):
            raise MLSLocalError(f"value {value} does not fit in uint{8 * n}")
        self._buf += value.to_bytes(n, "big")
        return self

    def uint8(self, value: int) -> Writer:
        """Append a ``uint8``."""
        return self._uint(value, 1)

    def uint16(self, value: int) -> Writer:
        """Append a ``uint16``."""
        return self._uint(value, 2)

    def uint32(self, value: int) -> Writer:
        """Append a ``uint32``."""
        return self._uint(value, 4)

    def uint64(self, value: int) -> Writer:
        """Append a ``uint64``."""
        return self._uint(value, 8)

    def varint(self, value: int) -> Writer:
        """Append an MLS varint (§2.1.2)."""
        self._buf += encode_varint(value)
        return self

    def fixed(self, data: bytes) -> Writer:
        """Append raw bytes (``opaque[n]``; the caller knows ``n``)."""
        self._buf += data
        return self

    def opaque(self, data: bytes) -> Writer:
        """Append ``opaque<V>``."""
        self._buf += encode_varint(len(data))
        self._buf += data
        return self

    def vector(self, items: Iterable[T], item: Callable[[Writer, T], object]) -> Writer:
        """Append ``T<V>``: items encoded, prefixed with their total byte length."""
        inner = Writer()
        for value in items:
            item(inner, value)
        return self.opaque(inner.getvalue())

    def optional(self, value: T | None, item: Callable[[Writer, T], object]) -> Writer:
        """Append ``optional<T>``."""
        if value is None:
            return self.uint8(0)
        self.uint8(1)
        item(self, value)
        return self

    def getvalue(self) -> bytes:
        """The bytes written so far."""
        return bytes(self._buf)


def decode_exact(
    data: bytes | bytearray | memoryview, decode: Callable[[Reader], T], field: str = "message"
) -> T:
    """Decode one value that must span all of ``data`` (no trailing bytes)."""
    reader = Reader(data)
    value = decode(reader)
    reader.finish(field)
    return value
