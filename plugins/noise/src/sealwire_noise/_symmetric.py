"""Crypto functions (Noise rev 34 §4, §12), CipherState (§5.1) and SymmetricState (§5.2).

Every primitive comes from ``cryptography``. What is expensive to set up is
set up once and reused:

* a :class:`CipherSuite` holds its hash algorithm object and an empty
  ``Hash`` context that every HASH() copies (``Hash.copy()``), and packs
  nonces with a precompiled ``struct``;
* a :class:`CipherState` builds its AEAD object once per key (an AEAD object
  is reusable for any number of messages) and again only on rekey;
* keys are key objects (``X25519PrivateKey``; a peer's public key is parsed
  once, :class:`PublicKey`), never reloaded from bytes on a hot path.

CipherState and SymmetricState are small mutable objects. The handshake
checkpoints them (:meth:`SymmetricState.checkpoint`) before a message and
restores them if the message fails, so a failure changes nothing.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

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
    "PublicKey",
    "SymmetricState",
    "cipher_suite",
]

Random = Callable[[int], bytes]
"""A source of random bytes, passed in by the caller (cores never pick their own)."""

TAG_LEN = 16
MAX_NONCE = 2**64 - 1
"""§5.1: nonce 2^64-1 is reserved for rekey; reaching it is an error."""

_ZEROS32 = bytes(32)
_PrivateKey = x25519.X25519PrivateKey | x448.X448PrivateKey
_PublicKeyObject = x25519.X25519PublicKey | x448.X448PublicKey


@attrs.frozen
class KeyPair:
    """A DH key pair: the private key object and its raw public key."""

    private: _PrivateKey = attrs.field(repr=False)
    public: bytes


@attrs.frozen
class PublicKey:
    """A peer's DH public key: its raw bytes and, parsed once, its key object."""

    raw: bytes
    key: _PublicKeyObject = attrs.field(repr=False, eq=False)


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

    def keypair_from_key(self, key: _PrivateKey) -> KeyPair:
        if not isinstance(key, self._private_cls):
            raise NoiseConfigurationError(f"static key is not a {self.name} key")
        return KeyPair(key, key.public_key().public_bytes_raw())

    def keypair_from_pair(self, pair: KeyPair) -> KeyPair:
        """A key pair made earlier (by :meth:`keypair_from_key`), checked for this function."""
        if not isinstance(pair.private, self._private_cls) or len(pair.public) != self.dhlen:
            raise NoiseConfigurationError(f"static key is not a {self.name} key")
        return pair

    def generate_keypair(self, random: Random) -> KeyPair:
        """GENERATE_KEYPAIR() from caller-supplied randomness."""
        return self.keypair_from_private(random(self.dhlen))

    def public_key(self, public: bytes) -> PublicKey:
        """Parse a peer's public key once (any ``dhlen`` bytes parse; the DH checks them)."""
        try:
            return PublicKey(public, self._public_cls.from_public_bytes(public))
        except ValueError as exc:  # bad length
            raise NoiseAuthenticationError() from exc

    def dh(self, keypair: KeyPair, public: PublicKey | bytes) -> bytes:
        """DH(key_pair, public_key); an invalid or low-order key fails the handshake."""
        peer = self.public_key(public) if isinstance(public, bytes) else public
        try:
            return keypair.private.exchange(peer.key)  # type: ignore[arg-type]
        except ValueError as exc:  # all-zero shared secret
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

_NONCE_CHACHA = struct.Struct("<4xQ")
"""§12.3: 32 bits of zeros then the 64-bit nonce, little-endian."""
_NONCE_AESGCM = struct.Struct(">4xQ")
"""§12.4: 32 bits of zeros then the 64-bit nonce, big-endian."""


def _hash_context(algorithm: hashes.HashAlgorithm) -> hashes.Hash:
    return hashes.Hash(algorithm)


