"""Post-quantum HPKE KEMs: ML-KEM-768/1024 and X-Wing (MLKEM768-X25519).

Built from ``cryptography``'s ML-KEM, X25519, SHAKE256 and SHA3-256, following

* draft-ietf-hpke-pq (§3 ML-KEM, §4 hybrids): keys are the identity-serialized
  byte strings, ML-KEM private keys are the 64-byte FIPS 203 seed ``d || z``,
  ``DeriveKeyPair(ikm)`` is ``SHAKE256.LabeledDerive(ikm, "DeriveKeyPair", "", n)``
  (64 bytes for ML-KEM, a 32-byte seed for X-Wing) with the KEM's ``suite_id``;
* draft-connolly-cfrg-xwing-kem (§5) for X-Wing itself: the 32-byte decapsulation
  key expanded by SHAKE256 to 96 bytes (ML-KEM-768 seed, X25519 scalar), keys and
  ciphertexts ML-KEM first, and the combiner
  ``SHA3-256(ss_M || ss_X || ct_X || pk_X || XWingLabel)``.

These KEMs have no authenticated (``AuthEncap``) form (draft-ietf-hpke-pq §8.2).
Every decoder checks lengths first; a malformed key or ciphertext is a typed error,
never a ``ValueError`` from below. ML-KEM decapsulates with implicit rejection: a
well-sized but forged ciphertext gives an unrelated secret, so the AEAD above fails.
"""

from __future__ import annotations

import os
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from sealwire_mls.errors import MLSAuthenticationError, MLSDecodeError

__all__ = ["KEM_MLKEM768", "KEM_MLKEM1024", "KEM_XWING", "PQ_KEMS", "PQKem", "shake256"]

KEM_MLKEM768 = 0x0041
KEM_MLKEM1024 = 0x0042
KEM_XWING = 0x647A
"""X-Wing, renamed MLKEM768-X25519 by draft-ietf-hpke-pq (same code point)."""

_VERSION = b"HPKE-v1"
#: X-Wing's combiner label, ``\\./`` ``/^\\`` (draft-connolly-cfrg-xwing-kem §5.3).
XWING_LABEL = bytes.fromhex("5c2e2f2f5e5c")
#: ML-KEM seed (d || z), FIPS 203 §7.1 / draft-ietf-hpke-pq §3.
MLKEM_SEED = 64
#: X-Wing decapsulation key (a seed), expanded to 96 bytes by SHAKE256.
XWING_SEED = 32
_XWING_EXPANDED = 96
_X25519 = 32


def shake256(data: bytes, length: int) -> bytes:
    """SHAKE256(data) truncated to ``length`` bytes."""
    digest = hashes.Hash(hashes.SHAKE256(length))
    digest.update(data)
    return digest.finalize()


def _sha3_256(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA3_256())
    digest.update(data)
    return digest.finalize()


