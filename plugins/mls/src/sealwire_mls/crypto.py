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
import hashlib
import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from attrs import field, frozen
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hpke as _rust_hpke
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, mldsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sealwire_mls.codec import Writer
from sealwire_mls.errors import (
    MLSAuthenticationError,
    MLSDecodeError,
    MLSLocalError,
    MLSProtocolError,
)
from sealwire_mls.hpke import AEAD_EXPORT_ONLY, HPKESuite, KeyCache, hpke_suite

__all__ = [
    "LABEL_PREFIX",
    "MAX_VERIFY_WORKERS",
    "PARALLEL_VERIFY_MIN",
    "PQ_AUTH_CIPHER_SUITES",
    "PQ_CIPHER_SUITES",
    "PQ_SUITE_BASE",
    "SUPPORTED_CIPHER_SUITES",
    "CipherSuite",
    "VERIFY_CHUNK",
    "PendingVerification",
    "cipher_suite",
    "shutdown_verify_pool",
    "start_verify_pool",
]

#: Every MLS label is prefixed with the protocol version string (§5.1.3, §8).
LABEL_PREFIX = b"MLS 1.0 "

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA256": hashes.SHA256,
    "SHA384": hashes.SHA384,
    "SHA512": hashes.SHA512,
}
_AEAD_CLASSES: dict[int, Any] = {0x0001: AESGCM, 0x0002: AESGCM, 0x0003: ChaCha20Poly1305}


#: ML-DSA signature schemes (draft-ietf-tls-mldsa: pure ML-DSA, empty context): the
#: private key is the 32-byte FIPS 204 seed ``xi``, the public key and signature raw.
_MLDSA: dict[str, tuple[Any, Any]] = {
    "mldsa44": (mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey),
    "mldsa65": (mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey),
    "mldsa87": (mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey),
}


class _Signer:
    """One TLS SignatureScheme as MLS uses it (§5.1.2): raw EdDSA keys, ECDSA
    private scalars (big-endian), uncompressed points and DER signatures; ML-DSA
    seeds, raw public keys and signatures."""

    def __init__(self, name: str) -> None:
        self.name = name
        curves: dict[str, tuple[ec.EllipticCurve, hashes.HashAlgorithm, int]] = {
            "ecdsa_secp256r1_sha256": (ec.SECP256R1(), hashes.SHA256(), 32),
            "ecdsa_secp384r1_sha384": (ec.SECP384R1(), hashes.SHA384(), 48),
            "ecdsa_secp521r1_sha512": (ec.SECP521R1(), hashes.SHA512(), 66),
        }
        self._ecdsa = curves.get(name)
        self._eddsa: Any = {"ed25519": ed25519, "ed448": ed448}.get(name)
        self._mldsa = _MLDSA.get(name)

    def _eddsa_classes(self) -> tuple[Any, Any]:
        if self._mldsa is not None:
            return self._mldsa
        mod = self._eddsa
        if mod is ed25519:
            return ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey
        return ed448.Ed448PrivateKey, ed448.Ed448PublicKey

    def load_private(self, data: bytes) -> Any:
        try:
            if self._ecdsa is not None:
                return ec.derive_private_key(int.from_bytes(data, "big"), self._ecdsa[0])
            if self._mldsa is not None:
                return self._mldsa[0].from_seed_bytes(bytes(data))
            return self._eddsa_classes()[0].from_private_bytes(data)
        except ValueError:
            raise MLSDecodeError("invalid signature private key", field="signature_key") from None

    def load_public(self, data: bytes) -> Any:
        try:
            if self._ecdsa is not None:
                return ec.EllipticCurvePublicKey.from_encoded_point(self._ecdsa[0], data)
            return self._eddsa_classes()[1].from_public_bytes(data)
        except ValueError:
            raise MLSDecodeError("invalid signature public key", field="signature_key") from None

    def private_bytes(self, key: Any) -> bytes:
        if self._ecdsa is not None:
            return int(key.private_numbers().private_value).to_bytes(self._ecdsa[2], "big")
        return bytes(key.private_bytes_raw())

    def public_bytes(self, key: Any) -> bytes:
        if self._ecdsa is not None:
            return bytes(key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))
        return bytes(key.public_bytes_raw())

    def generate(self) -> Any:
        if self._ecdsa is not None:
            return ec.generate_private_key(self._ecdsa[0])
        return self._eddsa_classes()[0].generate()

    def sign(self, key: Any, data: bytes) -> bytes:
        if self._ecdsa is not None:
            return bytes(key.sign(data, ec.ECDSA(self._ecdsa[1])))
        return bytes(key.sign(data))

    def verify(self, key: Any, signature: bytes, data: bytes) -> None:
        try:
            if self._ecdsa is not None:
                key.verify(signature, data, ec.ECDSA(self._ecdsa[1]))
            else:
                key.verify(signature, data)
        except (InvalidSignature, ValueError):
            raise MLSAuthenticationError() from None


