"""MLS cipher suites and their labeled operations (RFC 9420 §5, §17.1).

A :class:`CipherSuite` bundles the hash, KDF, AEAD, HPKE suite and signature
scheme of one registered MLS cipher suite, and offers the RFC's derived
operations: ``ExpandWithLabel``, ``DeriveSecret``, ``DeriveTreeSecret``
(§8), ``RefHash`` (§5.2), ``SignWithLabel``/``VerifyWithLabel`` (§5.1.2)
and ``EncryptWithLabel``/``DecryptWithLabel`` (§5.1.3).

Keys cross this API as bytes (MLS structs hold bytes); loaded key objects
are cached per suite in bounded LRU maps so a repeated key is not reloaded.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from attrs import field, frozen
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hpke as _rust_hpke
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from sealwire_mls.codec import Writer
from sealwire_mls.errors import (
    MLSAuthenticationError,
    MLSDecodeError,
    MLSLocalError,
    MLSProtocolError,
)
from sealwire_mls.hpke import AEAD_EXPORT_ONLY, HPKESuite, KeyCache, hpke_suite
from sealwire_mls.signatures import (
    LABEL_PREFIX,
    PendingVerification,
    SignatureChecks,
    Signer,
    sign_content,
)

__all__ = [
    "PQ_AUTH_CIPHER_SUITES",
    "PQ_CIPHER_SUITES",
    "PQ_SUITE_BASE",
    "SUPPORTED_CIPHER_SUITES",
    "CipherSuite",
    "cipher_suite",
]

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA256": hashes.SHA256,
    "SHA384": hashes.SHA384,
    "SHA512": hashes.SHA512,
}
_AEAD_CLASSES: dict[int, Any] = {0x0001: AESGCM, 0x0002: AESGCM, 0x0003: ChaCha20Poly1305}


@frozen(kw_only=True)
class CipherSuite:
    """One MLS cipher suite (RFC 9420 §5.1, registry §17.1); get it with :func:`cipher_suite`.

    ``Nh`` is the hash / KDF output length, ``Nk`` and ``Nn`` the AEAD key
    and nonce lengths; ``signature_checks`` its VerifyWithLabel, which remembers the
    signatures this process verified.
    """

    id: int
    name: str
    hash_name: str
    Nh: int
    Nk: int
    Nn: int
    kem_id: int
    kdf_id: int
    aead_id: int
    signature_scheme: str
    _hpke: HPKESuite = field(repr=False, eq=False)
    # cryptography's own single-shot base-mode HPKE, where it covers the suite:
    # it opens ~2.5x faster than the HPKESuite built from primitives.
    _fast_hpke: Any = field(default=None, repr=False, eq=False)
    _signer: Signer = field(repr=False, eq=False)
    _sig_private: KeyCache[bytes, Any] = field(factory=KeyCache, repr=False, eq=False)
    signature_checks: SignatureChecks = field(repr=False, eq=False)

    # -- hash, MAC, KDF (§5.1) -------------------------------------------

    def hash(self, data: bytes) -> bytes:
        """Hash(data) with the suite's hash function."""
        digest = hashes.Hash(_HASHES[self.hash_name]())
        digest.update(data)
        return digest.finalize()

    def mac(self, key: bytes, data: bytes) -> bytes:
        """MAC(key, data): HMAC with the suite's hash (§5.1)."""
        return self._hpke.kdf.extract(key, data)

    def kdf_extract(self, salt: bytes, ikm: bytes) -> bytes:
        """KDF.Extract(salt, ikm): HKDF-Extract."""
        return self._hpke.kdf.extract(salt, ikm)

    def kdf_expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        """KDF.Expand(prk, info, length): HKDF-Expand."""
        return self._hpke.kdf.expand(prk, info, length)

    def expand_with_label(self, secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
        """ExpandWithLabel (§8): Expand(secret, KDFLabel, length).

        ``struct { uint16 length; opaque label<V> = "MLS 1.0 " + Label;
        opaque context<V>; } KDFLabel;``
        """
        info = Writer().uint16(length).opaque(LABEL_PREFIX + label).opaque(context).getvalue()
        return self._hpke.kdf.expand(secret, info, length)

    def derive_secret(self, secret: bytes, label: bytes) -> bytes:
        """DeriveSecret(secret, label) = ExpandWithLabel(secret, label, "", Nh) (§8)."""
        return self.expand_with_label(secret, label, b"", self.Nh)

    def derive_tree_secret(
        self, secret: bytes, label: bytes, generation: int, length: int
    ) -> bytes:
        """DeriveTreeSecret (§9): ExpandWithLabel(secret, label, uint32 generation, length)."""
        return self.expand_with_label(secret, label, generation.to_bytes(4, "big"), length)

    def ref_hash(self, label: bytes, value: bytes) -> bytes:
        """RefHash(label, value) (§5.2): Hash of ``struct { opaque label<V>; opaque value<V>; }``.

        ``label`` is used as given (e.g. ``b"MLS 1.0 KeyPackage Reference"``).
        """
        return self.hash(Writer().opaque(label).opaque(value).getvalue())

    # -- AEAD ---------------------------------------------------------------

    def _aead(self, key: bytes, nonce: bytes) -> Any:
        if len(key) != self.Nk or len(nonce) != self.Nn:
            raise MLSLocalError("AEAD key or nonce has the wrong length")
        return _AEAD_CLASSES[self.aead_id](key)

    def aead_encrypt(self, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        """AEAD.Seal(key, nonce, aad, plaintext)."""
        return bytes(self._aead(key, nonce).encrypt(nonce, plaintext, aad))

    def aead_decrypt(self, key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        """AEAD.Open; :class:`MLSAuthenticationError` if the tag does not verify."""
        try:
            return bytes(self._aead(key, nonce).decrypt(nonce, ciphertext, aad))
        except InvalidTag:
            raise MLSAuthenticationError() from None

    # -- signatures (§5.1.2) -------------------------------------------------

    def sign_with_label(self, signature_priv: bytes, label: bytes, content: bytes) -> bytes:
        """SignWithLabel(SignatureKey, Label, Content) (§5.1.2)."""
        key = self._sig_private.get(bytes(signature_priv), self._signer.load_private)
        return self._signer.sign(key, sign_content(label, content))

    def verify_with_label(
        self, signature_pub: bytes, label: bytes, content: bytes, signature: bytes
    ) -> None:
        """VerifyWithLabel (§5.1.2); raises :class:`MLSAuthenticationError` on failure."""
        self.signature_checks.verify_with_label(signature_pub, label, content, signature)

    def verify_many_with_label(self, items: Sequence[tuple[bytes, bytes, bytes, bytes]]) -> None:
        """VerifyWithLabel over a batch of ``(signature_pub, label, content, signature)``.

        Raises :class:`MLSAuthenticationError` if any fails; see :meth:`start_verify_many`.
        """
        self.start_verify_many(items).wait()

    def start_verify_many(
        self, items: Sequence[tuple[bytes, bytes, bytes, bytes]]
    ) -> PendingVerification:
        """Start VerifyWithLabel over a batch of ``(signature_pub, label, content,
        signature)``; its :meth:`PendingVerification.wait` raises
        :class:`MLSAuthenticationError` if any fails.

        Signatures seen verified before are skipped. A batch of at least
        :data:`~sealwire_mls.signatures.PARALLEL_VERIFY_MIN` others goes to worker
        processes (when :func:`~sealwire_mls.signatures.start_verify_pool` started
        them), so the caller runs its other checks meanwhile; a smaller one is
        verified here, in :meth:`PendingVerification.wait`.
        """
        pending = self.verify_batch()
        for item in items:
            pending.add(*item)
        return pending

    def verify_batch(self) -> PendingVerification:
        """An empty batch of signature checks, to :meth:`PendingVerification.add` to
        while its items are still being read."""
        return self.signature_checks.batch()

    def signature_key_pair(self) -> tuple[bytes, bytes]:
        """A fresh signature key pair, serialized (private, public)."""
        key = self._signer.generate()
        priv = self._signer.private_bytes(key)
        self._sig_private.get(priv, lambda _: key)
        return priv, self._signer.public_bytes(key.public_key())

    def signature_public_key(self, signature_priv: bytes) -> bytes:
        """The serialized public key for a serialized signature private key."""
        key = self._sig_private.get(bytes(signature_priv), self._signer.load_private)
        return self._signer.public_bytes(key.public_key())

    # -- public-key encryption (§5.1.3) --------------------------------------

    @staticmethod
    def _encrypt_context(label: bytes, context: bytes) -> bytes:
        # struct { opaque label<V> = "MLS 1.0 " + Label; opaque context<V>; } EncryptContext;
        return Writer().opaque(LABEL_PREFIX + label).opaque(context).getvalue()

    def encrypt_with_label(
        self, pub: bytes, label: bytes, context: bytes, plaintext: bytes
    ) -> tuple[bytes, bytes]:
        """EncryptWithLabel (§5.1.3): SealBase(pub, EncryptContext, "", plaintext)."""
        info = self._encrypt_context(label, context)
        if self._fast_hpke is None:
            return self._hpke.seal(pub, info, b"", plaintext)
        sealed = self._fast_hpke.encrypt(plaintext, self._hpke.public_key_object(pub), info)
        return bytes(sealed[: self._hpke.Npk]), bytes(sealed[self._hpke.Npk :])

    def decrypt_with_label(
        self, priv: bytes, label: bytes, context: bytes, kem_output: bytes, ciphertext: bytes
    ) -> bytes:
        """DecryptWithLabel (§5.1.3); :class:`MLSAuthenticationError` on failure."""
        info = self._encrypt_context(label, context)
        try:
            if self._fast_hpke is None or len(kem_output) != self._hpke.Npk:
                return self._hpke.open(kem_output, priv, info, b"", ciphertext)
            key = self._hpke.private_key(priv)
            return bytes(self._fast_hpke.decrypt(bytes(kem_output) + ciphertext, key, info))
        except (MLSDecodeError, InvalidTag, ValueError):
            raise MLSAuthenticationError() from None

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """HPKE DeriveKeyPair(ikm) (RFC 9180 §7.1.3): (private, public), serialized."""
        return self._hpke.derive_key_pair(ikm)

    def hpke_key_pair(self) -> tuple[bytes, bytes]:
        """A fresh HPKE key pair, serialized (private, public)."""
        return self._hpke.generate_key_pair()

    def hpke_public_key(self, priv: bytes) -> bytes:
        """The serialized HPKE public key for a serialized HPKE private key."""
        return self._hpke.public_key(priv)

    def hpke(self) -> HPKESuite:
        """The suite's HPKE instance (for export and external init, §8.3)."""
        return self._hpke


# id -> (name, KEM, KDF, AEAD, hash, signature scheme) (RFC 9420 §17.1, and
# draft-ietf-mls-pq-ciphersuites-06 §3 for the post-quantum suites below).
_REGISTRY: dict[int, tuple[str, int, int, int, str, str]] = {
    1: ("MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519", 0x20, 1, 1, "SHA256", "ed25519"),
    2: ("MLS_128_DHKEMP256_AES128GCM_SHA256_P256", 0x10, 1, 1, "SHA256", "ecdsa_secp256r1_sha256"),
    3: ("MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519", 0x20, 1, 3, "SHA256", "ed25519"),
    4: ("MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448", 0x21, 3, 2, "SHA512", "ed448"),
    5: ("MLS_256_DHKEMP521_AES256GCM_SHA512_P521", 0x12, 3, 2, "SHA512", "ecdsa_secp521r1_sha512"),
    6: ("MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448", 0x21, 3, 3, "SHA512", "ed448"),
    7: ("MLS_256_DHKEMP384_AES256GCM_SHA384_P384", 0x11, 2, 2, "SHA384", "ecdsa_secp384r1_sha384"),
}

PQ_SUITE_BASE = 0xF0A0
"""Provisional code points of draft-ietf-mls-pq-ciphersuites' suites: the draft asks
IANA for values (``TBD1`` ... ``TBD11``) that are not assigned yet, so suite TBDn is
``PQ_SUITE_BASE + n``, in RFC 9420 §17.1's private-use range 0xF000-0xFFFF and clear
of ts-mls's own private values (0xF007-0xF012). Peers must agree on them out of band;
they move to the IANA values once assigned."""

# The draft's suites whose KEM this engine has (ML-KEM-768, ML-KEM-1024, X-Wing);
# TBD3-5 use MLKEM768-P256 / MLKEM1024-P384 (draft-irtf-cfrg-concrete-hybrid-kems),
# not implemented.
_PQ_REGISTRY: dict[int, tuple[str, int, int, int, str, str]] = {
    1: ("MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519", 0x647A, 1, 1, "SHA256", "ed25519"),
    2: ("MLS_128_MLKEM768X25519_AES256GCM_SHA384_Ed25519", 0x647A, 2, 2, "SHA384", "ed25519"),
    6: ("MLS_128_MLKEM768_AES256GCM_SHA384_Ed25519", 0x41, 2, 2, "SHA384", "ed25519"),
    7: ("MLS_128_MLKEM768_AES256GCM_SHA384_P256", 0x41, 2, 2, "SHA384", "ecdsa_secp256r1_sha256"),
    8: ("MLS_192_MLKEM1024_AES256GCM_SHA384_P384", 0x42, 2, 2, "SHA384", "ecdsa_secp384r1_sha384"),
    9: (
        "MLS_128_MLKEM768X25519_CHACHA20POLY1305_SHA384_MLDSA44",
        0x647A,
        2,
        3,
        "SHA384",
        "mldsa44",
    ),
    10: ("MLS_192_MLKEM768_AES256GCM_SHA384_MLDSA65", 0x41, 2, 2, "SHA384", "mldsa65"),
    11: ("MLS_256_MLKEM1024_AES256GCM_SHA384_MLDSA87", 0x42, 2, 2, "SHA384", "mldsa87"),
}
_REGISTRY.update({PQ_SUITE_BASE + tbd: entry for tbd, entry in _PQ_REGISTRY.items()})

#: The post-quantum suites (their KEM is ML-KEM or X-Wing), by name.
PQ_CIPHER_SUITES: dict[str, int] = {
    name: PQ_SUITE_BASE + tbd for tbd, (name, *_) in _PQ_REGISTRY.items()
}
#: Those of them whose signatures are ML-DSA too (post-quantum authentication).
PQ_AUTH_CIPHER_SUITES: frozenset[int] = frozenset(
    PQ_SUITE_BASE + tbd for tbd, entry in _PQ_REGISTRY.items() if entry[5].startswith("mldsa")
)

#: The cipher suite ids this engine implements (all of RFC 9420 §17.1, and the
#: post-quantum suites above).
SUPPORTED_CIPHER_SUITES: frozenset[int] = frozenset(_REGISTRY)


_RUST_KEMS = {
    0x10: _rust_hpke.KEM.P256,
    0x11: _rust_hpke.KEM.P384,
    0x12: _rust_hpke.KEM.P521,
    0x20: _rust_hpke.KEM.X25519,
}
_RUST_KDFS = {
    1: _rust_hpke.KDF.HKDF_SHA256,
    2: _rust_hpke.KDF.HKDF_SHA384,
    3: _rust_hpke.KDF.HKDF_SHA512,
}
_RUST_AEADS = {
    1: _rust_hpke.AEAD.AES_128_GCM,
    2: _rust_hpke.AEAD.AES_256_GCM,
    3: _rust_hpke.AEAD.CHACHA20_POLY1305,
}


def _rust_suite(kem: int, kdf: int, aead: int) -> Any:
    if kem not in _RUST_KEMS:
        return None
    return _rust_hpke.Suite(_RUST_KEMS[kem], _RUST_KDFS[kdf], _RUST_AEADS[aead])


@functools.cache
def _build(suite_id: int) -> CipherSuite:
    name, kem, kdf, aead, hash_name, scheme = _REGISTRY[suite_id]
    hpke = hpke_suite(kem, kdf, aead)
    signer = Signer(scheme)
    assert aead != AEAD_EXPORT_ONLY
    return CipherSuite(
        id=suite_id,
        name=name,
        hash_name=hash_name,
        Nh=hpke.kdf.Nh,
        Nk=hpke.Nk,
        Nn=hpke.Nn,
        kem_id=kem,
        kdf_id=kdf,
        aead_id=aead,
        signature_scheme=scheme,
        hpke=hpke,
        fast_hpke=_rust_suite(kem, kdf, aead),
        signer=signer,
        signature_checks=SignatureChecks(signer),
    )


def cipher_suite(suite_id: int) -> CipherSuite:
    """The (cached, one per id) :class:`CipherSuite`; :class:`MLSProtocolError` if unsupported."""
    if suite_id not in _REGISTRY:
        raise MLSProtocolError(f"unsupported cipher suite {suite_id}")
    return _build(suite_id)
