"""Double Ratchet (and its header-encryption variant): ordering, loss, replay, bounds, tamper."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealwire.errors import StateError
from sealwire.ratchet import _chain
from sealwire_signal import (
    MAX_SKIP,
    SKIPPED_KEY_LIFETIME,
    DHKeyPair,
    DuplicateMessageError,
    EnvelopeDecodeError,
    MessageDecryptError,
    SkippedKeyLimitError,
    decrypt,
    encrypt,
    init_alice,
    init_bob,
    prune,
)

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
def test_conversation_both_ways(kit, he):
    rng = kit.seeded_rng(10)
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
def test_out_of_order_across_ratchet_steps(kit, he):
    rng = kit.seeded_rng(11)
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
def test_duplicates_are_rejected_without_state_change(kit, he):
    rng = kit.seeded_rng(12)
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
def test_max_skip_bound(kit, he):
    rng = kit.seeded_rng(13)
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
def test_skipped_keys_expire(kit, he):
    rng = kit.seeded_rng(14)
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


def test_total_skipped_keys_are_capped(kit, monkeypatch):
    monkeypatch.setattr(_chain, "MAX_SKIPPED_KEYS", 5)
    rng = kit.seeded_rng(15)
    alice, bob = _pair(rng, False)
    alice, msgs = _send(alice, rng, 9)
    bob, _ = _recv(bob, rng, msgs[8])
    assert sorted(n for _, n in bob.skipped) == [3, 4, 5, 6, 7]  # the oldest were evicted
    with pytest.raises(DuplicateMessageError):
        _recv(bob, rng, msgs[0])


@MODES
def test_bob_cannot_send_first(kit, he):
    rng = kit.seeded_rng(16)
    _alice, bob = _pair(rng, he)
    with pytest.raises(StateError):
        encrypt(bob, b"x", AD, rng)


@MODES
def test_wrong_associated_data_fails(kit, he):
    rng = kit.seeded_rng(17)
    alice, bob = _pair(rng, he)
    alice, msgs = _send(alice, rng, 1)
    with pytest.raises(MessageDecryptError):
        decrypt(bob, msgs[0][0], msgs[0][1], b"other", now=0, rng=rng)
    with pytest.raises(EnvelopeDecodeError):
        decrypt(bob, msgs[0][0][:-1], msgs[0][1], AD, now=0, rng=rng)


def test_reprs_hide_secrets(kit):
    rng = kit.seeded_rng(18)
    alice, _ = _pair(rng, True)
    text = repr(alice)
    for secret in (alice.rk, alice.cks, alice.hks, alice.nhks):
        assert secret.hex() not in text and repr(secret) not in text


@settings(max_examples=40, deadline=None)
@given(he=st.booleans(), which=st.integers(0, 1), data=st.data())
def test_tampering_fails_and_leaves_state_usable(kit, he, which, data):
    rng = kit.seeded_rng(19)
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
