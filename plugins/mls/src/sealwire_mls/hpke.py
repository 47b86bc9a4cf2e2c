"""Hybrid Public Key Encryption (RFC 9180), built from ``cryptography`` primitives.

Supported: DHKEM(X25519, X448, P-256, P-384, P-521) (§4.1, §7.1), HKDF-SHA256/
384/512 (§7.2), AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305 and export-only
(§7.3), in all four modes: base, psk, auth and auth_psk (§5.1). The post-quantum
KEMs of draft-ietf-hpke-pq (ML-KEM-768, ML-KEM-1024, X-Wing / MLKEM768-X25519, see
:mod:`sealwire_mls.pqkem`) are supported in base and psk modes (they have no auth).

Keys cross the API as serialized bytes (``SerializePublicKey`` /
``SerializePrivateKey``, §7.1.1-2); loaded key objects are kept in a bounded
LRU cache so repeated use does not pay a reload (a scalar multiplication).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, x448, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from sealwire_mls.errors import (
    MLSAuthenticationError,
    MLSDecodeError,
    MLSLocalError,
    MLSProtocolError,
    MLSStateError,
)
from sealwire_mls.pqkem import PQ_KEMS, PQKem

__all__ = [
    "AEAD_EXPORT_ONLY",
    "MODE_AUTH",
    "MODE_AUTH_PSK",
    "MODE_BASE",
    "MODE_PSK",
    "HPKESuite",
    "KeyCache",
    "ReceiverContext",
    "SenderContext",
    "hpke_suite",
    "is_supported",
]

MODE_BASE, MODE_PSK, MODE_AUTH, MODE_AUTH_PSK = 0x00, 0x01, 0x02, 0x03
AEAD_EXPORT_ONLY = 0xFFFF
_VERSION = b"HPKE-v1"
#: Loaded key objects kept per suite and per kind. A group of N members uses
#: about log2(N) HPKE keys per commit, so a few hundred covers hot use while
#: bounding memory against a peer that sends ever-new keys.
KEY_CACHE_SIZE = 512

K = TypeVar("K")
V = TypeVar("V")


class KeyCache(Generic[K, V]):
    """A small LRU map from key bytes to loaded key objects (bounded by ``size``)."""

    __slots__ = ("_data", "_size")

    def __init__(self, size: int = KEY_CACHE_SIZE) -> None:
        self._data: OrderedDict[K, V] = OrderedDict()
        self._size = size

    def get(self, key: K, load: Callable[[K], V]) -> V:
        """The cached value for ``key``, loading (and caching) it on a miss."""
        try:
            value = self._data[key]
        except KeyError:
            value = load(key)
            self._data[key] = value
            if len(self._data) > self._size:
                self._data.popitem(last=False)
            return value
        self._data.move_to_end(key)
        return value

    def contains(self, key: K) -> bool:
        """Whether ``key`` is cached (a hit counts as a use)."""
        if key not in self._data:
            return False
        self._data.move_to_end(key)
        return True

    def __repr__(self) -> str:
        return f"KeyCache(<{len(self._data)} entries>)"


class _Kdf:
    """HKDF with one hash (RFC 9180 §7.2)."""

    def __init__(self, kdf_id: int, algorithm: hashes.HashAlgorithm) -> None:
        self.id = kdf_id
        self.algorithm = algorithm
        self.Nh = algorithm.digest_size

    def extract(self, salt: bytes, ikm: bytes) -> bytes:
        """HKDF-Extract (RFC 5869 §2.2): HMAC(salt, ikm)."""
        mac = HMAC(salt, self.algorithm)
        mac.update(ikm)
        return mac.finalize()

    def expand(self, prk: bytes, info: bytes, length: int) -> bytes:
        """HKDF-Expand (RFC 5869 §2.3)."""
        if length > 255 * self.Nh:
            raise MLSLocalError("HKDF-Expand length too large")
        return HKDFExpand(self.algorithm, length, info).derive(prk)

    def labeled_extract(self, suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
        """LabeledExtract (RFC 9180 §4)."""
        return self.extract(salt, _VERSION + suite_id + label + ikm)

    def labeled_expand(
        self, suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int
    ) -> bytes:
        """LabeledExpand (RFC 9180 §4)."""
        labeled = length.to_bytes(2, "big") + _VERSION + suite_id + label + info
        return self.expand(prk, labeled, length)


_KDFS = {
    0x0001: _Kdf(0x0001, hashes.SHA256()),
    0x0002: _Kdf(0x0002, hashes.SHA384()),
    0x0003: _Kdf(0x0003, hashes.SHA512()),
}

# aead_id -> (constructor, Nk, Nn); export-only has no AEAD (§7.3).
_AEADS: dict[int, tuple[Callable[[bytes], Any] | None, int, int]] = {
    0x0001: (AESGCM, 16, 12),
    0x0002: (AESGCM, 32, 12),
    0x0003: (ChaCha20Poly1305, 32, 12),
    AEAD_EXPORT_ONLY: (None, 0, 0),
}


class _XCurve:
    """X25519 / X448 key handling (RFC 9180 §7.1)."""

    def __init__(self, priv: Any, pub: Any, nsk: int) -> None:
        self._priv, self._pub, self.Nsk, self.Npk = priv, pub, nsk, nsk

    def generate(self) -> Any:
        return self._priv.generate()

    def load_private(self, data: bytes) -> Any:
        if len(data) != self.Nsk:
            raise MLSDecodeError("wrong private key length", field="hpke_private_key")
        return self._priv.from_private_bytes(data)

    def load_public(self, data: bytes) -> Any:
        if len(data) != self.Npk:
            raise MLSDecodeError("wrong public key length", field="hpke_public_key")
        return self._pub.from_public_bytes(data)

    def private_bytes(self, key: Any) -> bytes:
        return bytes(key.private_bytes_raw())

    def public_bytes(self, key: Any) -> bytes:
        return bytes(key.public_bytes_raw())

    def derive(self, expand: Callable[[bytes, bytes, int], bytes]) -> Any:
        """DeriveKeyPair for X25519/X448 (§7.1.3): sk = LabeledExpand(dkp_prk, "sk")."""
        return self.load_private(expand(b"sk", b"", self.Nsk))

    def exchange(self, priv: Any, pub: Any) -> bytes:
        return bytes(priv.exchange(pub))


class _ECCurve:
    """NIST P-curve key handling (RFC 9180 §7.1; SEC1 uncompressed points)."""

    def __init__(self, curve: ec.EllipticCurve, nsk: int, bitmask: int) -> None:
        self._curve, self.Nsk, self.Npk, self._bitmask = curve, nsk, 1 + 2 * nsk, bitmask

    def generate(self) -> Any:
        return ec.generate_private_key(self._curve)

    def load_private(self, data: bytes) -> Any:
        # Accept scalars shorter than Nsk: some implementations drop leading
        # zero bytes of P-521 keys (the value, not the length, is what counts).
        if not 0 < len(data) <= self.Nsk:
            raise MLSDecodeError("wrong private key length", field="hpke_private_key")
        try:
            return ec.derive_private_key(int.from_bytes(data, "big"), self._curve)
        except ValueError:
            raise MLSDecodeError("private key out of range", field="hpke_private_key") from None

    def load_public(self, data: bytes) -> Any:
        if len(data) != self.Npk or data[0] != 0x04:
            raise MLSDecodeError("not an uncompressed point", field="hpke_public_key")
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(self._curve, data)
        except ValueError:
            raise MLSDecodeError("invalid curve point", field="hpke_public_key") from None

    def private_bytes(self, key: Any) -> bytes:
        return int(key.private_numbers().private_value).to_bytes(self.Nsk, "big")

    def public_bytes(self, key: Any) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return bytes(key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))

    def derive(self, expand: Callable[[bytes, bytes, int], bytes]) -> Any:
        """DeriveKeyPair for P-curves (§7.1.3): rejection sampling over 256 candidates."""
        for counter in range(256):
            candidate = bytearray(expand(b"candidate", bytes([counter]), self.Nsk))
            candidate[0] &= self._bitmask
            try:
                return ec.derive_private_key(int.from_bytes(candidate, "big"), self._curve)
            except ValueError:  # zero or not below the group order: next candidate
                continue
        raise MLSProtocolError("DeriveKeyPairError")  # pragma: no cover - probability 2^-256+

    def exchange(self, priv: Any, pub: Any) -> bytes:
        return bytes(priv.exchange(ec.ECDH(), pub))


# kem_id -> (curve handling, KDF id, Nsecret) (RFC 9180 §7.1, Table 2).
_KEMS: dict[int, tuple[Callable[[], Any], int, int]] = {
    0x0010: (lambda: _ECCurve(ec.SECP256R1(), 32, 0xFF), 0x0001, 32),
    0x0011: (lambda: _ECCurve(ec.SECP384R1(), 48, 0xFF), 0x0002, 48),
    0x0012: (lambda: _ECCurve(ec.SECP521R1(), 66, 0x01), 0x0003, 64),
    0x0020: (lambda: _XCurve(x25519.X25519PrivateKey, x25519.X25519PublicKey, 32), 0x0001, 32),
    0x0021: (lambda: _XCurve(x448.X448PrivateKey, x448.X448PublicKey, 56), 0x0003, 64),
}


class _Context:
    """An HPKE encryption context (RFC 9180 §5.2); secrets never in its repr."""

    __slots__ = ("_aead", "_base_nonce", "_exporter_secret", "_kdf", "_key", "_nn", "_seq", "_sid")

    def __init__(
        self, suite: HPKESuite, key: bytes, base_nonce: bytes, exporter_secret: bytes
    ) -> None:
        make = _AEADS[suite.aead_id][0]
        self._aead = make(key) if make is not None else None
        self._key, self._base_nonce, self._exporter_secret = key, base_nonce, exporter_secret
        self._kdf, self._sid, self._nn, self._seq = suite.kdf, suite.suite_id, len(base_nonce), 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seq={self._seq}, <secrets redacted>)"

    @property
    def seq(self) -> int:
        """The sequence number of the next Seal/Open."""
        return self._seq

    def _nonce(self) -> tuple[Any, bytes]:
        aead = self._aead
        if aead is None:
            raise MLSStateError("export-only HPKE context cannot seal or open")
        # MessageLimitReachedError (§5.2): the sequence number must not wrap.
        if self._seq >= (1 << (8 * self._nn)) - 1:
            raise MLSStateError("HPKE message limit reached")
        seq = self._seq.to_bytes(self._nn, "big")
        return aead, bytes(a ^ b for a, b in zip(self._base_nonce, seq, strict=True))

    def export(self, exporter_context: bytes, length: int) -> bytes:
        """Secret export (§5.3): LabeledExpand(exporter_secret, "sec", context, L)."""
        return self._kdf.labeled_expand(
            self._sid, self._exporter_secret, b"sec", exporter_context, length
        )

    def secrets_for_testing_only(self) -> tuple[bytes, bytes, bytes]:
        """(key, base_nonce, exporter_secret), for checking published vectors."""
        return self._key, self._base_nonce, self._exporter_secret


class SenderContext(_Context):
    """The sender's side of an HPKE context: :meth:`seal` and :meth:`export`."""

    __slots__ = ()

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        """ContextS.Seal (§5.2); increments the sequence number."""
        aead, nonce = self._nonce()
        ciphertext = bytes(aead.encrypt(nonce, plaintext, aad))
        self._seq += 1
        return ciphertext


