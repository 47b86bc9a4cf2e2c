"""The state codec: round trips, the v1 fixture, migrations, and corrupt records."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealwire_signal import (
    Envelope,
    EnvelopeDecodeError,
    StoredPrekey,
    UnsupportedVersionError,
    _state_codec,
    accept_session,
    decode_prekey,
    decode_session,
    encode_prekey,
    encode_session,
    open_envelope,
    seal_frame,
    start_session,
)

FIXTURE = Path(__file__).parent / "fixtures" / "session_v1.json"


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
    return rng, alice, bob, envelopes


@pytest.mark.parametrize("he", [False, True])
def test_session_round_trip_keeps_working(kit, he):
    rng, alice, bob, envelopes = _sessions(kit, he)
    for session in (alice, bob):
        again = decode_session(encode_session(session))
        assert encode_session(again) == encode_session(session)
        assert again.ratchet.dhs.public == session.ratchet.dhs.public
    assert alice.pending is not None and len(bob.ratchet.skipped) == 2
    bob = decode_session(encode_session(bob))
    bob, frame = open_envelope(bob, envelopes[0], now=6.0, rng=rng)
    assert frame == b"f0"


def test_v1_fixture_still_reads():
    fixture = json.loads(FIXTURE.read_text())
    session = decode_session(fixture["session"].encode())
    envelope = Envelope.from_bytes(bytes.fromhex(fixture["envelope"]))
    _, frame = open_envelope(session, envelope, now=fixture["now"], rng=lambda n: bytes(n))
    assert frame == fixture["frame"].encode()


def test_migration_hook_upgrades_old_records(kit, monkeypatch):
    _, alice, _, _ = _sessions(kit, False)
    record = json.loads(encode_session(alice))
    record["v"] = 0
    record["renamed_local"] = record.pop("local")

    def v0_to_v1(old):
        return {**old, "v": 1, "local": old["renamed_local"]}

    with pytest.raises(UnsupportedVersionError):
        decode_session(json.dumps(record).encode())
    monkeypatch.setitem(_state_codec.MIGRATIONS, (_state_codec.SESSION_FORMAT, 0), v0_to_v1)
    assert decode_session(json.dumps(record).encode()).local_id == "a"
    record["v"] = _state_codec.STATE_VERSION + 1
    with pytest.raises(UnsupportedVersionError):
        decode_session(json.dumps(record).encode())


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
    for decode in (decode_session, decode_prekey):
        with contextlib.suppress(EnvelopeDecodeError):
            decode(data)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_mutated_session_fields_raise_decode_error_only(kit, data):
    _, _, bob, _ = _sessions(kit, True)
    record = json.loads(encode_session(bob))
    section = data.draw(st.sampled_from(["top", "ratchet"]))
    target = record if section == "top" else record["ratchet"]
    key = data.draw(st.sampled_from(sorted(target)))
    target[key] = data.draw(
        st.none() | st.integers() | st.text(max_size=50) | st.lists(st.integers(), max_size=5)
    )
    with contextlib.suppress(EnvelopeDecodeError):
        decode_session(json.dumps(record).encode())
