"""Our Double Ratchet against an independent one: PyPI ``doubleratchet`` (Syndace).

That library implements the Double Ratchet specification's state machine (DH
ratchet, symmetric-key chains, skipped message keys) with pluggable
primitives. Configured with Sealwire's profile, written out here from the
specification and the plugin's README, not from our code:

* KDF_RK: HKDF-SHA256, salt = root key, IKM = DH output, info
  ``Sealwire_DoubleRatchet_Root``, 64 bytes (new root key first);
* KDF_CK: HMAC-SHA256 of the chain key with 0x02 (next chain key) and 0x01
  (message key) - the library keeps the first output as the chain key;
* ENCRYPT: AES-256-GCM, key || nonce = HKDF-SHA256(32 zero bytes, mk, info
  ``Sealwire_DoubleRatchet_MessageKeys``, 44);
* AD = uint32 len(ad) || ad || header, header = dh || uint32 pn || uint32 n.

Both directions of the first message, ping-pong (a DH ratchet step each
time), several messages per chain, and messages out of order (skipped keys)
go through, and a tampered ciphertext is refused by ours with its state
unchanged.
"""

from __future__ import annotations

import os
from typing import Any

import doubleratchet
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from doubleratchet.recommended import HashFunction, kdf_hkdf, kdf_separate_hmacs
from doubleratchet.recommended import diffie_hellman_ratchet_curve25519 as dhr

from sealwire_signal import (
    DHKeyPair,
    Header,
    MessageDecryptError,
    RatchetState,
    decrypt,
    encrypt,
    init_alice,
    init_bob,
)

AD = b"\x05" + bytes(range(32)) + b"\x05" + bytes(range(32, 64))


class _Aead(doubleratchet.aead.AEAD):
    @staticmethod
    def _cipher(key: bytes) -> tuple[AESGCM, bytes]:
        okm = HKDF(hashes.SHA256(), 44, bytes(32), b"Sealwire_DoubleRatchet_MessageKeys").derive(
            key
        )
        return AESGCM(okm[:32]), okm[32:]

    @staticmethod
    async def encrypt(plaintext: bytes, key: bytes, associated_data: bytes) -> bytes:
        cipher, nonce = _Aead._cipher(key)
        return cipher.encrypt(nonce, plaintext, associated_data)

    @staticmethod
    async def decrypt(ciphertext: bytes, key: bytes, associated_data: bytes) -> bytes:
        cipher, nonce = _Aead._cipher(key)
        return cipher.decrypt(nonce, ciphertext, associated_data)


class _RootKdf(kdf_hkdf.KDF):
    @staticmethod
    def _get_hash_function() -> HashFunction:
        return HashFunction.SHA_256

    @staticmethod
    def _get_info() -> bytes:
        return b"Sealwire_DoubleRatchet_Root"


class _ChainKdf(kdf_separate_hmacs.KDF):
    @staticmethod
    def _get_hash_function() -> HashFunction:
        return HashFunction.SHA_256


class _Ratchet(doubleratchet.DoubleRatchet):
    @staticmethod
    def _build_associated_data(associated_data: bytes, header: doubleratchet.Header) -> bytes:
        return len(associated_data).to_bytes(4, "big") + associated_data + _header(header)


PARAMS: dict[str, Any] = {
    "diffie_hellman_ratchet_class": dhr.DiffieHellmanRatchet,
    "root_chain_kdf": _RootKdf,
    "message_chain_kdf": _ChainKdf,
    "message_chain_constant": b"\x02\x01",  # the library keeps output[:32] as the chain key
    "dos_protection_threshold": 100,
    "max_num_skipped_message_keys": 1000,
    "aead": _Aead,
}


def _header(header: doubleratchet.Header) -> bytes:
    return (
        header.ratchet_pub
        + header.previous_sending_chain_length.to_bytes(4, "big")
        + header.sending_chain_length.to_bytes(4, "big")
    )


def _theirs(message: doubleratchet.EncryptedMessage) -> tuple[bytes, bytes]:
    return _header(message.header), message.ciphertext


def _to_theirs(header: bytes, ciphertext: bytes) -> doubleratchet.EncryptedMessage:
    parsed = Header.from_bytes(header)
    return doubleratchet.EncryptedMessage(
        doubleratchet.Header(parsed.dh, parsed.pn, parsed.n), ciphertext
    )


class Ours:
    def __init__(self, state: RatchetState) -> None:
        self.state = state

    def send(self, text: bytes) -> doubleratchet.EncryptedMessage:
        self.state, header, ciphertext = encrypt(self.state, text, AD, os.urandom)
        return _to_theirs(header, ciphertext)

    def receive(self, message: doubleratchet.EncryptedMessage) -> bytes:
        self.state, plaintext = decrypt(self.state, *_theirs(message), AD, now=0.0, rng=os.urandom)
        return plaintext


async def _conversation(ours: Ours, theirs: Any) -> None:
    """Ping-pong, then runs per chain delivered out of order, both ways."""
    for i in range(4):
        assert ours.receive(await theirs.encrypt_message(b"theirs %d" % i, AD)) == b"theirs %d" % i
        reply = ours.send(b"ours %d" % i)
        assert await theirs.decrypt_message(reply, AD) == b"ours %d" % i
    batch = [ours.send(b"late %d" % i) for i in range(5)]
    for i in (3, 0, 4, 1, 2):
        assert await theirs.decrypt_message(batch[i], AD) == b"late %d" % i
    batch = [await theirs.encrypt_message(b"back %d" % i, AD) for i in range(5)]
    for i in (4, 2, 0, 3, 1):
        assert ours.receive(batch[i]) == b"back %d" % i
    tampered = await theirs.encrypt_message(b"forged", AD)
    before = ours.state
    flipped = bytes([tampered.ciphertext[0] ^ 1]) + tampered.ciphertext[1:]
    with pytest.raises(MessageDecryptError):
        ours.receive(doubleratchet.EncryptedMessage(tampered.header, flipped))
    assert ours.state == before
    assert ours.receive(tampered) == b"forged"


async def test_their_alice_and_our_bob() -> None:
    secret, bob = os.urandom(32), DHKeyPair.generate(os.urandom)
    theirs, first = await _Ratchet.encrypt_initial_message(
        **PARAMS, shared_secret=secret, recipient_ratchet_pub=bob.public, message=b"hello",
        associated_data=AD,
    )  # fmt: skip
    ours = Ours(init_bob(secret, bob))
    assert ours.receive(first) == b"hello"
    assert await theirs.decrypt_message(ours.send(b"hi"), AD) == b"hi"
    await _conversation(ours, theirs)


async def test_our_alice_and_their_bob() -> None:
    secret = os.urandom(32)
    bob_private = X25519PrivateKey.generate()
    bob_public = bob_private.public_key().public_bytes_raw()
    ours = Ours(init_alice(secret, bob_public, os.urandom))
    theirs, plaintext = await _Ratchet.decrypt_initial_message(
        **PARAMS, shared_secret=secret, own_ratchet_priv=bob_private.private_bytes_raw(),
        message=ours.send(b"hello"), associated_data=AD,
    )  # fmt: skip
    assert plaintext == b"hello"
    assert ours.receive(await theirs.encrypt_message(b"hi", AD)) == b"hi"
    await _conversation(ours, theirs)
