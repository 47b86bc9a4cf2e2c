"""Known-answer tests, recomputed independently from ``cryptography`` primitives.

Signal publishes no test vectors (tests/vectors/README.md §4). Each test
here fixes every private input, runs the plugin, and recomputes the expected
outputs step by step from the specifications' definitions using only
``cryptography`` calls, with the profile's parameters written out literally:

* X3DH / PQXDH (X3DH §2.2, §3.3; PQXDH §2.2, §3.3): X25519, SHA-256,
  ``SK = HKDF(salt = 32 zero bytes, IKM = 32*0xFF || DH1 || DH2 || DH3 [|| DH4] [|| SS],
  info, L = 32)``; info ``Sealwire_X3DH_CURVE25519_SHA-256`` or
  ``Sealwire_PQXDH_CURVE25519_SHA-256_ML-KEM-768``; ``AD = 0x05||IK_A || 0x05||IK_B``.
* Double Ratchet §5.2: ``KDF_RK = HKDF(salt = rk, IKM = dh_out, info
  "Sealwire_DoubleRatchet_Root", 64)``; ``KDF_CK``: HMAC-SHA256 with 0x01 (message
  key) and 0x02 (next chain key); ``ENCRYPT`` = AES-256-GCM with key || nonce =
  HKDF(salt = 32 zero bytes, IKM = mk, info "Sealwire_DoubleRatchet_MessageKeys", 44),
  AD = ``uint32 len(ad) || ad || header``; header = ``dh || uint32 pn || uint32 n``.
* Header encryption §4: ``rk0 || HKa || NHKb = HKDF(zero salt, SK, info
  "Sealwire_DoubleRatchet_HeaderKeys", 96)``; ``KDF_RK_HE`` as KDF_RK with info
  "Sealwire_DoubleRatchet_RootHE" and 96 bytes; HENCRYPT = nonce(12) ||
  AES-256-GCM(hk, nonce, header, no AD).

The pinned hex values were produced by the independent computation, so a change
of any parameter in the plugin fails both the recomputation and the pin.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealwire_signal import (
    DHKeyPair,
    OneTimePrekey,
    PrekeyBundle,
    SignedPrekey,
    decrypt,
    encrypt,
    init_alice,
    init_bob,
    initiate,
    respond,
    sign_signed_prekey,
)

PINNED_X3DH_SK = "df11792e7e4bc285b0a4c1606988237da8cd768766e4336746912c1fc4170dac"
PINNED_FIRST_CIPHERTEXT = "cb804cd9dd79c7a31f7fa2fb5266268996325e37cd"


def _seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


class FixedRng:
    """Hands out the given byte strings in order (test only)."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    def __call__(self, n: int) -> bytes:
        chunk = self.chunks.pop(0)
        assert len(chunk) == n
        return chunk


def _hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(hashes.SHA256(), length, salt, info).derive(ikm)


def _hmac(key: bytes, data: bytes) -> bytes:
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize()


def _dh(private_seed: bytes, public: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private_seed).exchange(
        X25519PublicKey.from_public_bytes(public)
    )


def _pub(private_seed: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private_seed).public_key().public_bytes_raw()


def _message(mk: bytes, pt: bytes, ad: bytes, header: bytes) -> bytes:
    okm = _hkdf(mk, bytes(32), b"Sealwire_DoubleRatchet_MessageKeys", 44)
    return AESGCM(okm[:32]).encrypt(okm[32:], pt, len(ad).to_bytes(4, "big") + ad + header)


def test_x3dh_known_answer(kit):
    ika, ikb, spkb, opkb, eka = (_seed(n) for n in ("IKA", "IKB", "SPKB", "OPKB", "EKA"))
    bob = kit.make_agent(kit.seeded_rng(30), pq=False)
    spk_pair = DHKeyPair.from_private_bytes(spkb)
    bundle = PrekeyBundle(
        identity_key=_pub(ikb),
        signed_prekey=SignedPrekey(
            id=1, public=spk_pair.public, signature=sign_signed_prekey(bob.signing, spk_pair.public)
        ),
    )
    verified = bundle.verify(bob.signing.public_key(), one_time=OneTimePrekey(9, _pub(opkb)))
    init = initiate(DHKeyPair.from_private_bytes(ika), verified, FixedRng(eka))
    dh1, dh2 = _dh(ika, _pub(spkb)), _dh(eka, _pub(ikb))
    dh3, dh4 = _dh(eka, _pub(spkb)), _dh(eka, _pub(opkb))
    expected = _hkdf(b"\xff" * 32 + dh1 + dh2 + dh3 + dh4, bytes(32),
                     b"Sealwire_X3DH_CURVE25519_SHA-256", 32)  # fmt: skip
    assert init.shared.secret == expected
    assert init.shared.associated_data == b"\x05" + _pub(ika) + b"\x05" + _pub(ikb)
    assert init.shared.secret.hex() == PINNED_X3DH_SK
    shared = respond(
        identity=DHKeyPair.from_private_bytes(ikb), signed_prekey=spk_pair,
        one_time_prekey=DHKeyPair.from_private_bytes(opkb), kem_prekey=None,
        initiator_identity=_pub(ika), ephemeral_key=_pub(eka), kem_ciphertext=None,
    )  # fmt: skip
    assert shared == init.shared


