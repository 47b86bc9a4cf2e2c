"""X3DH and PQXDH key agreement: both sides agree, signatures and misuse are rejected."""

from __future__ import annotations

import os

import attrs
import pytest

from sealwire.errors import RemoteProtocolError
from sealwire.ratchet import RatchetDecodeError
from sealwire_signal import (
    BadSignatureError,
    DHKeyPair,
    EnvelopeDecodeError,
    WeakKeyError,
    initiate,
    respond,
)
from sealwire_signal._crypto import encode_ec
from sealwire_signal._x3dh import MLKEM768_CIPHERTEXT_LEN


def _bob_side(bob, init, *, opk=True, kem=None):
    return respond(
        identity=bob.identity, signed_prekey=bob.spk,
        one_time_prekey=bob.opk if opk else None, kem_prekey=kem,
        initiator_identity=init.identity_key, ephemeral_key=init.ephemeral_key,
        kem_ciphertext=init.kem_ciphertext,
    )  # fmt: skip


@pytest.mark.parametrize("with_opk", [True, False])
def test_x3dh_agreement(kit, with_opk):
    rng = kit.seeded_rng(1)
    alice, bob = kit.make_agent(rng, pq=False), kit.make_agent(rng, pq=False)
    verified = bob.bundle.verify(
        bob.signing.public_key(), one_time=bob.one_time if with_opk else None
    )
    init = initiate(alice.identity, verified, rng)
    assert init.kem_ciphertext is None and init.kem_prekey_id is None
    assert init.one_time_prekey_id == (7 if with_opk else None)
    assert init.remote_ratchet_key == bob.spk.public
    shared = _bob_side(bob, init, opk=with_opk)
    assert shared == init.shared
    assert shared.associated_data == encode_ec(alice.identity.public) + encode_ec(
        bob.identity.public
    )
    assert len(shared.associated_data) == 66
    assert shared.secret.hex() not in repr(shared)


def test_x3dh_without_opk_differs_from_with(kit):
    rng = kit.seeded_rng(2)
    alice, bob = kit.make_agent(rng, pq=False), kit.make_agent(rng, pq=False)
    init = initiate(alice.identity, bob.bundle.verify(bob.signing.public_key()), rng)
    assert _bob_side(bob, init, opk=True).secret != init.shared.secret


@pytest.mark.parametrize("one_time_kem", [True, False])
def test_pqxdh_agreement(kit, one_time_kem):
    rng = kit.seeded_rng(3)
    alice, bob = kit.make_agent(rng), kit.make_agent(rng)
    verified = bob.bundle.verify(
        bob.signing.public_key(), one_time=bob.one_time,
        one_time_kem=bob.one_time_kem if one_time_kem else None,
    )  # fmt: skip
    init = initiate(alice.identity, verified, rng)
    assert init.kem_ciphertext is not None and len(init.kem_ciphertext) == MLKEM768_CIPHERTEXT_LEN
    assert init.kem_prekey_id == (101 if one_time_kem else 100)
    kem = bob.kem_one_time if one_time_kem else bob.kem_last_resort
    assert _bob_side(bob, init, kem=kem) == init.shared
    other = bob.kem_last_resort if one_time_kem else bob.kem_one_time
    assert _bob_side(bob, init, kem=other).secret != init.shared.secret


def test_pqxdh_tampered_ciphertext_gives_another_secret(kit):
    rng = kit.seeded_rng(4)
    alice, bob = kit.make_agent(rng), kit.make_agent(rng)
    init = initiate(alice.identity, bob.bundle.verify(bob.signing.public_key()), rng)
    ct = bytearray(init.kem_ciphertext)
    ct[5] ^= 1
    bad = attrs.evolve(init, kem_ciphertext=bytes(ct))
    assert _bob_side(bob, bad, kem=bob.kem_last_resort).secret != init.shared.secret


def test_respond_rejects_mismatched_pq_parts(kit):
    rng = kit.seeded_rng(5)
    alice, bob = kit.make_agent(rng), kit.make_agent(rng)
    init = initiate(alice.identity, bob.bundle.verify(bob.signing.public_key()), rng)
    with pytest.raises(RemoteProtocolError):
        _bob_side(bob, init, kem=None)
    short = attrs.evolve(init, kem_ciphertext=init.kem_ciphertext[:-1])
    with pytest.raises(EnvelopeDecodeError):
        _bob_side(bob, short, kem=bob.kem_last_resort)


def test_bad_signatures_are_rejected(kit):
    rng = kit.seeded_rng(6)
    bob, mallory = kit.make_agent(rng), kit.make_agent(rng)
    with pytest.raises(BadSignatureError):
        bob.bundle.verify(mallory.signing.public_key())
    forged_spk = attrs.evolve(bob.bundle.signed_prekey, public=mallory.spk.public)
    with pytest.raises(BadSignatureError):
        attrs.evolve(bob.bundle, signed_prekey=forged_spk).verify(bob.signing.public_key())
    forged_kem = attrs.evolve(bob.bundle.kem_prekey, public=mallory.bundle.kem_prekey.public)
    with pytest.raises(BadSignatureError):
        attrs.evolve(bob.bundle, kem_prekey=forged_kem).verify(bob.signing.public_key())
    with pytest.raises(BadSignatureError):
        bob.bundle.verify(bob.signing.public_key(), one_time_kem=mallory.one_time_kem)


def test_one_time_kem_requires_last_resort(kit):
    rng = kit.seeded_rng(7)
    bob = kit.make_agent(rng)
    bare = attrs.evolve(bob.bundle, kem_prekey=None)
    with pytest.raises(RemoteProtocolError):
        bare.verify(bob.signing.public_key(), one_time_kem=bob.one_time_kem)


def test_low_order_point_is_rejected(kit):
    rng = kit.seeded_rng(8)
    alice, bob = kit.make_agent(rng, pq=False), kit.make_agent(rng, pq=False)
    init = initiate(alice.identity, bob.bundle.verify(bob.signing.public_key()), rng)
    with pytest.raises(WeakKeyError):
        respond(
            identity=bob.identity, signed_prekey=bob.spk, one_time_prekey=None,
            kem_prekey=None, initiator_identity=bytes(32),
            ephemeral_key=init.ephemeral_key, kem_ciphertext=None,
        )  # fmt: skip
    with pytest.raises(RatchetDecodeError):  # the shared ratchet's key pair (core)
        DHKeyPair.generate(os.urandom).exchange(b"short")


def test_secrets_stay_out_of_reprs(kit):
    rng = kit.seeded_rng(9)
    alice, bob = kit.make_agent(rng), kit.make_agent(rng)
    init = initiate(alice.identity, bob.bundle.verify(bob.signing.public_key()), rng)
    text = repr(init) + repr(alice.identity)
    assert init.shared.secret.hex() not in text
    assert alice.identity.private_bytes_for_storage().hex() not in text
