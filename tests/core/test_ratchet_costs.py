"""The ratchet's per-message work without repeated setup (issue 14): a peer's ratchet key
loaded once per DH step, a chain key's HMAC keyed once per step, the private scalar
kept for the state record; and the records and messages stay today's bytes."""

from __future__ import annotations

import random

import pytest

from sealwire.ratchet import (
    DHKeyPair,
    _chain,
    _crypto,
    decrypt,
    encrypt,
    init_alice,
    init_bob,
    state_from_bytes,
    state_to_bytes,
)

AD = b"associated data"

# Written by the code of main before this change (seeded run, see _conversation):
# Bob's state after reading message 2 of 3 (0 and 1 skipped) and replying.
BOB_RECORD = bytes.fromhex(
    "010ead8e7aacb5221a8f10b3c642c6f4ef08058632022facd65f1c06df9eb0a623d4d98c6ca7a9b6"
    "4a9005c3732d18d2fb7c116c36cf8a18942241805c1712a59437fecbbbb01f5ef30ad565000e1d52"
    "a331f13a5bd520e3e2482972e75c5fa4c548f96553d80d8c708c1d52a252f8962f9e903b068d4133"
    "908f8385822cda7f0e10b77d3ddea04862a0a6d37361931626d0a1d5d704c50fab29915f9ad61b70"
    "1fe9000000010000000300000000000002fecbbbb01f5ef30ad565000e1d52a331f13a5bd520e3e2"
    "482972e75c5fa4c54800000000a80cee25157d694e4f4c65ac74966cb734e252107a5f29bb0473bb"
    "20935291714122750a00000000fecbbbb01f5ef30ad565000e1d52a331f13a5bd520e3e2482972e7"
    "5c5fa4c54800000001bf99a5fcbf093768f2d955bdb88b00eb00b9c33c308f785cb0ac44562bd6c7"
    "ce4122750a00000000"
)
M0_HEADER = bytes.fromhex(
    "fecbbbb01f5ef30ad565000e1d52a331f13a5bd520e3e2482972e75c5fa4c5480000000000000000"
)
M0_CIPHERTEXT = bytes.fromhex("f422059c5262b4d189bbc4c7d3b0b271783d")


def _conversation() -> tuple[bytes, bytes]:
    rng = random.Random(1414).randbytes
    secret = rng(32)
    bob_pair = DHKeyPair.generate(rng)
    alice = init_alice(secret, bob_pair.public, rng)
    bob = init_bob(secret, bob_pair)
    msgs = []
    for i in range(3):
        alice, header, ciphertext = encrypt(alice, b"m%d" % i, AD, rng)
        msgs.append((header, ciphertext))
    bob, _ = decrypt(bob, *msgs[2], AD, now=5.0, rng=rng)
    bob, header, ciphertext = encrypt(bob, b"reply", AD, rng)
    alice, _ = decrypt(alice, header, ciphertext, AD, now=6.0, rng=rng)
    return state_to_bytes(bob), msgs[0][0] + msgs[0][1]


def test_the_same_run_writes_the_same_record_and_messages_as_before() -> None:
    record, first = _conversation()
    assert record == BOB_RECORD
    assert first == M0_HEADER + M0_CIPHERTEXT


def test_a_record_written_before_loads_and_reads_its_skipped_message() -> None:
    bob = state_from_bytes(BOB_RECORD)
    assert state_to_bytes(bob) == BOB_RECORD
    bob, plaintext = decrypt(bob, M0_HEADER, M0_CIPHERTEXT, AD, now=7.0, rng=random.randbytes)
    assert plaintext == b"m0"