@attrs.frozen(kw_only=True)
class CipherSuite:
    """The DH, cipher and hash functions of one protocol name (§8).

    ``nonce(n)`` is the 12-byte AEAD nonce of the 64-bit counter ``n``.
    """

    dh: DHFunction
    cipher_name: str
    hash_name: str
    hashlen: int
    _hash: hashes.HashAlgorithm = attrs.field(repr=False)
    _aead: type[AESGCM] | type[ChaCha20Poly1305] = attrs.field(repr=False)
    nonce: Callable[[int], bytes] = attrs.field(repr=False)
    _empty: hashes.Hash = attrs.field(
        init=False,
        repr=False,
        eq=False,
        default=attrs.Factory(lambda self: _hash_context(self._hash), takes_self=True),
    )
    """An empty hash context: HASH() copies it (never updates it), skipping the set-up."""

    def aead(self, key: bytes) -> _AEAD:
        return self._aead(key)

    def hash(self, data: bytes) -> bytes:
        h = self._empty.copy()
        h.update(data)
        return h.finalize()

    def hkdf(self, chaining_key: bytes, ikm: bytes, outputs: int) -> list[bytes]:
        """§4.3 HKDF: RFC 5869 with salt = chaining key, empty info (same outputs)."""
        n = self.hashlen
        okm = HKDF(self._hash, n * outputs, chaining_key, b"").derive(ikm)
        return [okm[i * n : (i + 1) * n] for i in range(outputs)]

    def hkdf2(self, chaining_key: bytes, ikm: bytes) -> tuple[bytes, bytes]:
        """HKDF with two outputs (MixKey, Split), without the list."""
        n = self.hashlen
        okm = HKDF(self._hash, 2 * n, chaining_key, b"").derive(ikm)
        return okm[:n], okm[n:]


_HASHES: dict[str, tuple[Callable[[], hashes.HashAlgorithm], int]] = {
    "SHA256": (hashes.SHA256, 32),
    "SHA512": (hashes.SHA512, 64),
    "BLAKE2s": (lambda: hashes.BLAKE2s(32), 32),
    "BLAKE2b": (lambda: hashes.BLAKE2b(64), 64),
}
_CIPHERS: dict[str, tuple[type[AESGCM] | type[ChaCha20Poly1305], struct.Struct]] = {
    "ChaChaPoly": (ChaCha20Poly1305, _NONCE_CHACHA),
    "AESGCM": (AESGCM, _NONCE_AESGCM),
}
_DHS = {"25519": X25519, "448": X448}
_SUITES: dict[tuple[str, str, str], CipherSuite] = {}
"""Suites built so far, shared: a suite is immutable (its empty hash is only copied).
At most 2 x 2 x 4 entries, one per supported combination."""


def cipher_suite(dh: str, cipher: str, hash_name: str) -> CipherSuite:
    """Look up the functions named in a protocol name; unknown ones are config errors."""
    suite = _SUITES.get((dh, cipher, hash_name))
    if suite is not None:
        return suite
    if dh not in _DHS or cipher not in _CIPHERS or hash_name not in _HASHES:
        raise NoiseConfigurationError(f"unsupported functions {dh}_{cipher}_{hash_name}"[:80])
    hash_factory, hashlen = _HASHES[hash_name]
    aead, nonce = _CIPHERS[cipher]
    suite = CipherSuite(
        dh=_DHS[dh],
        cipher_name=cipher,
        hash_name=hash_name,
        hashlen=hashlen,
        hash=hash_factory(),
        aead=aead,
        nonce=nonce.pack,
    )
    _SUITES[(dh, cipher, hash_name)] = suite
    return suite


