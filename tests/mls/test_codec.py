"""The RFC 9420 §2.1 presentation-language codec: strictness and round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealwire_mls.codec import VARINT_MAX, Reader, Writer, decode_exact, encode_varint
from sealwire_mls.errors import MLSDecodeError, MLSLocalError

# RFC 9000 §A.1-style samples as RFC 9420 §2.1.2 restricts them (no 8-byte form).
_VARINTS = [
    (0, "00"),
    (37, "25"),
    (63, "3f"),
    (64, "4040"),
    (15293, "7bbd"),
    (16383, "7fff"),
    (16384, "80004000"),
    (494878333, "9d7f3e7d"),
    (VARINT_MAX, "bfffffff"),
]


@pytest.mark.parametrize(("value", "encoded"), _VARINTS)
def test_varint_known_encodings(value: int, encoded: str) -> None:
    assert encode_varint(value).hex() == encoded
    assert decode_exact(bytes.fromhex(encoded), Reader.varint) == value


@pytest.mark.parametrize("encoded", ["4025", "80000025", "80003fff", "c000000000000000", "40"])
def test_varint_rejects_bad_forms(encoded: str) -> None:
    with pytest.raises(MLSDecodeError):
        decode_exact(bytes.fromhex(encoded), Reader.varint)


@pytest.mark.parametrize("value", [-1, VARINT_MAX + 1])
def test_varint_encode_range(value: int) -> None:
    with pytest.raises(MLSLocalError):
        encode_varint(value)


def test_lengths_checked_before_slicing() -> None:
    with pytest.raises(MLSDecodeError) as info:
        decode_exact(bytes.fromhex("05616263"), lambda r: r.opaque("group_id"))
    assert info.value.field == "group_id"
    with pytest.raises(MLSDecodeError):
        decode_exact(b"\x01\x02", Reader.uint8)  # trailing byte
    with pytest.raises(MLSDecodeError):
        decode_exact(b"\x02", lambda r: r.optional(Reader.uint8))  # bad presence octet


def test_vector_items_must_fill_exactly() -> None:
    # 3 bytes declared for uint16 items: the second item runs past the slice.
    with pytest.raises(MLSDecodeError):
        decode_exact(bytes.fromhex("03000100020000"), lambda r: r.vector(Reader.uint16))
    with pytest.raises(MLSDecodeError):  # an item that consumes nothing
        decode_exact(bytes.fromhex("0100"), lambda r: r.vector(lambda _r: None))


def test_writer_range_checks() -> None:
    with pytest.raises(MLSLocalError):
        Writer().uint8(256)
    with pytest.raises(MLSLocalError):
        Writer().uint64(-1)


_Record = tuple[int, int, int, int, bytes, list[bytes], int | None]


def _encode(record: _Record) -> bytes:
    a, b, c, d, blob, items, maybe = record
    w = Writer().uint8(a).uint16(b).uint32(c).uint64(d).opaque(blob)
    w.vector(items, Writer.opaque).optional(maybe, Writer.varint)
    return w.fixed(b"\xaa\xbb").getvalue()


def _decode(r: Reader) -> _Record:
    rec = (
        r.uint8(),
        r.uint16(),
        r.uint32(),
        r.uint64(),
        r.opaque(),
        r.vector(Reader.opaque),
        r.optional(Reader.varint),
    )
    if r.fixed(2) != b"\xaa\xbb":
        raise MLSDecodeError("bad trailer", field="trailer")
    return rec


_records = st.tuples(
    st.integers(0, 2**8 - 1),
    st.integers(0, 2**16 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**64 - 1),
    st.binary(max_size=300),
    st.lists(st.binary(max_size=70), max_size=5),
    st.none() | st.integers(0, VARINT_MAX),
)


@settings(max_examples=200, deadline=None)
@given(_records)
def test_round_trip(record: _Record) -> None:
    encoded = _encode(record)
    assert decode_exact(encoded, _decode) == record
    assert decode_exact(memoryview(encoded), _decode) == record


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_decode_error(data: bytes) -> None:
    try:
        record = decode_exact(data, _decode)
    except MLSDecodeError:
        return
    assert _encode(record) == data  # strict decoding means a unique encoding


@settings(max_examples=200, deadline=None)
@given(st.integers(0, VARINT_MAX))
def test_varint_round_trip_is_minimal(value: int) -> None:
    encoded = encode_varint(value)
    assert decode_exact(encoded, Reader.varint) == value
    assert len(encoded) == (1 if value < 64 else 2 if value < 16384 else 4)


def test_uint16_vector_reads_pairs_and_refuses_an_odd_length() -> None:
    w = Writer().vector([1, 0xFFFF, 0x0203], lambda w2, v: w2.uint16(v))
    assert decode_exact(w.getvalue(), Reader.uint16_vector) == (1, 0xFFFF, 0x0203)
    for bad in (b"\x03\x00\x01\x02", b"\x04\x00\x01"):  # odd length; length past the end
        with pytest.raises(MLSDecodeError):
            decode_exact(bad, Reader.uint16_vector)


def test_a_vector_bounds_its_items_and_the_reader_reads_on_after_it() -> None:
    # uint8 items<V> = [1, 2], then a uint8 after the vector
    r = Reader(b"\x02\x01\x02\x07")
    assert r.vector(Reader.uint8) == [1, 2]
    assert r.uint8() == 7 and r.remaining() == 0
    # an item reading past the vector's end fails, and the bound is restored after
    r = Reader(b"\x01\x01\x02\x03")
    with pytest.raises(MLSDecodeError):
        r.vector(Reader.uint16)
    assert r.remaining() == 3
    # bytes remembered across a vector are the exact input
    r = Reader(b"\x00\x02\x05\x06\x09")
    mark = r.position
    r.uint8()
    r.vector(Reader.uint8)
    assert r.since(mark) == b"\x00\x02\x05\x06" and r.uint8() == 9
