"""Signatures as MLS uses them (RFC 9420 §5.1.2): the schemes' key and signature
encodings, ``SignWithLabel``'s signed bytes, and batches of ``VerifyWithLabel``
checks, remembered once verified and spread over worker processes when large.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, mldsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sealwire_mls.codec import Writer
from sealwire_mls.errors import MLSAuthenticationError, MLSDecodeError
from sealwire_mls.hpke import KeyCache

__all__ = [
    "LABEL_PREFIX",
    "MAX_VERIFY_WORKERS",
    "PARALLEL_VERIFY_MIN",
    "VERIFIED_CACHE_SIZE",
    "VERIFY_CHUNK",
    "PendingVerification",
    "SignatureChecks",
    "Signer",
    "shutdown_verify_pool",
    "sign_content",
    "start_verify_pool",
]

#: Every MLS label is prefixed with the protocol version string (§5.1.3, §8).
LABEL_PREFIX = b"MLS 1.0 "


def sign_content(label: bytes, content: bytes) -> bytes:
    """The bytes SignWithLabel signs: ``struct { opaque label<V> = "MLS 1.0 " + Label;
    opaque content<V>; } SignContent;`` (§5.1.2)."""
    return Writer().opaque(LABEL_PREFIX + label).opaque(content).getvalue()


#: ML-DSA signature schemes (draft-ietf-tls-mldsa: pure ML-DSA, empty context): the
#: private key is the 32-byte FIPS 204 seed ``xi``, the public key and signature raw.
_MLDSA: dict[str, tuple[Any, Any]] = {
    "mldsa44": (mldsa.MLDSA44PrivateKey, mldsa.MLDSA44PublicKey),
    "mldsa65": (mldsa.MLDSA65PrivateKey, mldsa.MLDSA65PublicKey),
    "mldsa87": (mldsa.MLDSA87PrivateKey, mldsa.MLDSA87PublicKey),
}


class Signer:
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


def verify_chunk(scheme: str, items: Sequence[tuple[bytes, bytes, bytes]]) -> list[int]:
    """In a worker: the indices in ``items`` (public key, signature, signed bytes) that fail."""
    signer = Signer(scheme)
    bad = []
    for i, (public, signature, signed) in enumerate(items):
        try:
            signer.verify(signer.load_public(public), signature, signed)
        except (MLSAuthenticationError, MLSDecodeError):
            bad.append(i)
    return bad


class VerifyPool:
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
        warm = [executor.submit(verify_chunk, "ed25519", []) for _ in range(workers)]
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


POOL = VerifyPool()


def start_verify_pool(workers: int | None = None) -> None:
    """Start worker processes that large batches of signature checks (a join's
    leaves) are spread over; ``workers`` defaults to one per core (none on one core).

    Call it once, from the program's ``if __name__ == "__main__":`` block
    (workers are spawned and re-import ``__main__``); it returns once they run.
    """
    POOL.start(workers)


def shutdown_verify_pool() -> None:
    """Stop the worker processes; signatures are verified in this process again."""
    POOL.shutdown()


VERIFY_CHUNK = 1024
"""Signatures per job sent to a worker once a batch is spread: about 0.1 s of Ed25519,
so a batch still being read (a joiner decoding a 10,000-leaf tree) keeps the workers
busy meanwhile and the last job leaves a core idle only briefly; shipping costs about
1 % of verifying."""


class PendingVerification:
    """A batch of signature checks under way (from :meth:`SignatureChecks.batch`, which
    the cipher suite's ``verify_batch`` and ``start_verify_many`` call).

    Signatures are :meth:`add`-ed one by one. Once the batch holds
    :data:`PARALLEL_VERIFY_MIN` and worker processes run, it goes to them in jobs of
    :data:`VERIFY_CHUNK` as it grows, so the caller goes on reading (or checking)
    meanwhile; otherwise it is verified here, in :meth:`wait`.
    """

    def __init__(self, checks: SignatureChecks) -> None:
        self._checks = checks
        self._digests: list[bytes] = []
        self._queued: list[tuple[bytes, bytes, bytes]] = []
        # Jobs sent to the workers (None: the pool broke, verify the job here).
        self._jobs: list[tuple[list[tuple[bytes, bytes, bytes]], Future[list[int]] | None]] = []
        self._executor: ProcessPoolExecutor | None = None
        self._spread = POOL.workers() > 0

    @property
    def _futures(self) -> list[Future[list[int]]]:
        return [future for _, future in self._jobs if future is not None]

    def add(self, public_key: bytes, label: bytes, content: bytes, signature: bytes) -> None:
        """One more VerifyWithLabel(public_key, label, content, signature) in the batch
        (skipped if this process saw it verified before)."""
        seen, job = self._checks.job(public_key, label, content, signature)
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
            self._executor = POOL.executor()
        if self._executor is None:  # stopped meanwhile
            self._spread = False
            self._jobs.append((chunk, None))
            return
        try:
            future = self._executor.submit(verify_chunk, self._checks.signer.name, chunk)
        except (BrokenProcessPool, RuntimeError, OSError):
            POOL.drop(self._executor)
            self._spread, future = False, None
        self._jobs.append((chunk, future))

    def wait(self) -> None:
        """Finish the checks; :class:`MLSAuthenticationError` if any signature failed."""
        if self._queued and self._spread and len(self._digests) >= PARALLEL_VERIFY_MIN:
            self._send()
        try:
            failed = any(self._job_failed(chunk, future) for chunk, future in self._jobs) or (
                self._checks.verify_here(self._queued)
            )
        finally:
            self.cancel()
        if failed:
            raise MLSAuthenticationError()
        self._checks.remember(self._digests)

    def _job_failed(
        self, chunk: list[tuple[bytes, bytes, bytes]], future: Future[list[int]] | None
    ) -> bool:
        if future is None:  # never sent: the pool broke
            return self._checks.verify_here(chunk)
        try:
            return bool(future.result())
        except (BrokenProcessPool, CancelledError, OSError):  # cancelled: the pool was dropped
            assert self._executor is not None
            POOL.drop(self._executor)
            return self._checks.verify_here(chunk)

    def cancel(self) -> None:
        """Drop the checks not yet started (when the caller gives up on the batch)."""
        for _, future in self._jobs:
            if future is not None:
                future.cancel()


VERIFIED_CACHE_SIZE = 4096
"""Signatures remembered as verified (32-byte digests): a few thousand messages of
the groups of one process in flight at once, about 200 KiB."""


class SignatureChecks:
    """A suite's VerifyWithLabel (§5.1.2): public keys loaded once (LRU), signatures
    that verified remembered by digest.

    The members of one group run in one process (a fleet) verify each message's
    signature once, not once per member. Only successes are kept; verification is a
    pure function of these bytes, so a hit is exactly a verification done before.
    """

    def __init__(self, signer: Signer) -> None:
        self.signer = signer
        self._public: KeyCache[bytes, Any] = KeyCache()
        self._verified: KeyCache[bytes, None] = KeyCache(VERIFIED_CACHE_SIZE)

    def __repr__(self) -> str:
        return f"SignatureChecks({self.signer.name})"

    def verify_with_label(
        self, public_key: bytes, label: bytes, content: bytes, signature: bytes
    ) -> None:
        """VerifyWithLabel; :class:`MLSAuthenticationError` on failure."""
        seen, job = self.job(public_key, label, content, signature)
        if job is not None:
            if self.verify_here([job]):
                raise MLSAuthenticationError()
            self.remember([seen])

    def batch(self) -> PendingVerification:
        """An empty batch of checks, to :meth:`PendingVerification.add` to."""
        return PendingVerification(self)

    def job(
        self, public_key: bytes, label: bytes, content: bytes, sig: bytes
    ) -> tuple[bytes, tuple[bytes, bytes, bytes] | None]:
        """(digest, (public key, signature, signed bytes)), or (digest, None) if this
        process saw that signature verified before."""
        public, signature = bytes(public_key), bytes(sig)
        signed = sign_content(label, content)
        seen = hashlib.sha256(
            len(public).to_bytes(2, "big") + public + len(signature).to_bytes(2, "big")
            + signature + signed
        ).digest()  # fmt: skip
        if self._verified.contains(seen):
            return seen, None
        return seen, (public, signature, signed)

    def verify_here(self, jobs: Sequence[tuple[bytes, bytes, bytes]]) -> bool:
        """Verify ``jobs`` (public key, signature, signed bytes) in this process; any failed?"""
        for public, signature, signed in jobs:
            try:
                key = self._public.get(public, self.signer.load_public)
                self.signer.verify(key, signature, signed)
            except (MLSAuthenticationError, MLSDecodeError):
                return True
        return False

    def remember(self, digests: Sequence[bytes]) -> None:
        """Remember these signatures (by digest) as verified."""
        for seen in digests:
            self._verified.get(seen, lambda _: None)

    def forget(self) -> None:
        """Forget every signature seen verified (as a process that saw none would)."""
        self._verified = KeyCache(VERIFIED_CACHE_SIZE)
