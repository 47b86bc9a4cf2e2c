"""The shared Double Ratchet toolkit (sealwire.ratchet): ordering, loss, replay, bounds,
tamper (the Signal plugin's ratchet tests, moved with the code), and what the toolkit
adds for other protocols: Bob's initial chain, a chain bound, the unknown-chain error,
the stored record."""

from __future__ import annotations

import contextlib
import json
import random

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealwire.errors import StateError
from sealwire.ratchet import (
    MAX_SKIP,
    SKIPPED_KEY_LIFETIME,
    ChainExhaustedError,
    DHKeyPair,
    DuplicateMessageError,
    MessageDecryptError,
    RatchetDecodeError,
    SkippedKeyLimitError,
    UnknownChainError,
    _chain,
    decrypt,
    encrypt,
    init_alice,
    init_bob,
    prune,
    state_from_bytes,
    state_from_record,
    state_to_bytes,
    state_to_record,
)


def seeded_rng(seed):
    """A deterministic byte source for tests only (never for real keys)."""
    return random.Random(seed).randbytes


AD = b"associated data"
MODES = pytest.mark.parametrize("he", [False, True], ids=["plain", "header-encryption"])


def _pair(rng, he):
    secret = rng(32)
    bob_pair = DHKeyPair.generate(rng)
    alice = init_alice(secret, bob_pair.public, rng, header_encryption=he)
    return alice, init_bob(secret, bob_pair, header_encryption=he)


def _send(state, rng, count, prefix=b"m"):
    out = []
    for i in range(count):
        state, header, ct = encrypt(state, prefix + str(i).encode(), AD, rng)
        out.append((header, ct))
    return state, out


def _recv(state, rng, msg, now=0.0):
    return decrypt(state, msg[0], msg[1], AD, now=now, rng=rng)


@MODES
def test_conversation_both_ways(he):
    rng = seeded_rng(10)
    alice, bob = _pair(rng, he)
    for rnd in range(4):
        alice, msgs = _send(alice, rng, 3, b"a%d-" % rnd)
        for i, msg in enumerate(msgs):
            bob, pt = _recv(bob, rng, msg)
            assert pt == b"a%d-%d" % (rnd, i)
        bob, msgs = _send(bob, rng, 2, b"b%d-" % rnd)
        for i, msg in enumerate(msgs):
            alice, pt = _recv(alice, rng, msg)
            assert pt == b"b%d-%d" % (rnd, i)


@MODES
def test_out_of_order_across_ratchet_steps(he):
    rng = seeded_rng(11)
    alice, bob = _pair(rng, he)
    alice, first = _send(alice, rng, 3, b"x")
    bob, pt = _recv(bob, rng, first[0])
    bob, reply = _send(bob, rng, 1)
    alice, _ = _recv(alice, rng, reply[0])
    alice, second = _send(alice, rng, 2, b"y")
    bob, pt = _recv(bob, rng, second[1])  # new chain first: skips x1, x2 (pn) and y0
    assert pt == b"y1"
    assert len(bob.skipped) == 3
    for msg, want in ((first[2], b"x2"), (second[0], b"y0"), (first[1], b"x1")):
        bob, pt = _recv(bob, rng, msg)
        assert pt == want
    assert bob.skipped == {}


@MODES
def test_duplicates_are_rejected_without_state_change(he):
    rng = seeded_rng(12)
    alice, bob = _pair(rng, he)
    alice, msgs = _send(alice, rng, 3)
    bob, _ = _recv(bob, rng, msgs[0])
    bob, _ = _recv(bob, rng, msgs[2])
    before = bob
    for dup in (msgs[0], msgs[2]):
        with pytest.raises(DuplicateMessageError):
            _recv(bob, rng, dup)
    assert bob is before
    bob, pt = _recv(bob, rng, msgs[1])  # skipped key used once ...
    assert pt == b"m1"
    with pytest.raises(DuplicateMessageError):  # ... and never again
        _recv(bob, rng, msgs[1])
    bob, reply = _send(bob, rng, 1)
    alice, _ = _recv(alice, rng, reply[0])
    alice, later = _send(alice, rng, 1)
    bob, _ = _recv(bob, rng, later[0])
    with pytest.raises(DuplicateMessageError):  # a copy from an earlier chain
        _recv(bob, rng, msgs[0])


