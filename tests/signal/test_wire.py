"""The wire profile: envelope and bundle round trips, strict and hostile-input-safe decoding."""

from __future__ import annotations

import contextlib

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealwire_signal import (
    Envelope,
    EnvelopeDecodeError,
    PrekeyPart,
    UnsupportedVersionError,
    decode_bundle,
    encode_bundle,
)
from sealwire_signal._wire import decode_kem_blob, encode_kem_blob

ids = st.text(max_size=40)
u32 = st.integers(0, 0xFFFF_FFFF)
prekey_parts = st.builds(
    lambda ik, ek, spk, opk, kem: PrekeyPart(
        identity_key=ik,
        ephemeral_key=ek,
        signed_prekey_id=spk,
        one_time_prekey_id=opk,
        kem_prekey_id=None if kem is None else kem[0],
        kem_ciphertext=None if kem is None else kem[1],
    ),
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=32, max_size=32),
    u32,
    st.none() | u32,
    st.none() | st.tuples(u32, st.binary(min_size=1088, max_size=1088)),
)


@st.composite
def envelopes(draw):
    he = draw(st.booleans())
    prekey = draw(st.none() | prekey_parts)
    card = b"" if prekey is not None else draw(st.just(b"") | st.binary(min_size=1, max_size=200))
    return Envelope(
        sender_id=draw(ids), recipient_id=draw(ids),
        message_id=draw(st.binary(min_size=16, max_size=16)),
        negotiation=draw(st.binary(max_size=300)), prekey=prekey,
        header_encryption=he,
        header=draw(st.binary(min_size=68 if he else 40, max_size=68 if he else 40)),
        ciphertext=draw(st.binary(max_size=300)),
        known_card=draw(st.none() | st.binary(min_size=32, max_size=32)), card=card,
    )  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(envelopes())
def test_envelope_round_trip(envelope):
    data = envelope.to_bytes()
    assert Envelope.from_bytes(data) == envelope
    assert data.startswith(envelope.associated_prefix())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_decode_or_raise_decode_error(data):
    for candidate in (data, b"SWSE\x01" + data, b"SWSE\x01\x02\x00" + data):
        with contextlib.suppress(EnvelopeDecodeError):
            Envelope.from_bytes(candidate)
        with contextlib.suppress(EnvelopeDecodeError):
            decode_bundle(b"SWSB\x01" + candidate)


@settings(max_examples=60, deadline=None)
@given(envelopes(), st.data())
def test_every_truncation_and_extension_is_rejected(envelope, data):
    raw = envelope.to_bytes()
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(EnvelopeDecodeError):
        Envelope.from_bytes(raw[:cut])
    with pytest.raises(EnvelopeDecodeError):
        Envelope.from_bytes(raw + b"\x00")


def _sample():
    return Envelope(
        sender_id="alice", recipient_id="bob", message_id=bytes(16), negotiation=b"n",
        prekey=None, header_encryption=False, header=bytes(40), ciphertext=b"ct",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("offset", "value", "error"),
    [
        (0, ord("X"), EnvelopeDecodeError),  # magic
        (4, 2, UnsupportedVersionError),  # version
        (5, 9, EnvelopeDecodeError),  # kind
        (6, 0x80, EnvelopeDecodeError),  # unknown flag
        (6, 0x01, EnvelopeDecodeError),  # HE flag but a 40-byte header
    ],
)
def test_header_fields_are_checked(offset, value, error):
    raw = bytearray(_sample().to_bytes())
    raw[offset] = value
    with pytest.raises(error):
        Envelope.from_bytes(bytes(raw))


def test_the_card_fields_are_checked():
    """A card only beside a message of an established session (an initial message's
    part carries one) and never empty; a known card is 32 bytes, then the card."""
    with_card = attrs.evolve(_sample(), known_card=bytes(range(32)), card=b'{"card": 1}')
    raw = with_card.to_bytes()
    assert raw[6] == 0x06 and Envelope.from_bytes(raw) == with_card
    part = PrekeyPart(identity_key=bytes(32), ephemeral_key=bytes(32), signed_prekey_id=1)
    initial = bytearray(attrs.evolve(_sample(), prekey=part).to_bytes())
    initial[6] |= 0x02
    with pytest.raises(EnvelopeDecodeError, match="initial message"):
        Envelope.from_bytes(bytes(initial))
    plain = _sample().to_bytes()
    at = plain.index(b"\x00\x01n") + 3  # after the negotiation
    empty = bytearray(plain[:at] + bytes(4) + plain[at:])
    empty[6] |= 0x02
    with pytest.raises(EnvelopeDecodeError, match="empty card"):
        Envelope.from_bytes(bytes(empty))
    short = bytearray(plain[:at] + bytes(31))
    short[6] |= 0x04
    with pytest.raises(EnvelopeDecodeError, match="known_card"):
        Envelope.from_bytes(bytes(short))


def test_bounds_and_utf8():
    bad_utf8 = (
        attrs.evolve(_sample(), sender_id="x").to_bytes().replace(b"\x00\x01x", b"\x00\x01\xff")
    )
    with pytest.raises(EnvelopeDecodeError, match="sender_id"):
        Envelope.from_bytes(bad_utf8)
    with pytest.raises(EnvelopeDecodeError, match="sender_id"):
        Envelope.from_bytes(attrs.evolve(_sample(), sender_id="a" * 300).to_bytes())
    with pytest.raises(EnvelopeDecodeError, match="negotiation"):
        Envelope.from_bytes(attrs.evolve(_sample(), negotiation=bytes(5000)).to_bytes())
    part = PrekeyPart(identity_key=bytes(32), ephemeral_key=bytes(32), signed_prekey_id=1)
    raw = bytearray(attrs.evolve(_sample(), prekey=part).to_bytes())
    raw[raw.index(b"\x00\x00\x00\x01\x00") + 4] = 0x08  # unknown presence bit
    with pytest.raises(EnvelopeDecodeError, match="present"):
        Envelope.from_bytes(bytes(raw))


def test_bundle_round_trip_and_kem_blob(kit):
    for pq in (True, False):
        agent = kit.make_agent(kit.seeded_rng(20), pq=pq)
        raw = encode_bundle(agent.bundle)
        assert decode_bundle(raw) == agent.bundle
        decode_bundle(raw).verify(agent.signing.public_key())
        for cut in (0, 5, len(raw) - 1):
            with pytest.raises(EnvelopeDecodeError):
                decode_bundle(raw[:cut])
        with pytest.raises(EnvelopeDecodeError):
            decode_bundle(raw + b"\x00")
    kem = kit.make_agent(kit.seeded_rng(21)).one_time_kem
    assert decode_kem_blob(kem.id, encode_kem_blob(kem)) == kem
    with pytest.raises(EnvelopeDecodeError):
        decode_kem_blob(1, encode_kem_blob(kem)[:-1])
    raw = bytearray(encode_bundle(kit.make_agent(kit.seeded_rng(22), pq=False).bundle))
    raw[-1] = 2
    with pytest.raises(EnvelopeDecodeError, match="has_kem"):
        decode_bundle(bytes(raw))
