"""Where the MLS binding keeps its state in the agent's store (versioned blobs).

Namespaces, each keyed by the group id in hex (KeyPackages by their ref):

* ``mls.epoch`` - the epoch blob (:mod:`sealwire_mls.persistence`);
* ``mls.ratchets`` - the secret tree: its node secrets under the group id, and each
  leaf's hash ratchets under ``<group>/<leaf index>`` (a message writes its sender's);
* ``mls.cards`` - each member's signed card (JSON), keyed ``<group>/<agent id>``:
  a membership change writes the cards that came and deletes those that went;
* ``mls.roster`` - the group's policy and the cards of agents expected to join;
* ``mls.pending`` - a commit of ours offered to the relay and not yet known
  accepted or refused: the message and the epoch it leads to;
* ``mls.keypackages`` - private keys of KeyPackages published to the relay,
  deleted by the join that uses one.

A change of epoch writes the epoch, ratchets, cards and roster in one transaction.
"""

from __future__ import annotations

import json
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
    SecretTreeRecords,
    StateFormatError,
    dump_epoch,
    dump_pending,
    dump_secret_tree,
    load_group,
    secret_tree_stored,
)

__all__ = ["GroupStorage", "Keep"]

Keep = Callable[[StoreTransaction], None]
"""Written in the same transaction as the group's new state (the caller's own records)."""

NS_EPOCH = "mls.epoch"
NS_RATCHETS = "mls.ratchets"
NS_CARDS = "mls.cards"
NS_ROSTER = "mls.roster"
NS_PENDING = "mls.pending"
NS_KEY_PACKAGES = "mls.keypackages"
MAX_REMEMBERED_GROUPS = 1024
"""Groups whose stored card set is remembered (forgetting one costs a key listing)."""


class GroupStorage:
    """Reads and writes the binding's namespaces of one agent's store."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._written: dict[bytes, tuple[frozenset[str], bytes]] = {}  # (card ids, roster)

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
        leaves = [self.store.get(NS_RATCHETS, k) for k in self.store.keys(NS_RATCHETS, f"{key}/")]
        group = load_group(
            epoch, self.store.get(NS_RATCHETS, key), signature_priv=signature_priv,
            leaf_ratchets=[blob for blob in leaves if blob is not None],
            pending=(pending[1], pending[2]) if pending is not None else None,
        )  # fmt: skip
        cards = {}
        for card_key in self.store.keys(NS_CARDS, f"{key}/"):
            raw = self.store.get(NS_CARDS, card_key)
            try:
                cards[card_key.split("/", 1)[1]] = json.loads(raw or b"")
            except (ValueError, UnicodeDecodeError):
                raise StateFormatError("corrupt member card", field="mls.cards") from None
        roster = Roster.from_stored(group, cards, self.store.get(NS_ROSTER, key))
        self._remember(group_id, (frozenset(cards), roster.policy_json()))
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
        epoch = dump_epoch(roster.group)
        tree = dump_secret_tree(roster.group, whole=True)
        # Cards (~1.2 KB per member) are written when they come and deleted when they go.
        stored, stored_policy = self._written.get(group_id) or (
            frozenset(k.split("/", 1)[1] for k in self.store.keys(NS_CARDS, f"{key}/")),
            b"",
        )
        policy = roster.policy_json()
        with self.store.transaction() as tx:
            tx.put(NS_EPOCH, key, epoch)
            # The records of the leaves of the epoch left behind go (forward secrecy).
            for stale in set(tx.keys(NS_RATCHETS, f"{key}/")) - _leaf_keys(key, tree):
                tx.delete(NS_RATCHETS, stale)
            _put_tree(tx, key, tree)
            for agent_id in (set(roster.cards) - stored) | (roster.changed & set(roster.cards)):
                tx.put(NS_CARDS, f"{key}/{agent_id}", json.dumps(roster.cards[agent_id]).encode())
            for agent_id in stored - set(roster.cards):
                tx.delete(NS_CARDS, f"{key}/{agent_id}")
            if policy != stored_policy:
                tx.put(NS_ROSTER, key, policy)
            tx.delete(NS_PENDING, key)
            if used_key_package is not None:
                tx.delete(NS_KEY_PACKAGES, used_key_package)
            if keep is not None:
                keep(tx)
        secret_tree_stored(roster.group, tree)
        roster.changed.clear()
        self._remember(group_id, (frozenset(roster.cards), policy))

    def _remember(self, group_id: bytes, written: tuple[frozenset[str], bytes]) -> None:
        if len(self._written) >= MAX_REMEMBERED_GROUPS:
            self._written.clear()
        self._written[group_id] = written

    def save_ratchets(self, group_id: bytes, group: Group, *, keep: Keep | None = None) -> None:
        """What a message changed in the group's secret tree (with ``keep``, one transaction)."""
        tree = dump_secret_tree(group)
        with self.store.transaction() as tx:
            _put_tree(tx, group_id.hex(), tree)
            if keep is not None:
                keep(tx)
        secret_tree_stored(group, tree)

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


def _leaf_keys(key: str, tree: SecretTreeRecords) -> set[str]:
    return {f"{key}/{leaf}" for leaf in tree.leaves}


def _put_tree(tx: StoreTransaction, key: str, tree: SecretTreeRecords) -> None:
    if tree.nodes is not None:
        tx.put(NS_RATCHETS, key, tree.nodes)
    for leaf, blob in tree.leaves.items():
        tx.put(NS_RATCHETS, f"{key}/{leaf}", blob)


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
