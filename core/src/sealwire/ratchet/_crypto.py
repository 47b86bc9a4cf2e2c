"""The primitives of the ratchet: X25519 key pairs, HKDF, HMAC.

All of them come from ``cryptography``. Randomness is never implicit: callers
pass an :data:`Rng` (``os.urandom`` in production, a seeded one in tests).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealwire.ratchet._errors import RatchetDecodeError, WeakKeyError

__all__ = [
    "KEY_LEN",
    "DHKeyPair",
    "Rng",
    "hkdf_sha256",
    "hmac_sha256",
    "hmac_sha256_pair",
    "x25519_public",
]

Rng = Callable[[int], bytes]
"""A source of random bytes: ``rng(n)`` returns ``n`` bytes."""

KEY_LEN = 32
"""Length of X25519 keys, of SHA-256 output and of every chain, root and message key."""

_SHA256 = hashes.SHA256()


@attrs.frozen
class DHKeyPair:
    """An X25519 key pair; the private key object is kept (loading one costs a scalar mult)."""

    private: X25519PrivateKey = attrs.field(repr=False)
    public: bytes
    raw: bytes | None = attrs.field(default=None, repr=False, eq=False)
    """The private scalar as loaded (None: read from ``private`` when stored): a state
    committed on every message writes it without asking the key object again."""

    @classmethod
    def generate(cls, rng: Rng) -> DHKeyPair:
        """GENERATE_DH() of Double Ratchet §3.1, drawing the scalar from ``rng``."""
        return cls.from_private_bytes(rng(KEY_LEN))

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> DHKeyPair:
        try:
            private = X25519PrivateKey.from_private_bytes(raw)
        except ValueError:
            raise RatchetDecodeError("invalid X25519 private key", field="private") from None
        return cls(private, private.public_key().public_bytes_raw(), bytes(raw))

    @classmethod
    def from_private_key(cls, private: X25519PrivateKey) -> DHKeyPair:
        return cls(private, private.public_key().public_bytes_raw())

    def exchange(self, peer_public: bytes | X25519PublicKey) -> bytes:
        """DH(self, peer): the X25519 shared secret; an all-zero result is rejected.
        ``peer_public``: raw bytes, or the key already loaded (:func:`x25519_public`)."""
        if isinstance(peer_public, X25519PublicKey):
            peer = peer_public
        else:
            peer = x25519_public(peer_public)
        try:
            return self.private.exchange(peer)
        except ValueError:
            raise WeakKeyError() from None

    def private_bytes_for_storage(self) -> bytes:
        """The raw private scalar, for the encrypted state store only."""
        return self.private.private_bytes_raw() if self.raw is None else self.raw


def x25519_public(raw: bytes) -> X25519PublicKey:
    """Load an X25519 public key; DecodeError when it is not 32 bytes."""
    if len(raw) != KEY_LEN:
        raise RatchetDecodeError("expected a 32-byte X25519 key", field="x25519")
    return X25519PublicKey.from_public_bytes(raw)


def hkdf_sha256(ikm: bytes, *, salt: bytes | None, info: bytes, length: int) -> bytes:
    """HKDF (RFC 5869) with SHA-256; ``salt=None`` is the zero-filled salt."""
    return HKDF(algorithm=_SHA256, length=length, salt=salt, info=info).derive(ikm)


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    mac = hmac.HMAC(key, _SHA256)
    mac.update(data)
    return mac.finalize()


def hmac_sha256_pair(key: bytes, first: bytes, second: bytes) -> tuple[bytes, bytes]:
    """(HMAC(key, first), HMAC(key, second)): the key is set up once, its state copied."""
    mac = hmac.HMAC(key, _SHA256)
    other = mac.copy()
    mac.update(first)
    other.update(second)
    return mac.finalize(), other.finalize()
