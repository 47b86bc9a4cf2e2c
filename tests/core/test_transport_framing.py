"""Length-prefixed framing: encoding, the sans-I/O decoder, hostile prefixes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealwire.errors import DecodeError
from sealwire.transport import FrameDecoder, FrameTooLargeError, encode_frame

LIMIT = 1024


def test_encode_prefixes_big_endian_length() -> None:
    assert encode_frame(b"abc", LIMIT) == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"", LIMIT) == b"\x00\x00\x00\x00"


def test_encode_refuses_frames_above_the_limit() -> None:
    encode_frame(b"x" * LIMIT, LIMIT)
    with pytest.raises(FrameTooLargeError) as info:
        encode_frame(b"x" * (LIMIT + 1), LIMIT)
    assert isinstance(info.value, DecodeError)
    assert info.value.size == LIMIT + 1 and info.value.limit == LIMIT


def test_decoder_rejects_a_hostile_prefix_before_the_body() -> None:
    decoder = FrameDecoder(LIMIT)
    decoder.receive_data(struct.pack(">I", 0xFFFFFFFF))
    with pytest.raises(FrameTooLargeError):
        decoder.next_frame()
    # poisoned: the stream cannot be resynchronised
    with pytest.raises(FrameTooLargeError):
        decoder.receive_data(b"\x00\x00\x00\x01a")
    with pytest.raises(FrameTooLargeError):
        decoder.next_frame()


def test_decoder_waits_for_whole_frames() -> None:
    decoder = FrameDecoder(LIMIT)
    data = encode_frame(b"hello", LIMIT)
    for byte in data[:-1]:
        decoder.receive_data(bytes([byte]))
        assert decoder.next_frame() is None
    decoder.receive_data(data[-1:])
    assert decoder.next_frame() == b"hello"
    assert decoder.next_frame() is None
    assert decoder.pending == 0


frames = st.lists(st.binary(max_size=300), max_size=20)


@settings(max_examples=200, deadline=None)
@given(frames, st.data())
def test_round_trip_in_arbitrary_chunks(items: list[bytes], data: st.DataObject) -> None:
    wire = b"".join(encode_frame(f, LIMIT) for f in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    decoder = FrameDecoder(LIMIT)
    out: list[bytes] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        decoder.receive_data(wire[start:end])
        while (frame := decoder.next_frame()) is not None:
            out.append(frame)
    assert out == items
    assert decoder.pending == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.booleans())
def test_arbitrary_bytes_give_frames_or_decode_error(blob: bytes, bytewise: bool) -> None:
    decoder = FrameDecoder(64)
    chunks = [blob[i : i + 1] for i in range(len(blob))] if bytewise else [blob]
    try:
        for chunk in chunks:
            decoder.receive_data(chunk)
            while (frame := decoder.next_frame()) is not None:
                assert len(frame) <= 64
    except DecodeError:
        pass
    assert decoder.pending <= len(blob)