def test_a_dh_step_loads_the_peer_ratchet_key_once(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[bytes] = []
    real = _crypto.x25519_public

    def counting(raw: bytes) -> object:
        loaded.append(bytes(raw))
        return real(raw)

    monkeypatch.setattr(_crypto, "x25519_public", counting)
    monkeypatch.setattr(_chain, "x25519_public", counting, raising=False)
    rng = random.Random(7).randbytes
    secret = rng(32)
    bob_pair = DHKeyPair.generate(rng)
    alice = init_alice(secret, bob_pair.public, rng)
    bob = init_bob(secret, bob_pair)
    alice, header, ciphertext = encrypt(alice, b"hi", AD, rng)
    loaded.clear()
    bob, plaintext = decrypt(bob, header, ciphertext, AD, now=0.0, rng=rng)  # a DH step
    assert plaintext == b"hi"
    assert len(loaded) == 1


def test_a_chain_step_keys_its_hmac_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac as stdlib_hmac

    made: list[bytes] = []
    real = _crypto.hmac.HMAC

    def counting(key: bytes, algorithm: object) -> object:
        made.append(key)
        return real(key, algorithm)  # type: ignore[arg-type]

    monkeypatch.setattr(_crypto.hmac, "HMAC", counting)
    ck = bytes(range(32))
    next_ck, mk = _chain.kdf_ck(ck)
    assert len(made) == 1
    # Double Ratchet §5.2: mk = HMAC(ck, 0x01), ck' = HMAC(ck, 0x02)
    assert next_ck == stdlib_hmac.digest(ck, b"\x02", "sha256")
    assert mk == stdlib_hmac.digest(ck, b"\x01", "sha256")


def test_the_stored_scalar_is_the_loaded_one_without_asking_the_key() -> None:
    raw = bytes(range(1, 33))
    pair = DHKeyPair.from_private_bytes(raw)
    assert pair.private_bytes_for_storage() == raw == pair.private.private_bytes_raw()
    assert pair.raw is raw or pair.raw == raw
    assert "raw" not in repr(pair) or raw.hex() not in repr(pair)
    assert DHKeyPair.from_private_key(pair.private).private_bytes_for_storage() == raw


def test_a_message_step_carries_every_other_field_of_the_state() -> None:
    import attrs

    from sealwire.ratchet import RatchetState

    rng = random.Random(3).randbytes
    state = RatchetState(
        dhs=DHKeyPair.generate(rng), dhr=rng(32), rk=rng(32), cks=rng(32), ckr=rng(32),
        ns=1, nr=2, pn=3, skipped={(rng(32), 4): (rng(32), 5.0)}, previous=(rng(32),),
        header_encryption=True, hks=rng(32), hkr=rng(32), nhks=rng(32), nhkr=rng(32),
    )  # fmt: skip
    cks, ckr = rng(32), rng(32)
    stepped = _chain.with_chains(state, cks=cks, ns=7, ckr=ckr, nr=8)
    assert stepped == attrs.evolve(state, cks=cks, ns=7, ckr=ckr, nr=8)
    changed = {"cks", "ns", "ckr", "nr"}
    for field in attrs.fields(RatchetState):  # a field added later must be carried too
        if field.name not in changed:
            assert getattr(stepped, field.name) is getattr(state, field.name), field.name


def test_sending_and_receiving_a_message_steps_the_state_in_one_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import attrs

    rng = random.Random(5).randbytes
    secret = rng(32)
    bob_pair = DHKeyPair.generate(rng)
    alice = init_alice(secret, bob_pair.public, rng)
    bob = init_bob(secret, bob_pair)
    alice, header, ciphertext = encrypt(alice, b"first", AD, rng)
    bob, _ = decrypt(bob, header, ciphertext, AD, now=0.0, rng=rng)
    evolved: list[object] = []
    real = attrs.evolve

    def counting(inst: object, **changes: object) -> object:
        evolved.append(type(inst))
        return real(inst, **changes)

    monkeypatch.setattr(attrs, "evolve", counting)
    for i in range(3):  # one sending chain: no DH step
        alice, header, ciphertext = encrypt(alice, b"m%d" % i, AD, rng)
        bob, plaintext = decrypt(bob, header, ciphertext, AD, now=0.0, rng=rng)
        assert plaintext == b"m%d" % i
    assert evolved == []
