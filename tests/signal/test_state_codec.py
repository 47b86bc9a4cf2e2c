"""The state codec: round trips, v1 records (the fixture, today's writer), migrations,
the v2 binary session record decoded as hostile input, and corrupt records."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from signal_v1 import encode_v1

from sealwire.ratchet import state_to_bytes
from sealwire_signal import (
    Envelope,
    EnvelopeDecodeError,
    StoredPrekey,
    UnsupportedVersionError,
    _state_codec,
    accept_session,
    card_digest,
    decode_prekey,
    decode_session,
    encode_prekey,
    encode_session,
    open_envelope,
    seal_frame,
    start_session,
)

FIXTURE = Path(__file__).parent / "fixtures" / "session_v1.json"
ALICE_CARD = b'{"name":"alice","signature":"' + b"s" * 2400 + b'"}'
BOB_CARD = b'{"name":"bob","signature":"' + b"t" * 2400 + b'"}'


def cards_of(*sessions):
    """A card lookup (digest -> card) holding the cards of ``sessions``."""
    return {card_digest(s.peer_card): s.peer_card for s in sessions}.get


def no_cards(digest):
    raise AssertionError("a v1 record embeds its card")


def _sessions(kit, he):
    rng = kit.seeded_rng(40)
    a, b = kit.make_agent(rng), kit.make_agent(rng)
    verified = b.bundle.verify(b.signing.public_key(), one_time_kem=b.one_time_kem)
    alice = start_session(local_id="a", peer_id="b", identity=a.identity, peer=verified,
                          rng=rng, header_encryption=he)  # fmt: skip
    envelopes = []
    for i in range(3):
        alice, env = seal_frame(alice, b"f%d" % i, negotiation=b"", rng=rng)
        envelopes.append(env)
    bob, _ = accept_session(
        local_id="b", envelope=envelopes[2], identity=b.identity, signed_prekey=b.spk,
        one_time_prekey=None, kem_prekey=b.kem_one_time, now=5.0, rng=rng,
    )  # fmt: skip
    alice = attrs.evolve(alice, peer_card=BOB_CARD)
    bob = attrs.evolve(bob, peer_card=ALICE_CARD)
    return rng, alice, bob, envelopes


@pytest.mark.parametrize("he", [False, True])
def test_session_round_trip_keeps_working(kit, he):
    rng, alice, bob, envelopes = _sessions(kit, he)
    cards = cards_of(alice, bob)
    for session in (alice, bob):
        again = decode_session(encode_session(session), cards)
        assert encode_session(again) == encode_session(session)
        assert attrs.evolve(again, ratchet=session.ratchet) == session
        assert again.ratchet.dhs.public == session.ratchet.dhs.public
    assert alice.pending is not None and len(bob.ratchet.skipped) == 2
    bob = decode_session(encode_session(bob), cards)
    bob, frame = open_envelope(bob, envelopes[0], now=6.0, rng=rng)
    assert frame == b"f0"


@pytest.mark.parametrize("he", [False, True])
def test_v2_record_is_binary_and_names_the_card_by_digest(kit, he):
    _, alice, bob, _ = _sessions(kit, he)
    for session in (alice, bob):
        record = encode_session(session)
        assert record[:5] == _state_codec.SESSION_MAGIC + bytes((_state_codec.SESSION_VERSION,))
        assert session.peer_card not in record and card_digest(session.peer_card) in record
        assert len(record) < len(encode_v1(session)) // 2
        with pytest.raises(EnvelopeDecodeError) as missing:
            decode_session(record, {}.get)
        assert missing.value.field == "session.peer_card"
        with pytest.raises(EnvelopeDecodeError) as other:
            decode_session(record, {card_digest(session.peer_card): b"other card"}.get)
        assert other.value.field == "session.peer_card"


@pytest.mark.parametrize("he", [False, True])
def test_v1_records_of_the_released_writer_read_the_same(kit, he):
    rng, alice, bob, envelopes = _sessions(kit, he)
    for session in (alice, bob):
        again = decode_session(encode_v1(session), no_cards)
        assert attrs.evolve(again, ratchet=session.ratchet) == session
        assert encode_session(again) == encode_session(session)
    bob = decode_session(encode_v1(bob), no_cards)
    bob = decode_session(encode_session(bob), cards_of(bob))  # upgraded: written as v2
    _, frame = open_envelope(bob, envelopes[1], now=6.0, rng=rng)
    assert frame == b"f1"


def test_v1_fixture_still_reads():
    fixture = json.loads(FIXTURE.read_text())
    session = decode_session(fixture["session"].encode(), no_cards)
    envelope = Envelope.from_bytes(bytes.fromhex(fixture["envelope"]))
    _, frame = open_envelope(session, envelope, now=fixture["now"], rng=lambda n: bytes(n))
    assert frame == fixture["frame"].encode()


def test_migration_hook_upgrades_old_records(kit, monkeypatch):
    _, alice, _, _ = _sessions(kit, False)
    record = json.loads(encode_v1(alice))
    record["v"] = 0
    record["renamed_local"] = record.pop("local")

    def v0_to_v1(old):
        return {**old, "v": 1, "local": old["renamed_local"]}

    with pytest.raises(UnsupportedVersionError):
        decode_session(json.dumps(record).encode(), no_cards)
    monkeypatch.setitem(_state_codec.MIGRATIONS, (_state_codec.SESSION_FORMAT, 0), v0_to_v1)
    assert decode_session(json.dumps(record).encode(), no_cards).local_id == "a"
    record["v"] = _state_codec.STATE_VERSION + 1
    with pytest.raises(UnsupportedVersionError):
        decode_session(json.dumps(record).encode(), no_cards)


def test_v2_header_checks_name_the_field(kit):
    _, alice, _, _ = _sessions(kit, False)
    record, cards = encode_session(alice), cards_of(alice)
    at = len(record) - len(state_to_bytes(alice.ratchet)) - 4  # the ratchet's length
    newer = record[:4] + bytes((_state_codec.SESSION_VERSION + 1,)) + record[5:]
    with pytest.raises(UnsupportedVersionError) as caught:
        decode_session(newer, cards)
    assert caught.value.field == "session.version"
    cases = {
        b"SWSX" + record[4:]: "session.magic",
        record[:4] + b"\x01" + record[5:]: "session.version",
        record[:5] + b"\x04" + record[6:]: "session.flags",
        record + b"\x00": "session",
        record[:-1]: "session.ratchet",
        record[:at] + b"\xff\xff\xff\xff" + record[at + 4 :]: "session.ratchet",
        record[:at] + b"\x00\x00\x00\x00" + record[at + 4 :]: "ratchet.version",
    }
    for bad, field in cases.items():
        with pytest.raises(EnvelopeDecodeError) as caught:
            decode_session(bad, cards)
        assert caught.value.field == field and type(caught.value) is EnvelopeDecodeError


@pytest.mark.parametrize("he", [False, True])
def test_every_truncation_of_a_v2_record_is_a_decode_error(kit, he):
    _, alice, bob, _ = _sessions(kit, he)
    for session in (alice, bob):
        record, cards = encode_session(session), cards_of(session)
        for end in range(len(record)):
            with pytest.raises(EnvelopeDecodeError) as caught:
                decode_session(record[:end], cards)
            assert caught.value.field and caught.value.field.startswith("session")


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_v2_records_raise_decode_error_only(kit, data):
    _, alice, bob, _ = _sessions(kit, data.draw(st.booleans()))
    session = data.draw(st.sampled_from([alice, bob]))
    record = bytearray(encode_session(session))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(record) - 1))
        edit = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if edit == "flip":
            record[at] ^= data.draw(st.integers(1, 255))
        elif edit == "insert":
            record[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif edit == "delete":
            del record[at : at + data.draw(st.integers(1, 8))]
        else:
            del record[at:]
        if not record:
            break
    with contextlib.suppress(EnvelopeDecodeError):
        decode_session(bytes(record), cards_of(session))


def test_prekey_round_trip_and_checks():
    prekey = StoredPrekey(kind="kem", id=3, private=bytes(64), created=1.5,
                          signature=b"s" * 64, last_resort=True, retired=9.0)  # fmt: skip
    assert decode_prekey(encode_prekey(prekey)) == prekey
    assert "private" not in repr(prekey) or bytes(64).hex() not in repr(prekey)
    record = json.loads(encode_prekey(prekey))
    for field, bad in (("kind", "rsa"), ("id", -1), ("id", True), ("private", "!!"),
                       ("created", "x"), ("format", "other")):  # fmt: skip
        with pytest.raises(EnvelopeDecodeError):
            decode_prekey(json.dumps({**record, field: bad}).encode())
    with pytest.raises(EnvelopeDecodeError):
        decode_prekey(encode_prekey(prekey).replace(b"1.5", b"NaN"))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_corrupt_records_raise_decode_error_only(data):
    for decode in (lambda d: decode_session(d, {}.get), decode_prekey):
        with contextlib.suppress(EnvelopeDecodeError):
            decode(data)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_mutated_session_fields_raise_decode_error_only(kit, data):
    _, _, bob, _ = _sessions(kit, True)
    record = json.loads(encode_v1(bob))
    section = data.draw(st.sampled_from(["top", "ratchet"]))
    target = record if section == "top" else record["ratchet"]
    key = data.draw(st.sampled_from(sorted(target)))
    target[key] = data.draw(
        st.none() | st.integers() | st.text(max_size=50) | st.lists(st.integers(), max_size=5)
    )
    with contextlib.suppress(EnvelopeDecodeError):
        decode_session(json.dumps(record).encode(), no_cards)