def labeled_derive(suite_id: bytes, ikm: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """SHAKE256.LabeledDerive (draft-ietf-hpke-hpke §4, single-stage KDF):
    ``Derive(ikm || "HPKE-v1" || suite_id || len(label) || label || I2OSP(L, 2) || context, L)``."""
    labeled = (
        ikm + _VERSION + suite_id + len(label).to_bytes(2, "big") + label
        + length.to_bytes(2, "big") + context
    )  # fmt: skip
    return shake256(labeled, length)


class PQKem:
    """One post-quantum HPKE KEM: ``Npk``, ``Nsk``, ``Nenc``, ``Nsecret`` and the
    operations on serialized keys; private keys load to cached objects."""

    def __init__(self, kem_id: int) -> None:
        self.kem_id = kem_id
        self.suite_id = b"KEM" + kem_id.to_bytes(2, "big")
        self.Nsecret = 32
        if kem_id == KEM_XWING:
            self._mlkem_priv: Any = mlkem.MLKEM768PrivateKey
            self._mlkem_pub: Any = mlkem.MLKEM768PublicKey
            self.Nsk, self.Npk, self.Nenc = XWING_SEED, 1184 + _X25519, 1088 + _X25519
            self._m_pk, self._m_ct = 1184, 1088
        elif kem_id == KEM_MLKEM768:
            self._mlkem_priv, self._mlkem_pub = mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey
            self.Nsk, self.Npk, self.Nenc = MLKEM_SEED, 1184, 1088
            self._m_pk, self._m_ct = 1184, 1088
        elif kem_id == KEM_MLKEM1024:
            self._mlkem_priv, self._mlkem_pub = mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey
            self.Nsk, self.Npk, self.Nenc = MLKEM_SEED, 1568, 1568
            self._m_pk, self._m_ct = 1568, 1568
        else:  # pragma: no cover - callers look ids up in PQ_KEMS
            raise ValueError(f"not a post-quantum KEM: 0x{kem_id:04x}")
        self.hybrid = kem_id == KEM_XWING

    # -- keys ----------------------------------------------------------------

    def load_private(self, sk: bytes) -> Any:
        """The expanded decapsulation key for serialized ``sk`` (a seed)."""
        if len(sk) != self.Nsk:
            raise MLSDecodeError("wrong private key length", field="hpke_private_key")
        if not self.hybrid:
            return self._mlkem_priv.from_seed_bytes(bytes(sk))
        expanded = shake256(bytes(sk), _XWING_EXPANDED)
        sk_m = self._mlkem_priv.from_seed_bytes(expanded[:MLKEM_SEED])
        sk_x = x25519.X25519PrivateKey.from_private_bytes(expanded[MLKEM_SEED:])
        return (sk_m, sk_x, sk_x.public_key().public_bytes_raw())

    def load_public(self, pk: bytes) -> Any:
        """The encapsulation key object(s) for serialized ``pk``; checks FIPS 203 §7.2."""
        if len(pk) != self.Npk:
            raise MLSDecodeError("wrong public key length", field="hpke_public_key")
        try:
            pk_m = self._mlkem_pub.from_public_bytes(bytes(pk[: self._m_pk]))
        except ValueError:  # the modulus check of FIPS 203 §7.2
            raise MLSDecodeError("invalid ML-KEM public key", field="hpke_public_key") from None
        if not self.hybrid:
            return pk_m
        pk_x = bytes(pk[self._m_pk :])
        return (pk_m, x25519.X25519PublicKey.from_public_bytes(pk_x), pk_x)

    def public_bytes_of(self, private: Any) -> bytes:
        """The serialized public key of a loaded private key."""
        if not self.hybrid:
            return bytes(private.public_key().public_bytes_raw())
        sk_m, _, pk_x = private
        return bytes(sk_m.public_key().public_bytes_raw()) + bytes(pk_x)

    def generate_seed(self) -> bytes:
        """GenerateKeyPair's private key: ``Nsk`` random bytes (a seed)."""
        if not self.hybrid:
            return bytes(self._mlkem_priv.generate().private_bytes_raw())
        return os.urandom(XWING_SEED)  # GenerateKeyPair: sk = random(32) (§5.2)

    def derive_seed(self, ikm: bytes) -> bytes:
        """DeriveKeyPair's private key (draft-ietf-hpke-pq §3, §4)."""
        return labeled_derive(self.suite_id, bytes(ikm), b"DeriveKeyPair", b"", self.Nsk)

    # -- Encap / Decap ---------------------------------------------------------

    def encap(self, public: Any) -> tuple[bytes, bytes]:
        """Encap(pkR): (shared_secret, enc)."""
        if not self.hybrid:
            ss, ct = public.encapsulate()
            return bytes(ss), bytes(ct)
        pk_m, pk_x_obj, pk_x = public
        ss_m, ct_m = pk_m.encapsulate()
        ek_x = x25519.X25519PrivateKey.generate()
        ct_x = ek_x.public_key().public_bytes_raw()
        try:
            ss_x = ek_x.exchange(pk_x_obj)
        except ValueError:  # a low-order X25519 public key
            raise MLSAuthenticationError("HPKE X-Wing encapsulation failed") from None
        return self._combine(bytes(ss_m), ss_x, ct_x, pk_x), bytes(ct_m) + ct_x

    def decap(self, enc: bytes, private: Any) -> bytes:
        """Decap(enc, skR); :class:`MLSDecodeError` for a ciphertext of the wrong size."""
        if len(enc) != self.Nenc:
            raise MLSDecodeError("wrong KEM ciphertext length", field="kem_output")
        if not self.hybrid:
            return self._decapsulate(private, bytes(enc))
        sk_m, sk_x, pk_x = private
        ss_m = self._decapsulate(sk_m, bytes(enc[: self._m_ct]))
        ct_x = bytes(enc[self._m_ct :])
        try:
            ss_x = sk_x.exchange(x25519.X25519PublicKey.from_public_bytes(ct_x))
        except ValueError:  # a low-order point as ct_X
            raise MLSAuthenticationError("HPKE X-Wing decapsulation failed") from None
        return self._combine(ss_m, ss_x, ct_x, pk_x)

    @staticmethod
    def _decapsulate(private: Any, ct: bytes) -> bytes:
        try:
            return bytes(private.decapsulate(ct))
        except ValueError:
            raise MLSDecodeError("invalid ML-KEM ciphertext", field="kem_output") from None

    @staticmethod
    def _combine(ss_m: bytes, ss_x: bytes, ct_x: bytes, pk_x: bytes) -> bytes:
        """X-Wing's combiner (draft-connolly-cfrg-xwing-kem §5.3)."""
        return _sha3_256(ss_m + ss_x + ct_x + pk_x + XWING_LABEL)


PQ_KEMS: frozenset[int] = frozenset({KEM_MLKEM768, KEM_MLKEM1024, KEM_XWING})