def test_pqxdh_known_answer(kit):
    alice, bob = kit.make_agent(kit.seeded_rng(31)), kit.make_agent(kit.seeded_rng(32))
    eka = _seed("EKA-pq")
    verified = bob.bundle.verify(bob.signing.public_key(), one_time=bob.one_time,
                                 one_time_kem=bob.one_time_kem)  # fmt: skip
    init = initiate(alice.identity, verified, FixedRng(eka))
    ss = bob.kem_one_time.decapsulate(init.kem_ciphertext)
    ika = alice.identity.private_bytes_for_storage()
    dhs = (_dh(ika, bob.spk.public) + _dh(eka, bob.identity.public)
           + _dh(eka, bob.spk.public) + _dh(eka, bob.opk.public))  # fmt: skip
    expected = _hkdf(b"\xff" * 32 + dhs + ss, bytes(32),
                     b"Sealwire_PQXDH_CURVE25519_SHA-256_ML-KEM-768", 32)  # fmt: skip
    assert init.shared.secret == expected
    shared = respond(
        identity=bob.identity, signed_prekey=bob.spk, one_time_prekey=bob.opk,
        kem_prekey=bob.kem_one_time, initiator_identity=alice.identity.public,
        ephemeral_key=init.ephemeral_key, kem_ciphertext=init.kem_ciphertext,
    )  # fmt: skip
    assert shared.secret == expected


def test_double_ratchet_known_answer():
    sk, spk, a_dh, b_dh = (_seed(n) for n in ("SK", "SPK", "A-DH1", "B-DH1"))
    ad = b"\x05" + bytes(32) + b"\x05" + bytes(range(32))
    alice = init_alice(sk, _pub(spk), FixedRng(a_dh))
    bob = init_bob(sk, DHKeyPair.from_private_bytes(spk))
    okm = _hkdf(_dh(a_dh, _pub(spk)), sk, b"Sealwire_DoubleRatchet_Root", 64)
    rk, ck = okm[:32], okm[32:]
    for n, pt in enumerate((b"first", b"second")):
        alice, header, ct = encrypt(alice, pt, ad, FixedRng())
        want_header = _pub(a_dh) + (0).to_bytes(4, "big") + n.to_bytes(4, "big")
        assert header == want_header
        assert ct == _message(_hmac(ck, b"\x01"), pt, ad, want_header)
        if n == 0:
            assert ct.hex() == PINNED_FIRST_CIPHERTEXT
        bob, got = decrypt(bob, header, ct, ad, now=0.0, rng=FixedRng(b_dh))
        assert got == pt
        ck = _hmac(ck, b"\x02")
    # Bob's reply after his DH ratchet step (§3.5): two KDF_RK steps.
    okm = _hkdf(_dh(spk, _pub(a_dh)), sk, b"Sealwire_DoubleRatchet_Root", 64)
    okm = _hkdf(_dh(b_dh, _pub(a_dh)), okm[:32], b"Sealwire_DoubleRatchet_Root", 64)
    bob, header, ct = encrypt(bob, b"reply", ad, FixedRng())
    assert header == _pub(b_dh) + bytes(8)  # pn = 0: Bob had sent nothing
    assert ct == _message(_hmac(okm[32:], b"\x01"), b"reply", ad, header)
    assert rk != okm[:32]


def test_header_encryption_known_answer():
    sk, spk, a_dh, nonce = _seed("SK-he"), _seed("SPK-he"), _seed("A-he"), bytes(range(12))
    ad = b"ad"
    alice = init_alice(sk, _pub(spk), FixedRng(a_dh), header_encryption=True)
    okm = _hkdf(sk, bytes(32), b"Sealwire_DoubleRatchet_HeaderKeys", 96)
    rk0, hka = okm[:32], okm[32:64]
    okm = _hkdf(_dh(a_dh, _pub(spk)), rk0, b"Sealwire_DoubleRatchet_RootHE", 96)
    alice, enc_header, ct = encrypt(alice, b"hello", ad, FixedRng(nonce))
    plain_header = _pub(a_dh) + bytes(8)
    assert enc_header == nonce + AESGCM(hka).encrypt(nonce, plain_header, None)
    assert ct == _message(_hmac(okm[32:64], b"\x01"), b"hello", ad, enc_header)
    assert alice.nhks == okm[64:]
    bob = init_bob(sk, DHKeyPair.from_private_bytes(spk), header_encryption=True)
    bob, got = decrypt(bob, enc_header, ct, ad, now=0.0, rng=FixedRng(_seed("B-he")))
    assert got == b"hello"
