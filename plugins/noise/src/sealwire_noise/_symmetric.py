"""Crypto functions (Noise rev 34 §4, §12), CipherState (§5.1) and SymmetricState (§5.2).

Every primitive comes from ``cryptography``. Keys are held as key objects
(``X25519PrivateKey``, an ``AESGCM`` instance...) so hot paths never reload
them from bytes. CipherState and SymmetricState are small mutable objects;
:meth:`SymmetricState.copy` is the checkpoint a failed read restores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import x448, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealwire_noise._errors import (
    NoiseAuthenticationError,
    NoiseConfigurationError,
    NoiseDecodeError,
    NoiseNonceExhausted,
)

__all__ = [
    "MAX_NONCE",
    "TAG_LEN",
    "CipherState",
    "CipherSuite",
    "DHFunction",
    "KeyPair",
    "SymmetricState",
    "cipher_suite",
]

Random = Callable[[int], bytes]
"""A source of random bytes, passed in by the caller (cores never pick their own)."""

TAG_LEN = 16
MAX_NONCE = 2**64 - 1
"""§5.1: nonce 2^64-1 is reserved for rekey; reaching it is an error."""

_ZEROS32 = bytes(32)


class _PrivateKey(Protocol):
    def exchange(self, peer_public_key: x25519.X25519PublicKey, /) -> bytes: ...


@attrs.frozen
class KeyPair:
    """A DH key pair: the private key object and its raw public key."""

    private: x25519.X25519PrivateKey | x448.X448PrivateKey = attrs.field(repr=False)
    public: bytes


@attrs.frozen(kw_only=True)
class DHFunction:
    """§12.1 / §12.2: ``25519`` and ``448``."""

    name: str
    dhlen: int
    _private_cls: type[x25519.X25519PrivateKey] | type[x448.X448PrivateKey]
    _public_cls: type[x25519.X25519PublicKey] | type[x448.X448PublicKey]

    def keypair_from_private(self, private: bytes) -> KeyPair:
        try:
            key = self._private_cls.from_private_bytes(private)
        except ValueError as exc:
            raise NoiseConfigurationError(f"bad {self.name} private key length") from exc
        return KeyPair(key, key.public_key().public_bytes_raw())

    def keypair_from_key(self, key: x25519.X25519PrivateKey | x448.X448PrivateKey) -> KeyPair:
        if not isinstance(key, self._private_cls):
            raise NoiseConfigurationError(f"static key is not a {self.name} key")
        return KeyPair(key, key.public_key().public_bytes_raw())

    def generate_keypair(self, random: Random) -> KeyPair:
        """GENERATE_KEYPAIR() from caller-supplied randomness."""
        return self.keypair_from_private(random(self.dhlen))

    def dh(self, keypair: KeyPair, public: bytes) -> bytes:
        """DH(key_pair, public_key); an invalid or low-order key fails the handshake."""
        try:
            peer = self._public_cls.from_public_bytes(public)
            return keypair.private.exchange(peer)  # type: ignore[arg-type]
        except ValueError as exc:  # all-zero shared secret or bad length
            raise NoiseAuthenticationError() from exc


X25519 = DHFunction(
    name="25519",
    dhlen=32,
    private_cls=x25519.X25519PrivateKey,
    public_cls=x25519.X25519PublicKey,
)
X448 = DHFunction(
    name="448", dhlen=56, private_cls=x448.X448PrivateKey, public_cls=x448.X448PublicKey
)

_AEAD = AESGCM | ChaCha20Poly1305


def _nonce_chacha(n: int) -> bytes:
    """§12.3: 32 bits of zeros then the 64-bit nonce, little-endian."""
    return b"\x00\x00\x00\x00" + n.to_bytes(8, "little")


def _nonce_aesgcm(n: int) -> bytes:
    """§12.4: 32 bits of zeros then the 64-bit nonce, big-endian."""
    return b"\x00\x00\x00\x00" + n.to_bytes(8, "big")


@attrs.frozen(kw_only=True)
class CipherSuite:
    """The DH, cipher and hash functions of one protocol name (§8)."""

    dh: DHFunction
    cipher_name: str
    hash_name: str
    hashlen: int
    _hash: hashes.HashAlgorithm = attrs.field(repr=False)
    _aead: type[AESGCM] | type[ChaCha20Poly1305] = attrs.field(repr=False)
    nonce: Callable[[int], bytes] = attrs.field(repr=False)

    def aead(self, key: bytes) -> _AEAD:
        return self._aead(key)

    def hash(self, data: bytes) -> bytes:
        h = hashes.Hash(self._hash)
        h.update(data)
        return h.finalize()

    def hkdf(self, chaining_key: bytes, ikm: bytes, outputs: int) -> list[bytes]:
        """§4.3 HKDF: RFC 5869 with salt = chaining key, empty info (same outputs)."""
        okm = HKDF(self._hash, self.hashlen * outputs, chaining_key, b"").derive(ikm)
        n = self.hashlen
        return [okm[i * n : (i + 1) * n] for i in range(outputs)]


_HASHES: dict[str, tuple[Callable[[], hashes.HashAlgorithm], int]] = {
    "SHA256": (hashes.SHA256, 32),
    "SHA512": (hashes.SHA512, 64),
    "BLAKE2s": (lambda: hashes.BLAKE2s(32), 32),
    "BLAKE2b": (lambda: hashes.BLAKE2b(64), 64),
}
_CIPHERS: dict[str, tuple[type[AESGCM] | type[ChaCha20Poly1305], Callable[[int], bytes]]] = {
    "ChaChaPoly": (ChaCha20Poly1305, _nonce_chacha),
    "AESGCM": (AESGCM, _nonce_aesgcm),
}
_DHS = {"25519": X25519, "448": X448}


def cipher_suite(dh: str, cipher: str, hash_name: str) -> CipherSuite:
    """Look up the functions named in a protocol name; unknown ones are config errors."""
    if dh not in _DHS or cipher not in _CIPHERS or hash_name not in _HASHES:
        raise NoiseConfigurationError(f"unsupported functions {dh}_{cipher}_{hash_name}"[:80])
    hash_factory, hashlen = _HASHES[hash_name]
    aead, nonce = _CIPHERS[cipher]
    return CipherSuite(
        dh=_DHS[dh],
        cipher_name=cipher,
        hash_name=hash_name,
        hashlen=hashlen,
        hash=hash_factory(),
        aead=aead,
        nonce=nonce,
    )


class CipherState:
    """§5.1: a key ``k`` (held as an AEAD object) and a 64-bit nonce ``n``.

    A failed decryption leaves ``n`` unchanged; the nonce advances only after
    success, so a forged message costs the receiver nothing but the check.
    """

    __slots__ = ("_aead", "_key", "n", "suite")

    def __init__(self, suite: CipherSuite, key: bytes | None = None, n: int = 0) -> None:
        self.suite = suite
        self._key = key
        self._aead = suite.aead(key) if key is not None else None
        self.n = n

    def __repr__(self) -> str:
        return f"<CipherState {self.suite.cipher_name} has_key={self.has_key()} n={self.n}>"

    def has_key(self) -> bool:
        return self._aead is not None

    def copy(self) -> CipherState:
        clone = CipherState.__new__(CipherState)
        clone.suite, clone._key, clone._aead, clone.n = self.suite, self._key, self._aead, self.n
        return clone

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        if self._aead is None:
            return plaintext
        if self.n >= MAX_NONCE:
            raise NoiseNonceExhausted("nonce space exhausted; rekey or start a new session")
        out = self._aead.encrypt(self.suite.nonce(self.n), plaintext, ad)
        self.n += 1
        return out

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        if self._aead is None:
            return ciphertext
        if self.n >= MAX_NONCE:
            raise NoiseNonceExhausted("nonce space exhausted; rekey or start a new session")
        out = self.decrypt_at(self.n, ad, ciphertext)
        self.n += 1
        return out

    def encrypt_at(self, n: int, ad: bytes, plaintext: bytes) -> bytes:
        """ENCRYPT(k, n, ad, plaintext) at an explicit nonce (stateless transport)."""
        if self._aead is None:
            raise NoiseConfigurationError("cipher state has no key")
        return self._aead.encrypt(self.suite.nonce(n), plaintext, ad)

    def decrypt_at(self, n: int, ad: bytes, ciphertext: bytes) -> bytes:
        """DECRYPT(k, n, ad, ciphertext); a bad tag raises NoiseAuthenticationError."""
        if self._aead is None:
            raise NoiseConfigurationError("cipher state has no key")
        if len(ciphertext) < TAG_LEN:
            raise NoiseDecodeError("ciphertext shorter than the tag", field="noise.ciphertext")
        try:
            return self._aead.decrypt(self.suite.nonce(n), ciphertext, ad)
        except InvalidTag:
            raise NoiseAuthenticationError() from None

    def rekey(self) -> None:
        """§4.2 / §11.3 REKEY(k): the first 32 bytes of ENCRYPT(k, maxnonce, zerolen, zeros)."""
        if self._aead is None:
            raise NoiseConfigurationError("cipher state has no key")
        new = self._aead.encrypt(self.suite.nonce(MAX_NONCE), _ZEROS32, b"")[:32]
        self._key, self._aead = new, self.suite.aead(new)


class SymmetricState:
    """§5.2: chaining key ``ck``, handshake hash ``h`` and a CipherState."""

    __slots__ = ("ck", "cs", "h", "suite")

    def __init__(self, suite: CipherSuite, protocol_name: bytes) -> None:
        self.suite = suite
        if len(protocol_name) <= suite.hashlen:
            self.h = protocol_name.ljust(suite.hashlen, b"\x00")
        else:
            self.h = suite.hash(protocol_name)
        self.ck = self.h
        self.cs = CipherState(suite)

    def __repr__(self) -> str:
        return f"<SymmetricState {self.suite.hash_name} has_key={self.cs.has_key()}>"

    def copy(self) -> SymmetricState:
        clone = SymmetricState.__new__(SymmetricState)
        clone.suite, clone.ck, clone.h, clone.cs = self.suite, self.ck, self.h, self.cs.copy()
        return clone

    def _initialize_key(self, temp_k: bytes) -> None:
        # §5.2: truncate to 32 bytes when HASHLEN is 64
        self.cs = CipherState(self.suite, temp_k[:32])

    def mix_key(self, ikm: bytes) -> None:
        self.ck, temp_k = self.suite.hkdf(self.ck, ikm, 2)
        self._initialize_key(temp_k)

    def mix_hash(self, data: bytes) -> None:
        self.h = self.suite.hash(self.h + data)

    def mix_key_and_hash(self, ikm: bytes) -> None:
        self.ck, temp_h, temp_k = self.suite.hkdf(self.ck, ikm, 3)
        self.mix_hash(temp_h)
        self._initialize_key(temp_k)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cs.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cs.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        temp_k1, temp_k2 = self.suite.hkdf(self.ck, b"", 2)
        return CipherState(self.suite, temp_k1[:32]), CipherState(self.suite, temp_k2[:32])