@MODES
def test_max_skip_bound(he):
    rng = seeded_rng(13)
    alice, bob = _pair(rng, he)
    far = alice
    for _ in range(MAX_SKIP + 1):
        far, _h, _c = encrypt(far, b"", AD, rng)
    far, msgs = _send(far, rng, 1)
    with pytest.raises(SkippedKeyLimitError):
        _recv(bob, rng, msgs[0])
    alice, ok = _send(alice, rng, 1)
    bob, pt = _recv(bob, rng, ok[0])  # state untouched by the refusal
    assert pt == b"m0"


@MODES
def test_skipped_keys_expire(he):
    rng = seeded_rng(14)
    alice, bob = _pair(rng, he)
    alice, msgs = _send(alice, rng, 3)
    bob, _ = _recv(bob, rng, msgs[2], now=100.0)
    assert len(bob.skipped) == 2
    late = 100.0 + SKIPPED_KEY_LIFETIME + 1
    with pytest.raises(DuplicateMessageError):
        _recv(bob, rng, msgs[0], now=late)
    assert prune(bob, late).skipped == {}
    bob, pt = _recv(bob, rng, msgs[1], now=late - 2)
    assert pt == b"m1"


def test_total_skipped_keys_are_capped(monkeypatch):
    monkeypatch.setattr(_chain, "MAX_SKIPPED_KEYS", 5)
    rng = seeded_rng(15)
    alice, bob = _pair(rng, False)
    alice, msgs = _send(alice, rng, 9)
    bob, _ = _recv(bob, rng, msgs[8])
    assert sorted(n for _, n in bob.skipped) == [3, 4, 5, 6, 7]  # the oldest were evicted
    with pytest.raises(DuplicateMessageError):
        _recv(bob, rng, msgs[0])


@MODES
def test_bob_cannot_send_first(he):
    rng = seeded_rng(16)
    _alice, bob = _pair(rng, he)
    with pytest.raises(StateError):
        encrypt(bob, b"x", AD, rng)


@MODES
def test_wrong_associated_data_fails(he):
    rng = seeded_rng(17)
    alice, bob = _pair(rng, he)
    alice, msgs = _send(alice, rng, 1)
    with pytest.raises(MessageDecryptError):
        decrypt(bob, msgs[0][0], msgs[0][1], b"other", now=0, rng=rng)
    with pytest.raises(RatchetDecodeError):
        decrypt(bob, msgs[0][0][:-1], msgs[0][1], AD, now=0, rng=rng)


def test_reprs_hide_secrets():
    rng = seeded_rng(18)
    alice, _ = _pair(rng, True)
    text = repr(alice)
    for secret in (alice.rk, alice.cks, alice.hks, alice.nhks):
        assert secret.hex() not in text and repr(secret) not in text


@settings(max_examples=40, deadline=None)
@given(he=st.booleans(), which=st.integers(0, 1), data=st.data())
def test_tampering_fails_and_leaves_state_usable(he, which, data):
    rng = seeded_rng(19)
    alice, bob = _pair(rng, he)
    alice, msgs = _send(alice, rng, 2)
    bob, _ = _recv(bob, rng, msgs[0])
    part = bytearray(msgs[1][which])
    index = data.draw(st.integers(0, len(part) - 1))
    part[index] ^= data.draw(st.integers(1, 255))
    tampered = (bytes(part), msgs[1][1]) if which == 0 else (msgs[1][0], bytes(part))
    snapshot = attrs.asdict(bob, recurse=False)
    with pytest.raises((MessageDecryptError, SkippedKeyLimitError, DuplicateMessageError)):
        _recv(bob, rng, tampered)
    assert attrs.asdict(bob, recurse=False) == snapshot
    bob, pt = _recv(bob, rng, msgs[1])
    assert pt == b"m1"


def _bob_chain_pair(rng):
    secret, chain = rng(32), rng(32)
    bob_pair = DHKeyPair.generate(rng)
    alice = init_alice(secret, bob_pair.public, rng, bob_chain=chain)
    return alice, init_bob(secret, bob_pair, bob_chain=chain)


