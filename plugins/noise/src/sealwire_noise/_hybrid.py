"""ML-KEM-768 for the hybrid (``hfs``) handshake tokens ``e1`` and ``ekem1``.

The construction follows the Noise hybrid-forward-secrecy extension with a KEM
in place of the second DH (see the README, "Post-quantum hybrid"): the
initiator sends a fresh ML-KEM-768 encapsulation key (``e1``), the responder
encapsulates to it and sends the ciphertext (``ekem1``), and both call
``MixKey(shared_secret)``, so the session keys depend on X25519 *and* ML-KEM.
"""

from __future__ import annotations

import attrs
from cryptography.hazmat.primitives.asymmetric import mlkem

from sealwire_noise._errors import NoiseAuthenticationError, NoiseDecodeError
from sealwire_noise._symmetric import Random

__all__ = [
    "KEM_CIPHERTEXT_LEN",
    "KEM_NAME",
    "KEM_PUBLIC_LEN",
    "KemKeyPair",
    "decapsulate",
    "encapsulate",
    "generate_kem_keypair",
]

KEM_NAME = "MLKEM768"
KEM_PUBLIC_LEN = 1184  # FIPS 203 ML-KEM-768 encapsulation key
KEM_CIPHERTEXT_LEN = 1088  # FIPS 203 ML-KEM-768 ciphertext
KEM_SEED_LEN = 64  # FIPS 203 (d, z) seed from which the key pair is derived


@attrs.frozen
class KemKeyPair:
    """An ephemeral ML-KEM-768 key pair (private key object, raw public key)."""

    private: mlkem.MLKEM768PrivateKey = attrs.field(repr=False)
    public: bytes


def generate_kem_keypair(random: Random) -> KemKeyPair:
    """A fresh key pair from caller-supplied randomness (a 64-byte FIPS 203 seed)."""
    key = mlkem.MLKEM768PrivateKey.from_seed_bytes(random(KEM_SEED_LEN))
    return KemKeyPair(key, key.public_key().public_bytes_raw())


def encapsulate(public: bytes) -> tuple[bytes, bytes]:
    """(shared_secret, ciphertext) for the peer's encapsulation key.

    ``cryptography`` draws the encapsulation randomness from OpenSSL's CSPRNG;
    it has no API to pass it in, so this is the one random draw we do not own.
    """
    try:
        peer = mlkem.MLKEM768PublicKey.from_public_bytes(public)
    except ValueError as exc:
        raise NoiseDecodeError("invalid ML-KEM-768 public key", field="noise.e1") from exc
    shared, ciphertext = peer.encapsulate()
    return shared, ciphertext


def decapsulate(keypair: KemKeyPair, ciphertext: bytes) -> bytes:
    """The shared secret; a malformed ciphertext fails the handshake."""
    try:
        return keypair.private.decapsulate(ciphertext)
    except ValueError as exc:
        raise NoiseAuthenticationError() from exc
