"""Where the MLS binding keeps its state in the agent's store (versioned blobs).

Namespaces, each keyed by the group id in hex (KeyPackages by their ref):

* ``mls.epoch`` - the epoch blob (:mod:`sealwire_mls.persistence`);
* ``mls.ratchets`` - the secret tree's ratchets, rewritten with every message;
* ``mls.cards`` - the members' signed cards (JSON, by agent id);
* ``mls.pending`` - a commit of ours offered to the relay and not yet known
  accepted or refused: the message and the epoch it leads to;
* ``mls.keypackages`` - private keys of KeyPackages published to the relay,
  deleted by the join that uses one.

A change of epoch writes the epoch, ratchets and cards in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sealwire.errors import StateError
from sealwire.store import StateStore, StoreTransaction
from sealwire_mls._members import Roster
from sealwire_mls.agents import AgentKeyPackage
from sealwire_mls.codec import Reader, Writer, decode_exact
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.errors import MLSDecodeError
from sealwire_mls.group import CommitApplied, Group
from sealwire_mls.keypackage import KeyPackage
from sealwire_mls.persistence import (
    STATE_VERSION,
    StateFormatError,
    dump_group,
    dump_pending,
    dump_ratchets,
    load_group,
)

__all__ = ["GroupStorage", "Keep"]

Keep = Callable[[StoreTransaction], None]
"""Written in the same transaction as the group's new state (the caller's own records)."""

NS_EPOCH = "mls.epoch"
NS_RATCHETS = "mls.ratchets"
NS_CARDS = "mls.cards"
NS_PENDING = "mls.pending"
NS_KEY_PACKAGES = "mls.keypackages"
MAX_REMEMBERED_GROUPS = 1024
"""Groups whose last written card set is remembered (forgetting only costs a rewrite)."""


class GroupStorage:
    """Reads and writes the binding's namespaces of one agent's store."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._written: dict[bytes, tuple[frozenset[str], frozenset[str], bool]] = {}

    def exists(self, group_id: bytes) -> bool:
        return self.store.get(NS_EPOCH, group_id.hex()) is not None

    def groups(self) -> list[bytes]:
        return [bytes.fromhex(k) for k in self.store.keys(NS_EPOCH)]

    def load(self, group_id: bytes, signature_priv: bytes) -> tuple[Roster, bytes | None] | None:
        """The group and, if one is stored, our pending commit message."""
        key = group_id.hex()
        epoch = self.store.get(NS_EPOCH, key)
        if epoch is None:
            return None
        pending_raw = self.store.get(NS_PENDING, key)
        pending = _decode_pending(pending_raw) if pending_raw is not None else None
        group = load_group(
            epoch, self.store.get(NS_RATCHETS, key), signature_priv=signature_priv,
            pending=(pending[1], pending[2]) if pending is not None else None,
        )  # fmt: skip
        cards = self.store.get(NS_CARDS, key)
        roster = Roster.from_json(group, cards) if cards is not None else Roster(group, {})
        return roster, (pending[0] if pending is not None else None)

    def save(
        self,
        group_id: bytes,
        roster: Roster,
        *,
        used_key_package: str | None = None,
        keep: Keep | None = None,
    ) -> None:
        """The group's new epoch, its cards, no pending commit (one transaction)."""
        key = group_id.hex()
        epoch, ratchets = dump_group(roster.group)
        # The cards (~1.2 KB per member) are rewritten only when they changed.
        marker = (frozenset(roster.cards), frozenset(roster.expected), roster.external_joins)
        cards = roster.to_json() if marker != self._written.get(group_id) else None
        with self.store.transaction() as tx:
            tx.put(NS_EPOCH, key, epoch)
            tx.put(NS_RATCHETS, key, ratchets)
            if cards is not None:
                tx.put(NS_CARDS, key, cards)
            tx.delete(NS_PENDING, key)
            if used_key_package is not None:
                tx.delete(NS_KEY_PACKAGES, used_key_package)
            if keep is not None:
                keep(tx)
        if len(self._written) >= MAX_REMEMBERED_GROUPS:
            self._written.clear()
        self._written[group_id] = marker

    def save_ratchets(self, group_id: bytes, group: Group, *, keep: Keep | None = None) -> None:
        ratchets = dump_ratchets(group)
        with self.store.transaction() as tx:
            tx.put(NS_RATCHETS, group_id.hex(), ratchets)
            if keep is not None:
                keep(tx)

    def save_pending(self, group_id: bytes, group: Group, message: bytes) -> None:
        staged = dump_pending(group)
        if staged is None:
            raise StateError("no staged commit to store")
        blob, event = staged
        w = Writer().uint16(STATE_VERSION).opaque(message).opaque(blob)
        w.uint32(event.committer).uint64(event.epoch)
        w.vector(event.added, lambda w2, i: w2.uint32(i))
        w.vector(event.removed, lambda w2, i: w2.uint32(i))
        self.store.put(NS_PENDING, group_id.hex(), w.getvalue())

    def drop_pending(self, group_id: bytes) -> None:
        self.store.delete(NS_PENDING, group_id.hex())

    # -- KeyPackages -----------------------------------------------------------------------

    def keep_key_package(self, keys: AgentKeyPackage) -> str:
        """Store a fresh KeyPackage's private keys; returns its ref (hex), its directory id."""
        suite = cipher_suite(keys.key_package.cipher_suite)
        ref = keys.key_package.ref(suite).hex()
        w = Writer().uint16(STATE_VERSION).opaque(keys.key_package.to_bytes())
        w.opaque(keys.init_priv).opaque(keys.encryption_priv)
        self.store.put(NS_KEY_PACKAGES, ref, w.getvalue())
        return ref

    def key_package_for(
        self, refs: Sequence[bytes], signature_priv: bytes
    ) -> tuple[str, AgentKeyPackage] | None:
        """The first of ``refs`` we hold the private keys of."""
        for ref in refs:
            raw = self.store.get(NS_KEY_PACKAGES, ref.hex())
            if raw is None:
                continue

            def read(r: Reader) -> AgentKeyPackage:
                if r.uint16("keypackage.version") != STATE_VERSION:
                    raise StateFormatError("unknown KeyPackage record", field="keypackage")
                kp = decode_exact(r.opaque("keypackage"), KeyPackage.decode, "KeyPackage")
                return AgentKeyPackage(
                    key_package=kp, init_priv=r.opaque("init_priv"),
                    encryption_priv=r.opaque("encryption_priv"), signature_priv=signature_priv,
                )  # fmt: skip

            return ref.hex(), decode_exact(raw, read, "keypackage")
        return None


def _decode_pending(raw: bytes) -> tuple[bytes, bytes, CommitApplied]:
    def read(r: Reader) -> tuple[bytes, bytes, CommitApplied]:
        if r.uint16("pending.version") != STATE_VERSION:
            raise StateFormatError("unknown pending commit record", field="pending")
        message, blob = r.opaque("pending.message"), r.opaque("pending.epoch")
        committer, epoch = r.uint32("pending.committer"), r.uint64("pending.new_epoch")
        added = tuple(r.vector(lambda r2: r2.uint32("added"), "pending.added"))
        removed = tuple(r.vector(lambda r2: r2.uint32("removed"), "pending.removed"))
        event = CommitApplied(committer=committer, epoch=epoch, added=added, removed=removed)
        return message, blob, event

    try:
        return decode_exact(raw, read, "pending")
    except MLSDecodeError as exc:
        raise StateFormatError(f"corrupt pending commit: {exc}", field="pending") from None
