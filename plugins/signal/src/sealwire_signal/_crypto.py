"""The primitives the plugin shares: the ratchet's (X25519 key pairs, HKDF, HMAC, from
:mod:`sealwire.ratchet`) and X3DH's public-key encoding.

All of them come from ``cryptography``. Randomness is never implicit: callers
pass an :data:`Rng` (``os.urandom`` in production, a seeded one in tests).
"""

from __future__ import annotations

from sealwire.ratchet import KEY_LEN, DHKeyPair, Rng, hkdf_sha256, hmac_sha256

__all__ = [
    "EC_TYPE_X25519",
    "KEY_LEN",
    "DHKeyPair",
    "Rng",
    "encode_ec",
    "hkdf_sha256",
    "hmac_sha256",
]

EC_TYPE_X25519 = 0x05
"""X3DH §2.5 Encode(PK): one byte naming the curve (0x05, Curve25519), then the u-coordinate."""


def encode_ec(public: bytes) -> bytes:
    """X3DH §2.5 / PQXDH §2.5 EncodeEC: the curve byte, then the 32-byte u-coordinate."""
    return bytes((EC_TYPE_X25519,)) + public