class ReceiverContext(_Context):
    """The receiver's side of an HPKE context: :meth:`open` and :meth:`export`."""

    __slots__ = ()

    def open(self, aad: bytes, ciphertext: bytes) -> bytes:
        """ContextR.Open (§5.2); a failure leaves the sequence number unchanged."""
        aead, nonce = self._nonce()
        try:
            plaintext = bytes(aead.decrypt(nonce, ciphertext, aad))
        except InvalidTag:
            raise MLSAuthenticationError() from None
        self._seq += 1
        return plaintext


class HPKESuite:
    """One HPKE ciphersuite (KEM, KDF, AEAD); get instances from :func:`hpke_suite`.

    Mode is chosen by the arguments: a ``psk``/``psk_id`` pair selects a PSK
    mode, a sender key (``sk_s`` / ``pk_s``) an auth mode (RFC 9180 §5.1).
    """

    def __init__(self, kem_id: int, kdf_id: int, aead_id: int) -> None:
        self.kem_id, self.kdf_id, self.aead_id = kem_id, kdf_id, aead_id
        self.kdf = _KDFS[kdf_id]
        self.Nk, self.Nn = _AEADS[aead_id][1], _AEADS[aead_id][2]
        self._pq: PQKem | None = None
        self._curve: _XCurve | _ECCurve | None = None
        if kem_id in PQ_KEMS:
            self._pq = PQKem(kem_id)
            self.kem_kdf, self.Nsecret = self.kdf, self._pq.Nsecret  # the KEM hashes itself
            self.Npk, self.Nsk, self.Nenc = self._pq.Npk, self._pq.Nsk, self._pq.Nenc
        else:
            make_curve, kem_kdf_id, nsecret = _KEMS[kem_id]
            self.kem_kdf, self.Nsecret = _KDFS[kem_kdf_id], nsecret
            self._curve = make_curve()
            self.Npk, self.Nsk = self._curve.Npk, self._curve.Nsk
            self.Nenc = self.Npk
        self.kem_suite_id = b"KEM" + kem_id.to_bytes(2, "big")
        self.suite_id = b"HPKE" + b"".join(i.to_bytes(2, "big") for i in (kem_id, kdf_id, aead_id))
        self._private_keys: KeyCache[bytes, Any] = KeyCache()
        self._public_keys: KeyCache[bytes, Any] = KeyCache()

    def __repr__(self) -> str:
        ids = f"kem=0x{self.kem_id:04x}, kdf=0x{self.kdf_id:04x}, aead=0x{self.aead_id:04x}"
        return f"HPKESuite({ids})"

    # -- keys (§7.1) -------------------------------------------------------

    @property
    def post_quantum(self) -> bool:
        """Whether the KEM is one of draft-ietf-hpke-pq's (ML-KEM or a PQ/T hybrid)."""
        return self._pq is not None

    @property
    def _dh_curve(self) -> _XCurve | _ECCurve:
        if self._curve is None:
            raise MLSLocalError("this HPKE KEM has no Diffie-Hellman group")
        return self._curve

    def private_key(self, sk: bytes) -> Any:
        """The loaded private key object for serialized ``sk`` (cached)."""
        load = self._pq.load_private if self._pq is not None else self._dh_curve.load_private
        return self._private_keys.get(bytes(sk), load)

    def public_key_object(self, pk: bytes) -> Any:
        """The loaded public key object for serialized ``pk`` (cached)."""
        load = self._pq.load_public if self._pq is not None else self._dh_curve.load_public
        return self._public_keys.get(bytes(pk), load)

    def public_key(self, sk: bytes) -> bytes:
        """The serialized public key matching serialized private key ``sk``."""
        if self._pq is not None:
            return self._pq.public_bytes_of(self.private_key(sk))
        return self._dh_curve.public_bytes(self.private_key(sk).public_key())

    def _pair(self, key: Any) -> tuple[bytes, bytes]:
        curve = self._dh_curve
        sk = curve.private_bytes(key)
        pk = curve.public_bytes(key.public_key())
        self._private_keys.get(sk, lambda _: key)
        return sk, pk

    def _pq_pair(self, sk: bytes) -> tuple[bytes, bytes]:
        return sk, self.public_key(sk)

    def generate_key_pair(self) -> tuple[bytes, bytes]:
        """A fresh (private, public) key pair, serialized."""
        if self._pq is not None:
            return self._pq_pair(self._pq.generate_seed())
        return self._pair(self._dh_curve.generate())

    def derive_key_pair(self, ikm: bytes) -> tuple[bytes, bytes]:
        """DeriveKeyPair(ikm) (§7.1.3; draft-ietf-hpke-pq §3-4), serialized (private, public)."""
        if self._pq is not None:
            return self._pq_pair(self._pq.derive_seed(ikm))
        return self._pair(self._derive(ikm))

    def _derive(self, ikm: bytes) -> Any:
        kdf, sid = self.kem_kdf, self.kem_suite_id
        dkp_prk = kdf.labeled_extract(sid, b"", b"dkp_prk", ikm)
        return self._dh_curve.derive(
            lambda label, info, n: kdf.labeled_expand(sid, dkp_prk, label, info, n)
        )

    # -- DHKEM (§4.1) ------------------------------------------------------

    def _dh(self, priv: Any, pub: Any) -> bytes:
        try:
            return self._dh_curve.exchange(priv, pub)
        except ValueError:  # all-zero X25519/X448 output, or invalid point
            raise MLSAuthenticationError("HPKE DH failed") from None

    def _extract_and_expand(self, dh: bytes, kem_context: bytes) -> bytes:
        kdf, sid = self.kem_kdf, self.kem_suite_id
        eae_prk = kdf.labeled_extract(sid, b"", b"eae_prk", dh)
        return kdf.labeled_expand(sid, eae_prk, b"shared_secret", kem_context, self.Nsecret)

    def _encap(self, pk_r: bytes, ephemeral: Any, sk_s: bytes | None) -> tuple[bytes, bytes]:
        pub_r = self.public_key_object(pk_r)
        if self._pq is not None:
            if sk_s is not None:
                raise MLSLocalError("post-quantum HPKE KEMs have no auth mode")
            return self._pq.encap(pub_r)
        curve = self._dh_curve
        enc = curve.public_bytes(ephemeral.public_key())
        dh = self._dh(ephemeral, pub_r)
        kem_context = enc + pk_r
        if sk_s is not None:  # AuthEncap
            priv_s = self.private_key(sk_s)
            dh += self._dh(priv_s, pub_r)
            kem_context += curve.public_bytes(priv_s.public_key())
        return self._extract_and_expand(dh, kem_context), enc

    def _decap(self, enc: bytes, sk_r: bytes, pk_s: bytes | None) -> bytes:
        if self._pq is not None:
            if pk_s is not None:
                raise MLSLocalError("post-quantum HPKE KEMs have no auth mode")
            return self._pq.decap(bytes(enc), self.private_key(sk_r))
        curve = self._dh_curve
        pub_e = curve.load_public(bytes(enc))  # ephemeral: never cached
        priv_r = self.private_key(sk_r)
        dh = self._dh(priv_r, pub_e)
        kem_context = bytes(enc) + curve.public_bytes(priv_r.public_key())
        if pk_s is not None:  # AuthDecap
            dh += self._dh(priv_r, self.public_key_object(pk_s))
            kem_context += pk_s
        return self._extract_and_expand(dh, kem_context)

    def encap_for_testing_only(
        self, pk_r: bytes, ikm_e: bytes, sk_s: bytes | None = None
    ) -> tuple[bytes, bytes]:
        """(shared_secret, enc) with the ephemeral derived from ``ikm_e``: tests only."""
        if self._pq is not None:
            raise MLSLocalError("cryptography's ML-KEM has no derandomized encapsulation")
        return self._encap(pk_r, self._derive(ikm_e), sk_s)

    # -- key schedule (§5.1) ----------------------------------------------

    def _key_schedule(
        self, shared_secret: bytes, info: bytes, psk: bytes, psk_id: bytes, auth: bool
    ) -> tuple[bytes, bytes, bytes]:
        if bool(psk) != bool(psk_id):
            raise MLSLocalError("HPKE psk and psk_id must be given together")
        mode = (MODE_AUTH if auth else MODE_BASE) | (MODE_PSK if psk else 0)
        kdf, sid = self.kdf, self.suite_id
        psk_id_hash = kdf.labeled_extract(sid, b"", b"psk_id_hash", psk_id)
        info_hash = kdf.labeled_extract(sid, b"", b"info_hash", info)
        context = bytes([mode]) + psk_id_hash + info_hash
        secret = kdf.labeled_extract(sid, shared_secret, b"secret", psk)
        key = kdf.labeled_expand(sid, secret, b"key", context, self.Nk) if self.Nk else b""
        nonce = kdf.labeled_expand(sid, secret, b"base_nonce", context, self.Nn) if self.Nn else b""
        exporter = kdf.labeled_expand(sid, secret, b"exp", context, kdf.Nh)
        return key, nonce, exporter

    def key_schedule_context_for_testing_only(self, mode: int, info: bytes, psk_id: bytes) -> bytes:
        """The §5.1 ``key_schedule_context`` for ``mode``, for checking vectors."""
        kdf, sid = self.kdf, self.suite_id
        return (
            bytes([mode])
            + kdf.labeled_extract(sid, b"", b"psk_id_hash", psk_id)
            + kdf.labeled_extract(sid, b"", b"info_hash", info)
        )

    # -- setup (§5.1.1-4) ------------------------------------------------

    def setup_s(
        self,
        pk_r: bytes,
        info: bytes = b"",
        *,
        psk: bytes = b"",
        psk_id: bytes = b"",
        sk_s: bytes | None = None,
    ) -> tuple[bytes, SenderContext]:
        """SetupBaseS / SetupPSKS / SetupAuthS / SetupAuthPSKS: (enc, context)."""
        ephemeral = None if self._pq is not None else self._dh_curve.generate()
        return self._setup_s(pk_r, info, psk, psk_id, sk_s, ephemeral)

    def setup_s_for_testing_only(
        self,
        pk_r: bytes,
        info: bytes,
        ikm_e: bytes,
        *,
        psk: bytes = b"",
        psk_id: bytes = b"",
        sk_s: bytes | None = None,
    ) -> tuple[bytes, SenderContext]:
        """:meth:`setup_s` with the ephemeral derived from ``ikm_e``: tests only."""
        if self._pq is not None:
            raise MLSLocalError("cryptography's ML-KEM has no derandomized encapsulation")
        return self._setup_s(pk_r, info, psk, psk_id, sk_s, self._derive(ikm_e))

    def _setup_s(
        self, pk_r: bytes, info: bytes, psk: bytes, psk_id: bytes, sk_s: bytes | None, eph: Any
    ) -> tuple[bytes, SenderContext]:
        shared_secret, enc = self._encap(bytes(pk_r), eph, sk_s)
        secrets = self._key_schedule(shared_secret, info, psk, psk_id, sk_s is not None)
        return enc, SenderContext(self, *secrets)

    def setup_r(
        self,
        enc: bytes,
        sk_r: bytes,
        info: bytes = b"",
        *,
        psk: bytes = b"",
        psk_id: bytes = b"",
        pk_s: bytes | None = None,
    ) -> ReceiverContext:
        """SetupBaseR / SetupPSKR / SetupAuthR / SetupAuthPSKR."""
        shared_secret = self._decap(enc, bytes(sk_r), pk_s)
        secrets = self._key_schedule(shared_secret, info, psk, psk_id, pk_s is not None)
        return ReceiverContext(self, *secrets)

    # -- single-shot APIs (§6) -------------------------------------------

    def seal(
        self, pk_r: bytes, info: bytes, aad: bytes, plaintext: bytes, **mode: Any
    ) -> tuple[bytes, bytes]:
        """Single-shot Seal (§6.1): (enc, ciphertext)."""
        enc, ctx = self.setup_s(pk_r, info, **mode)
        return enc, ctx.seal(aad, plaintext)

    def open(
        self, enc: bytes, sk_r: bytes, info: bytes, aad: bytes, ciphertext: bytes, **mode: Any
    ) -> bytes:
        """Single-shot Open (§6.1); :class:`MLSAuthenticationError` on failure."""
        return self.setup_r(enc, sk_r, info, **mode).open(aad, ciphertext)

    def send_export(
        self, pk_r: bytes, info: bytes, exporter_context: bytes, length: int, **mode: Any
    ) -> tuple[bytes, bytes]:
        """Single-shot SendExport (§6.2): (enc, exported secret)."""
        enc, ctx = self.setup_s(pk_r, info, **mode)
        return enc, ctx.export(exporter_context, length)

    def receive_export(
        self,
        enc: bytes,
        sk_r: bytes,
        info: bytes,
        exporter_context: bytes,
        length: int,
        **mode: Any,
    ) -> bytes:
        """Single-shot ReceiveExport (§6.2)."""
        return self.setup_r(enc, sk_r, info, **mode).export(exporter_context, length)


def is_supported(kem_id: int, kdf_id: int, aead_id: int) -> bool:
    """Whether :func:`hpke_suite` supports this (KEM, KDF, AEAD) combination."""
    return (kem_id in _KEMS or kem_id in PQ_KEMS) and kdf_id in _KDFS and aead_id in _AEADS


@functools.cache
def hpke_suite(kem_id: int, kdf_id: int, aead_id: int) -> HPKESuite:
    """The (cached) :class:`HPKESuite` for these RFC 9180 identifiers."""
    if not is_supported(kem_id, kdf_id, aead_id):
        raise MLSProtocolError(
            f"unsupported HPKE suite kem=0x{kem_id:04x} kdf=0x{kdf_id:04x} aead=0x{aead_id:04x}"
        )
    return HPKESuite(kem_id, kdf_id, aead_id)