class CipherState:
    """§5.1: a key ``k`` (held as an AEAD object) and a 64-bit nonce ``n``.

    A failed decryption leaves ``n`` unchanged; the nonce advances only after
    success, so a forged message costs the receiver nothing but the check.
    The AEAD object is made once per key and reused for every message.
    """

    __slots__ = ("_aead", "_key", "_nonce", "n", "suite")

    def __init__(self, suite: CipherSuite, key: bytes | None = None, n: int = 0) -> None:
        self.suite = suite
        self._key = key
        self._aead: _AEAD | None = suite.aead(key) if key is not None else None
        self._nonce = suite.nonce
        self.n = n

    def __repr__(self) -> str:
        return f"<CipherState {self.suite.cipher_name} has_key={self.has_key()} n={self.n}>"

    def has_key(self) -> bool:
        return self._aead is not None

    def copy(self) -> CipherState:
        clone = CipherState.__new__(CipherState)
        clone.suite, clone._key, clone._aead = self.suite, self._key, self._aead
        clone._nonce, clone.n = self._nonce, self.n
        return clone

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        aead = self._aead
        if aead is None:
            return plaintext
        n = self.n
        if n >= MAX_NONCE:
            raise NoiseNonceExhausted("nonce space exhausted; rekey or start a new session")
        out = aead.encrypt(self._nonce(n), plaintext, ad or None)
        self.n = n + 1
        return out

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        aead = self._aead
        if aead is None:
            return ciphertext
        n = self.n
        if n >= MAX_NONCE:
            raise NoiseNonceExhausted("nonce space exhausted; rekey or start a new session")
        if len(ciphertext) < TAG_LEN:
            raise NoiseDecodeError("ciphertext shorter than the tag", field="noise.ciphertext")
        try:
            out = aead.decrypt(self._nonce(n), ciphertext, ad or None)
        except InvalidTag:
            raise NoiseAuthenticationError() from None
        self.n = n + 1
        return out

    def encrypt_at(self, n: int, ad: bytes, plaintext: bytes) -> bytes:
        """ENCRYPT(k, n, ad, plaintext) at an explicit nonce (stateless transport)."""
        if self._aead is None:
            raise NoiseConfigurationError("cipher state has no key")
        return self._aead.encrypt(self._nonce(n), plaintext, ad or None)

    def decrypt_at(self, n: int, ad: bytes, ciphertext: bytes) -> bytes:
        """DECRYPT(k, n, ad, ciphertext); a bad tag raises NoiseAuthenticationError."""
        if self._aead is None:
            raise NoiseConfigurationError("cipher state has no key")
        if len(ciphertext) < TAG_LEN:
            raise NoiseDecodeError("ciphertext shorter than the tag", field="noise.ciphertext")
        try:
            return self._aead.decrypt(self._nonce(n), ciphertext, ad or None)
        except InvalidTag:
            raise NoiseAuthenticationError() from None

    def rekey(self) -> None:
        """§4.2 / §11.3 REKEY(k): the first 32 bytes of ENCRYPT(k, maxnonce, zerolen, zeros)."""
        if self._aead is None:
            raise NoiseConfigurationError("cipher state has no key")
        new = self._aead.encrypt(self._nonce(MAX_NONCE), _ZEROS32, None)[:32]
        self._key, self._aead = new, self.suite.aead(new)


Checkpoint = tuple[bytes, bytes, CipherState, int]
"""What :meth:`SymmetricState.restore` needs: ``ck``, ``h``, the CipherState and its ``n``."""


class SymmetricState:
    """§5.2: chaining key ``ck``, handshake hash ``h`` and a CipherState.

    MixKey replaces the CipherState with a new one (the old object is left
    as it was), and only ``n`` of the current one changes in place, so
    :meth:`checkpoint` is four references and :meth:`restore` puts them back.
    """

    __slots__ = ("ck", "cs", "h", "suite")

    def __init__(self, suite: CipherSuite, protocol_name: bytes) -> None:
        self.suite = suite
        if len(protocol_name) <= suite.hashlen:
            self.h = protocol_name.ljust(suite.hashlen, b"\x00")
        else:
            self.h = suite.hash(protocol_name)
        self.ck = self.h
        self.cs = CipherState(suite)

    @classmethod
    def initialized(cls, suite: CipherSuite, h: bytes) -> SymmetricState:
        """The state InitializeSymmetric left, from its ``h`` (= ``ck``) computed earlier."""
        state = cls.__new__(cls)
        state.suite, state.h, state.ck, state.cs = suite, h, h, CipherState(suite)
        return state

    def __repr__(self) -> str:
        return f"<SymmetricState {self.suite.hash_name} has_key={self.cs.has_key()}>"

    def copy(self) -> SymmetricState:
        clone = SymmetricState.__new__(SymmetricState)
        clone.suite, clone.ck, clone.h, clone.cs = self.suite, self.ck, self.h, self.cs.copy()
        return clone

    def checkpoint(self) -> Checkpoint:
        return self.ck, self.h, self.cs, self.cs.n

    def restore(self, saved: Checkpoint) -> None:
        self.ck, self.h, self.cs, self.cs.n = saved

    def _initialize_key(self, temp_k: bytes) -> None:
        # §5.2: truncate to 32 bytes when HASHLEN is 64
        self.cs = CipherState(self.suite, temp_k[:32])

    def mix_key(self, ikm: bytes) -> None:
        self.ck, temp_k = self.suite.hkdf2(self.ck, ikm)
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
        temp_k1, temp_k2 = self.suite.hkdf2(self.ck, b"")
        return CipherState(self.suite, temp_k1[:32]), CipherState(self.suite, temp_k2[:32])