PARALLEL_VERIFY_MIN = 2048
"""Signatures (not already verified) in one batch before it is spread over worker
processes, once :func:`start_verify_pool` started them. cryptography's ``verify``
holds the GIL (threads do not help: measured cpu/wall 0.54 with two threads on two
cores), so other cores are reached by processes; shipping a signature costs about
1 % of verifying it, but a batch below this many (a few hundred ms of Ed25519 on
one core) gains less than the IPC and scheduling jitter on a loaded machine."""

MAX_VERIFY_WORKERS = 8
"""Worker processes at most (the calling process meanwhile runs the join's other
checks): past a few cores a 10,000-leaf join is bound by its decoding, not by
signatures."""


def _verify_chunk(scheme: str, items: Sequence[tuple[bytes, bytes, bytes]]) -> list[int]:
    """In a worker: the indices in ``items`` (public key, signature, signed bytes) that fail."""
    signer = _Signer(scheme)
    bad = []
    for i, (public, signature, signed) in enumerate(items):
        try:
            signer.verify(signer.load_public(public), signature, signed)
        except (MLSAuthenticationError, MLSDecodeError):
            bad.append(i)
    return bad


class _VerifyPool:
    """The worker processes batches of signatures are spread over: off until
    :func:`start_verify_pool`.

    Opt-in because it is not free and not always a win: workers are *spawned*
    (fresh interpreters, safe beside threads unlike fork), which re-imports the
    program's ``__main__`` (it must keep its work under ``if __name__ ==
    "__main__":``) and costs 0.3-2.5 s of start-up; on a machine whose cores are
    busy with other work they only compete (see benchmarks/bench_mls.py). A
    process that joins large groups on idle cores (a fleet) starts it once. A
    broken pool is dropped and its batches verified in this process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._workers = 0

    def workers(self) -> int:
        """Worker processes running (0: verify in this process)."""
        return self._workers if self._executor is not None else 0

    def start(self, workers: int | None) -> None:
        if workers is None:
            try:
                cores = len(os.sched_getaffinity(0))
            except AttributeError:  # not on Linux
                cores = os.cpu_count() or 1
            workers = 0 if cores < 2 else cores
        workers = min(workers, MAX_VERIFY_WORKERS)
        self.shutdown()
        if workers < 1:
            return
        executor = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn")
        )
        # Pay the start-up now, not in the first join: one empty chunk per worker.
        warm = [executor.submit(_verify_chunk, "ed25519", []) for _ in range(workers)]
        for future in warm:
            future.result()
        with self._lock:
            self._executor, self._workers = executor, workers

    def executor(self) -> ProcessPoolExecutor | None:
        with self._lock:
            return self._executor

    def drop(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is broken:
                self._executor = None
        broken.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


_POOL = _VerifyPool()


def start_verify_pool(workers: int | None = None) -> None:
    """Start worker processes that large batches of signature checks (a join's
    leaves) are spread over; ``workers`` defaults to one per core (none on one core).

    Call it once, from the program's ``if __name__ == "__main__":`` block
    (workers are spawned and re-import ``__main__``); it returns once they run.
    """
    _POOL.start(workers)


def shutdown_verify_pool() -> None:
    """Stop the worker processes; signatures are verified in this process again."""
    _POOL.shutdown()


VERIFY_CHUNK = 1024
"""Signatures per job sent to a worker once a batch is spread: about 0.1 s of Ed25519,
so a batch still being read (a joiner decoding a 10,000-leaf tree) keeps the workers
busy meanwhile and the last job leaves a core idle only briefly; shipping costs about
1 % of verifying."""


class PendingVerification:
    """A batch of signature checks under way (from :meth:`CipherSuite.start_verify_many`
    or :meth:`CipherSuite.verify_batch`).

    Signatures are :meth:`add`-ed one by one. Once the batch holds
    :data:`PARALLEL_VERIFY_MIN` and worker processes run, it goes to them in jobs of
    :data:`VERIFY_CHUNK` as it grows, so the caller goes on reading (or checking)
    meanwhile; otherwise it is verified here, in :meth:`wait`.
    """

    def __init__(self, suite: CipherSuite) -> None:
        self._suite = suite
        self._digests: list[bytes] = []
        self._queued: list[tuple[bytes, bytes, bytes]] = []
        # Jobs sent to the workers (None: the pool broke, verify the job here).
        self._jobs: list[tuple[list[tuple[bytes, bytes, bytes]], Future[list[int]] | None]] = []
        self._executor: ProcessPoolExecutor | None = None
        self._spread = _POOL.workers() > 0

    @property
    def _futures(self) -> list[Future[list[int]]]:
        return [future for _, future in self._jobs if future is not None]

    def add(self, public_key: bytes, label: bytes, content: bytes, signature: bytes) -> None:
        """One more VerifyWithLabel(public_key, label, content, signature) in the batch
        (skipped if this process saw it verified before)."""
        seen, job = self._suite._verification_job(public_key, label, content, signature)
        if job is None:
            return
        self._digests.append(seen)
        self._queued.append(job)
        if (
            self._spread
            and len(self._queued) >= VERIFY_CHUNK
            and (self._jobs or len(self._digests) >= PARALLEL_VERIFY_MIN)
        ):
            self._send()

    def _send(self) -> None:
        chunk, self._queued = self._queued, []
        if self._executor is None:
            self._executor = _POOL.executor()
        if self._executor is None:  # stopped meanwhile
            self._spread = False
            self._jobs.append((chunk, None))
            return
        try:
            future = self._executor.submit(_verify_chunk, self._suite._signer.name, chunk)
        except (BrokenProcessPool, RuntimeError, OSError):
            _POOL.drop(self._executor)
            self._spread, future = False, None
        self._jobs.append((chunk, future))

    def wait(self) -> None:
        """Finish the checks; :class:`MLSAuthenticationError` if any signature failed."""
        if self._queued and self._spread and len(self._digests) >= PARALLEL_VERIFY_MIN:
            self._send()
        try:
            failed = any(self._job_failed(chunk, future) for chunk, future in self._jobs) or (
                self._suite._verify_here(self._queued)
            )
        finally:
            self.cancel()
        if failed:
            raise MLSAuthenticationError()
        self._suite._remember_verified(self._digests)

    def _job_failed(
        self, chunk: list[tuple[bytes, bytes, bytes]], future: Future[list[int]] | None
    ) -> bool:
        if future is None:  # never sent: the pool broke
            return self._suite._verify_here(chunk)
        try:
            return bool(future.result())
        except (BrokenProcessPool, CancelledError, OSError):  # cancelled: the pool was dropped
            assert self._executor is not None
            _POOL.drop(self._executor)
            return self._suite._verify_here(chunk)

    def cancel(self) -> None:
        """Drop the checks not yet started (when the caller gives up on the batch)."""
        for _, future in self._jobs:
            if future is not None:
                future.cancel()


VERIFIED_CACHE_SIZE = 4096
"""Signatures remembered as verified (32-byte digests): a few thousand messages of
the groups of one process in flight at once, about 200 KiB."""


@frozen(kw_only=True)
class CipherSuite:
    """One MLS cipher suite (RFC 9420 §5.1, registry §17.1); get it with :func:`cipher_suite`.

    ``Nh`` is the hash / KDF output length, ``Nk`` and ``Nn`` the AEAD key
    and nonce lengths.
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
    _signer: _Signer = field(repr=False, eq=False)
    _sig_private: KeyCache[bytes, Any] = field(factory=KeyCache, repr=False, eq=False)
    _sig_public: KeyCache[bytes, Any] = field(factory=KeyCache, repr=False, eq=False)
    # Digests of (public key, signature, signed content) that verified: the members
    # of one group run in one process (a fleet) verify each message's signature
    # once, not once per member. Only successes are kept; verification is a pure
    # function of these bytes, so a hit is exactly a verification done before.
    _verified: KeyCache[bytes, None] = field(
        factory=lambda: KeyCache(VERIFIED_CACHE_SIZE), repr=False, eq=False
    )

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

    @staticmethod
    def _sign_content(label: bytes, content: bytes) -> bytes:
        # struct { opaque label<V> = "MLS 1.0 " + Label; opaque content<V>; } SignContent;
        return Writer().opaque(LABEL_PREFIX + label).opaque(content).getvalue()

    def sign_with_label(self, signature_priv: bytes, label: bytes, content: bytes) -> bytes:
        """SignWithLabel(SignatureKey, Label, Content) (§5.1.2)."""
        key = self._sig_private.get(bytes(signature_priv), self._signer.load_private)
        return self._signer.sign(key, self._sign_content(label, content))

    def verify_with_label(
        self, signature_pub: bytes, label: bytes, content: bytes, signature: bytes
    ) -> None:
        """VerifyWithLabel (§5.1.2); raises :class:`MLSAuthenticationError` on failure."""
        seen, job = self._verification_job(signature_pub, label, content, signature)
        if job is not None:
            if self._verify_here([job]):
                raise MLSAuthenticationError()
            self._remember_verified([seen])

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
        :data:`PARALLEL_VERIFY_MIN` others goes to worker processes (when
        :func:`start_verify_pool` started them), so the caller runs its other
        checks meanwhile; a smaller one is verified here, in
        :meth:`PendingVerification.wait`.
        """
        pending = self.verify_batch()
        for item in items:
            pending.add(*item)
        return pending

    def verify_batch(self) -> PendingVerification:
        """An empty batch of signature checks, to :meth:`PendingVerification.add` to
        while its items are still being read."""
        return PendingVerification(self)

    def _verification_job(
        self, public_key: bytes, label: bytes, content: bytes, sig: bytes
    ) -> tuple[bytes, tuple[bytes, bytes, bytes] | None]:
        """(digest, (public key, signature, signed bytes)), or (digest, None) if this
        process saw that signature verified before."""
        public, signature = bytes(public_key), bytes(sig)
        signed = self._sign_content(label, content)
        seen = hashlib.sha256(
            len(public).to_bytes(2, "big") + public + len(signature).to_bytes(2, "big")
            + signature + signed
        ).digest()  # fmt: skip
        if self._verified.contains(seen):
            return seen, None
        return seen, (public, signature, signed)

    def _verify_here(self, jobs: Sequence[tuple[bytes, bytes, bytes]]) -> bool:
        """Verify ``jobs`` (public key, signature, signed bytes) in this process; any failed?"""
        for public, signature, signed in jobs:
            try:
                key = self._sig_public.get(public, self._signer.load_public)
                self._signer.verify(key, signature, signed)
            except (MLSAuthenticationError, MLSDecodeError):
                return True
        return False

    def _remember_verified(self, digests: Sequence[bytes]) -> None:
        for seen in digests:
            self._verified.get(seen, lambda _: None)

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
        signer=_Signer(scheme),
    )


def cipher_suite(suite_id: int) -> CipherSuite:
    """The (cached, one per id) :class:`CipherSuite`; :class:`MLSProtocolError` if unsupported."""
    if suite_id not in _REGISTRY:
        raise MLSProtocolError(f"unsupported cipher suite {suite_id}")
    return _build(suite_id)
