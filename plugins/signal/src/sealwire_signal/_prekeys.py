"""This agent's prekeys: generation, rotation, lookup by id, replenishment and deletion.

Secrets live in the agent's store, namespace :data:`NAMESPACE`, one record per
key (``spk/<id>``, ``opk/<id>``, ``kem/<id>``, serialized by the state codec),
so a lookup by the id an initial message names is one read, never a scan.
Loaded key objects are cached (loading an X25519 key costs a scalar mult).

Schedule (X3DH §3.2, PQXDH §3.2): the signed prekey and the last-resort PQ
prekey are rotated together every :data:`SIGNED_PREKEY_ROTATION`; a replaced
one is kept for :data:`SIGNED_PREKEY_GRACE` so initial messages still in a
mailbox can be read. One-time keys are replenished in batches when the relay
holds fewer than the low-water marks, and deleted once used.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey

from sealwire_signal._crypto import DHKeyPair, Rng
from sealwire_signal._errors import UnknownPrekeyError
from sealwire_signal._state_codec import StoredPrekey, decode_prekey, encode_prekey
from sealwire_signal._wire import encode_kem_blob
from sealwire_signal._x3dh import KemPrekey, PrekeyBundle, SignedPrekey
from sealwire_signal._x3dh import sign_kem_prekey as _sign_kem
from sealwire_signal._x3dh import sign_signed_prekey as _sign_spk

__all__ = [
    "KEM_ONE_TIME_BATCH",
    "KEM_ONE_TIME_LOW_WATER",
    "NAMESPACE",
    "ONE_TIME_BATCH",
    "ONE_TIME_LIFETIME",
    "ONE_TIME_LOW_WATER",
    "POOL_KEM",
    "POOL_X25519",
    "SIGNED_PREKEY_GRACE",
    "SIGNED_PREKEY_ROTATION",
    "PrekeyStore",
]

NAMESPACE = "signal.prekeys"
POOL_X25519 = "x25519"
POOL_KEM = "mlkem768"
DAY = 24 * 3600.0
SIGNED_PREKEY_ROTATION = 7 * DAY
"""Signal rotates signed prekeys on a schedule of days to weeks; a week here."""
SIGNED_PREKEY_GRACE = 14 * DAY
"""A replaced signed/last-resort prekey is kept this long: longer than a mailbox keeps mail."""
ONE_TIME_BATCH = 100
"""One-time X25519 prekeys kept on the relay (32 bytes each; the relay allows 2,000 a pool)."""
ONE_TIME_LOW_WATER = 25
"""Replenish to ONE_TIME_BATCH when the relay holds fewer than this."""
KEM_ONE_TIME_BATCH = 20
"""One-time ML-KEM-768 prekeys (1,248 bytes each with signature): fewer, the last resort covers."""
KEM_ONE_TIME_LOW_WATER = 5
ONE_TIME_LIFETIME = 90 * DAY
"""A one-time key handed out whose initial message never came is dropped after this."""
MAX_CACHED_KEYS = 512
"""Loaded key objects kept in memory (a busy agent's recent prekeys)."""
_META = "meta/"


class PrekeyStore:
    """The prekey secrets of one agent over its state store (sans-I/O: time and rng passed)."""

    def __init__(
        self,
        store: Any,
        signing_key: Ed25519PrivateKey,
        identity: DHKeyPair,
        rng: Rng,
        mldsa_key: MLDSA65PrivateKey | None = None,
    ) -> None:
        """``mldsa_key``: the agent's ML-DSA-65 key, when it has one; every prekey is then
        signed with it as well (hybrid signatures, see ``_x3dh``)."""
        self._store = store
        self._signing_key = signing_key
        self._mldsa_key = mldsa_key
        self._identity = identity
        self._rng = rng
        self._cache: OrderedDict[str, DHKeyPair | MLKEM768PrivateKey] = OrderedDict()

    def __repr__(self) -> str:
        return "PrekeyStore(<secrets>)"

    # -- records ----------------------------------------------------------------------

    def _get(self, kind: str, prekey_id: int) -> StoredPrekey | None:
        raw = self._store.get(NAMESPACE, f"{kind}/{prekey_id}")
        return None if raw is None else decode_prekey(raw)

    def _put(self, tx: Any, prekey: StoredPrekey) -> None:
        tx.put(NAMESPACE, f"{prekey.kind}/{prekey.id}", encode_prekey(prekey))

    def _meta(self, name: str) -> int | None:
        raw = self._store.get(NAMESPACE, _META + name)
        return None if raw is None else int(raw.decode())

    def _next_ids(self, tx: Any, count: int) -> range:
        raw = tx.get(NAMESPACE, _META + "next_id")
        first = 1 if raw is None else int(raw.decode())
        if first + count > 0xFFFF_FFFF:
            first = 1  # wrapped after four billion keys: the old ones are long gone
        tx.put(NAMESPACE, _META + "next_id", str(first + count).encode())
        return range(first, first + count)

    # -- signed and last-resort prekeys -------------------------------------------------

    def rotate_if_due(self, now: float) -> bool:
        """Make a new signed prekey and last-resort PQ prekey when none exists or they are old."""
        current = self._meta("spk")
        if current is not None:
            record = self._get("spk", current)
            if record is not None and now - record.created < SIGNED_PREKEY_ROTATION:
                return False
        with self._store.transaction() as tx:
            spk_id, kem_id = self._next_ids(tx, 2)
            spk = DHKeyPair.generate(self._rng)
            kem_seed = self._rng(64)
            kem_public = MLKEM768PrivateKey.from_seed_bytes(kem_seed).public_key()
            for name in ("spk", "kem_last_resort"):
                self._retire(tx, name, now)
            self._put(tx, StoredPrekey(
                kind="spk", id=spk_id, private=spk.private_bytes_for_storage(), created=now,
                signature=_sign_spk(self._signing_key, spk.public),
                mldsa_signature=self._mldsa_spk(spk.public),
            ))  # fmt: skip
            kem_raw = kem_public.public_bytes_raw()
            self._put(tx, StoredPrekey(
                kind="kem", id=kem_id, private=kem_seed, created=now, last_resort=True,
                signature=_sign_kem(self._signing_key, kem_raw),
                mldsa_signature=self._mldsa_kem(kem_raw),
            ))  # fmt: skip
            tx.put(NAMESPACE, _META + "spk", str(spk_id).encode())
            tx.put(NAMESPACE, _META + "kem_last_resort", str(kem_id).encode())
        return True

    def _mldsa_spk(self, public: bytes) -> bytes | None:
        return None if self._mldsa_key is None else _sign_spk(self._mldsa_key, public)

    def _mldsa_kem(self, public: bytes) -> bytes | None:
        return None if self._mldsa_key is None else _sign_kem(self._mldsa_key, public)

    def _retire(self, tx: Any, name: str, now: float) -> None:
        raw = tx.get(NAMESPACE, _META + name)
        if raw is None:
            return
        kind = "spk" if name == "spk" else "kem"
        key = f"{kind}/{int(raw.decode())}"
        record = tx.get(NAMESPACE, key)
        if record is not None:
            old = decode_prekey(record)
            tx.put(NAMESPACE, key, encode_prekey(_evolve_retired(old, now)))

    def bundle(self) -> PrekeyBundle:
        """The bundle to publish (call :meth:`rotate_if_due` first)."""
        spk_id, kem_id = self._meta("spk"), self._meta("kem_last_resort")
        if spk_id is None or kem_id is None:
            raise UnknownPrekeyError("no signed prekey yet")
        spk, kem = self._get("spk", spk_id), self._get("kem", kem_id)
        if spk is None or kem is None:
            raise UnknownPrekeyError("signed prekey record missing")
        kem_public = self.kem(kem_id).public_key().public_bytes_raw()
        return PrekeyBundle(
            identity_key=self._identity.public,
            signed_prekey=SignedPrekey(
                id=spk_id, public=self.signed_prekey(spk_id).public, signature=spk.signature,
                mldsa_signature=spk.mldsa_signature,
            ),
            kem_prekey=KemPrekey(
                id=kem_id, public=kem_public, signature=kem.signature,
                mldsa_signature=kem.mldsa_signature,
            ),
        )  # fmt: skip

    # -- one-time prekeys ------------------------------------------------------------------

    def new_one_time(self, count: int, now: float) -> dict[str, bytes]:
        """Generate and store ``count`` one-time X25519 prekeys: pool entries id -> public key."""
        out: dict[str, bytes] = {}
        with self._store.transaction() as tx:
            for prekey_id in self._next_ids(tx, count):
                pair = DHKeyPair.generate(self._rng)
                self._put(tx, StoredPrekey(
                    kind="opk", id=prekey_id, private=pair.private_bytes_for_storage(), created=now
                ))  # fmt: skip
                out[str(prekey_id)] = pair.public
        return out

    def new_kem_one_time(self, count: int, now: float) -> dict[str, bytes]:
        """Generate and store ``count`` signed one-time ML-KEM-768 prekeys: id -> blob."""
        out: dict[str, bytes] = {}
        with self._store.transaction() as tx:
            for prekey_id in self._next_ids(tx, count):
                seed = self._rng(64)
                public = MLKEM768PrivateKey.from_seed_bytes(seed).public_key().public_bytes_raw()
                signature = _sign_kem(self._signing_key, public)
                mldsa = self._mldsa_kem(public)
                self._put(tx, StoredPrekey(
                    kind="kem", id=prekey_id, private=seed, created=now, signature=signature,
                    mldsa_signature=mldsa,
                ))  # fmt: skip
                prekey = KemPrekey(
                    id=prekey_id, public=public, signature=signature, mldsa_signature=mldsa
                )
                out[str(prekey_id)] = encode_kem_blob(prekey)
        return out

    # -- lookups (by the ids an initial message names) -----------------------------------------

    def _load(self, kind: str, prekey_id: int) -> tuple[StoredPrekey, Any]:
        key = f"{kind}/{prekey_id}"
        record = self._get(kind, prekey_id)
        if record is None:
            raise UnknownPrekeyError(f"no {kind} prekey {prekey_id}")
        cached = self._cache.get(key)
        if cached is None:
            if kind == "kem":
                cached = MLKEM768PrivateKey.from_seed_bytes(record.private)
            else:
                cached = DHKeyPair.from_private_bytes(record.private)
            self._cache[key] = cached
            while len(self._cache) > MAX_CACHED_KEYS:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return record, cached

    def signed_prekey(self, prekey_id: int) -> DHKeyPair:
        pair = self._load("spk", prekey_id)[1]
        assert isinstance(pair, DHKeyPair)
        return pair

    def one_time(self, prekey_id: int) -> DHKeyPair:
        pair = self._load("opk", prekey_id)[1]
        assert isinstance(pair, DHKeyPair)
        return pair

    def kem(self, prekey_id: int) -> MLKEM768PrivateKey:
        key = self._load("kem", prekey_id)[1]
        assert isinstance(key, MLKEM768PrivateKey)
        return key

    def is_last_resort(self, prekey_id: int) -> bool:
        return self._load("kem", prekey_id)[0].last_resort

    def delete_used(self, tx: Any, one_time_id: int | None, kem_id: int | None) -> None:
        """X3DH §3.4: delete the one-time prekeys an accepted initial message used."""
        if one_time_id is not None:
            tx.delete(NAMESPACE, f"opk/{one_time_id}")
            self._cache.pop(f"opk/{one_time_id}", None)
        raw = None if kem_id is None else tx.get(NAMESPACE, f"kem/{kem_id}")
        if raw is not None and not decode_prekey(raw).last_resort:
            tx.delete(NAMESPACE, f"kem/{kem_id}")
            self._cache.pop(f"kem/{kem_id}", None)

    def purge(self, now: float) -> int:
        """Delete retired prekeys past their grace and one-time prekeys past their lifetime."""
        doomed = []
        for key in self._store.keys(NAMESPACE):
            raw = None if key.startswith(_META) else self._store.get(NAMESPACE, key)
            if raw is not None and _expired(decode_prekey(raw), now):
                doomed.append(key)
        with self._store.transaction() as tx:
            for key in doomed:
                tx.delete(NAMESPACE, key)
                self._cache.pop(key, None)
        return len(doomed)


def _expired(record: StoredPrekey, now: float) -> bool:
    if record.retired is not None:
        return now - record.retired > SIGNED_PREKEY_GRACE
    one_time = record.kind == "opk" or (record.kind == "kem" and not record.last_resort)
    return one_time and now - record.created > ONE_TIME_LIFETIME


def _evolve_retired(record: StoredPrekey, now: float) -> StoredPrekey:
    return attrs.evolve(record, retired=now)