def test_bob_with_an_initial_chain_sends_first_and_steps_later():
    rng = seeded_rng(30)
    alice, bob = _bob_chain_pair(rng)
    bob, early = _send(bob, rng, 2, b"b")  # before Alice said anything
    alice, pt = _recv(alice, rng, early[1])
    assert pt == b"b1"
    alice, msgs = _send(alice, rng, 1, b"a")
    bob, pt = _recv(bob, rng, msgs[0])
    assert pt == b"a0"
    bob, reply = _send(bob, rng, 1, b"c")  # a new chain (DH step): pn counts the first chain
    alice, pt = _recv(alice, rng, reply[0])
    assert pt == b"c0"
    alice, pt = _recv(alice, rng, early[0])  # the skipped first-chain message still opens
    assert pt == b"b0"


def test_header_encryption_has_no_initial_chain_for_bob():
    rng = seeded_rng(31)
    with pytest.raises(StateError):
        init_bob(rng(32), DHKeyPair.generate(rng), header_encryption=True, bob_chain=rng(32))


def test_a_chain_bound_refuses_further_messages_until_a_step():
    rng = seeded_rng(32)
    alice, _bob = _pair(rng, False)
    for _ in range(3):
        alice, _h, _c = encrypt(alice, b"x", AD, rng, limit=3)
    with pytest.raises(ChainExhaustedError):
        encrypt(alice, b"x", AD, rng, limit=3)
    fresh = init_alice(rng(32), DHKeyPair.generate(rng).public, rng)
    assert encrypt(fresh, b"", AD, rng, limit=3)[0].ns == 1  # a new chain starts over


def test_a_header_of_an_unknown_chain_is_a_typed_error_and_changes_nothing():
    rng = seeded_rng(33)
    alice, bob = _pair(rng, False)
    alice, msgs = _send(alice, rng, 1)
    bob, _ = _recv(bob, rng, msgs[0])
    stranger = DHKeyPair.generate(rng).public
    forged = stranger + msgs[0][0][32:]
    snapshot = attrs.asdict(bob, recurse=False)
    with pytest.raises(UnknownChainError):
        _recv(bob, rng, (forged, msgs[0][1]))
    assert attrs.asdict(bob, recurse=False) == snapshot
    assert issubclass(UnknownChainError, MessageDecryptError)


@pytest.mark.parametrize("he", [False, True], ids=["plain", "header-encryption"])
def test_the_stored_record_round_trips(he):
    rng = seeded_rng(34)
    alice, bob = _pair(rng, he)
    alice, msgs = _send(alice, rng, 4)
    bob, _ = _recv(bob, rng, msgs[3])
    record = json.loads(json.dumps(state_to_record(bob)))
    back = state_from_record(record)
    for name in ("dhr", "rk", "cks", "ckr", "ns", "nr", "pn", "skipped", "previous", "hkr"):
        assert getattr(back, name) == getattr(bob, name)
    assert back.dhs.public == bob.dhs.public
    back, pt = _recv(back, rng, msgs[1])
    assert pt == b"m1"


@settings(max_examples=60, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=4),
    )
)
def test_a_corrupted_record_is_a_decode_error(garbage):
    with contextlib.suppress(RatchetDecodeError):
        state_from_record(garbage)


@pytest.mark.parametrize("he", [False, True], ids=["plain", "header-encryption"])
def test_the_binary_form_round_trips(he):
    rng = seeded_rng(35)
    alice, bob = _pair(rng, he)
    alice, msgs = _send(alice, rng, 4)
    bob, _ = _recv(bob, rng, msgs[3], now=12.5)
    bob, reply = _send(bob, rng, 1)
    alice, _ = _recv(alice, rng, reply[0])
    for state in (alice, bob):
        back = state_from_bytes(state_to_bytes(state))
        assert state_to_record(back) == state_to_record(state)
    back = state_from_bytes(state_to_bytes(bob))
    back, pt = _recv(back, rng, msgs[1])
    assert pt == b"m1"


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_corrupted_binary_form_is_a_decode_error(data):
    rng = seeded_rng(36)
    alice, bob = _pair(rng, data.draw(st.booleans()))
    alice, msgs = _send(alice, rng, 3)
    bob, _ = _recv(bob, rng, msgs[2])
    raw = bytearray(state_to_bytes(bob))
    cut = data.draw(st.integers(0, len(raw)))
    mangled = bytes(raw[:cut]) + data.draw(st.binary(max_size=40))
    with contextlib.suppress(RatchetDecodeError):
        state_from_bytes(mangled)
