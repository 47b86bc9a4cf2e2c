"""Persisted form of one member's :class:`~sealwire_mls.group.Group` (versioned).

The engine keeps no state of its own on disk; the group binding stores a
group in two parts so that the common case stays cheap:

* the *epoch* blob (GroupContext, ratchet tree, TreeKEM private keys, epoch
  secrets, transcript hashes, resumption PSKs) changes only with a commit;
* the §9 secret tree changes with every message sent or received: its remaining
  node secrets are one *ratchets* blob, written again when they change (a sender's
  first message of the epoch), and each leaf's hash ratchets are a record of their
  own (*LeafRatchets*), so that a message writes its sender's record alone.

Both start with :data:`STATE_VERSION`; a blob of an unknown version is refused
(:class:`StateFormatError`) rather than guessed at. The signature key is not
stored: it is the agent's identity key, supplied again on load.

This is the engine's persistence API: the one module that reads and
restores a group's internal state (its epoch, the secret tree's node and
ratchet maps, a staged commit).

Layouts (TLS presentation language, :mod:`sealwire_mls.codec`)::

    struct { uint32 node; opaque key<V>; } NodeKey;
    struct {
        uint16 version; uint16 cipher_suite; uint8 active;
        opaque group_context<V>; opaque ratchet_tree<V>;
        uint32 leaf_index; NodeKey private_keys<V>;
        opaque epoch_secrets<V>[12];   /* EpochSecrets fields, in order */
        opaque interim_transcript_hash<V>; opaque confirmation_tag<V>;
        Resumption resumption<V>;      /* opaque group_id<V>; uint64 epoch; opaque psk<V> */
    } EpochBlob;
    struct { uint32 generation; opaque key<V>; opaque nonce<V>; } SkippedKey;
    struct {
        uint32 leaf; uint8 ratchet_type; uint32 generation; opaque secret<V>;
        SkippedKey skipped<V>;
    } RatchetState;
    struct {
        uint16 version; uint64 epoch;
        NodeKey nodes<V>; RatchetState ratchets<V>;
    } RatchetsBlob;                    /* ratchets empty when the leaves have records */
    struct { uint16 version; uint64 epoch; RatchetState ratchets<V>; } LeafRatchets;
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from sealwire.errors import SealwireError
from sealwire_mls.codec import Reader, Writer, decode_exact
from sealwire_mls.crypto import CipherSuite, cipher_suite
from sealwire_mls.errors import MLSDecodeError
from sealwire_mls.group import CommitApplied, Group
from sealwire_mls.group_state import EpochState
from sealwire_mls.schedule import EpochSecrets, GroupContext
from sealwire_mls.secret_tree import RatchetType, SecretTree, _Ratchet
from sealwire_mls.tree import RatchetTree
from sealwire_mls.treekem import TreeKEMPrivate

__all__ = [
    "STATE_VERSION",
    "SecretTreeRecords",
    "StateFormatError",
    "decode_epoch",
    "dump_epoch",
    "dump_group",
    "dump_secret_tree",
    "encode_epoch",
    "load_group",
    "secret_tree_stored",
]

STATE_VERSION = 1
"""Format of both blobs; bump it and add a migration when a layout changes."""

_SECRET_FIELDS = tuple(f.name for f in attrs.fields(EpochSecrets))
_RATCHET_TYPES = {RatchetType.HANDSHAKE: 0, RatchetType.APPLICATION: 1}
_RATCHET_BY_CODE = {v: k for k, v in _RATCHET_TYPES.items()}


class StateFormatError(MLSDecodeError):
    """A stored group state is corrupt or of a format this version cannot read."""

    code = "mls.state_format"


def _check_version(r: Reader) -> None:
    version = r.uint16("state.version")
    if version != STATE_VERSION:
        raise StateFormatError(f"unknown group state version {version}", field="state.version")


def _node_keys(w: Writer, keys: dict[int, bytes]) -> None:
    w.vector(sorted(keys.items()), lambda w2, kv: w2.uint32(kv[0]).opaque(kv[1]))


def _read_node_keys(r: Reader, field: str) -> dict[int, bytes]:
    return dict(r.vector(lambda r2: (r2.uint32(field), r2.opaque(field)), field))


# -- the epoch blob ------------------------------------------------------------------------


def encode_epoch(
    suite: CipherSuite,
    epoch: EpochState,
    resumption: dict[tuple[bytes, int], bytes],
    *,
    active: bool,
) -> bytes:
    """The EpochBlob of ``epoch`` (everything but the secret tree)."""
    w = Writer().uint16(STATE_VERSION).uint16(suite.id).uint8(1 if active else 0)
    w.opaque(epoch.context.to_bytes()).opaque(epoch.tree.to_bytes())
    w.uint32(epoch.private.leaf_index)
    _node_keys(w, dict(epoch.private.keys))
    for name in _SECRET_FIELDS:
        w.opaque(getattr(epoch.secrets, name))
    w.opaque(epoch.interim).opaque(epoch.confirmation_tag)
    w.vector(
        list(resumption.items()),
        lambda w2, kv: w2.opaque(kv[0][0]).uint64(kv[0][1]).opaque(kv[1]),
    )
    return w.getvalue()


def decode_epoch(
    data: bytes, secret_tree: SecretTree | None = None
) -> tuple[CipherSuite, EpochState, dict[tuple[bytes, int], bytes], bool]:
    """(suite, epoch state, resumption PSKs, active) from an EpochBlob.

    Without ``secret_tree`` the epoch gets a fresh one (as just after the commit).
    """

    def read(r: Reader) -> tuple[CipherSuite, EpochState, dict[tuple[bytes, int], bytes], bool]:
        _check_version(r)
        suite = cipher_suite(r.uint16("state.cipher_suite"))
        active = r.uint8("state.active") == 1
        context = GroupContext.from_bytes(r.opaque("state.group_context"))
        tree = RatchetTree.decode(suite, r.opaque("state.ratchet_tree"))
        private = TreeKEMPrivate(r.uint32("state.leaf_index"), _read_node_keys(r, "state.keys"))
        secrets = EpochSecrets(**{name: r.opaque("state.secrets") for name in _SECRET_FIELDS})
        interim, tag = r.opaque("state.interim"), r.opaque("state.confirmation_tag")
        resumption = dict(
            r.vector(
                lambda r2: ((r2.opaque("psk.group_id"), r2.uint64("psk.epoch")), r2.opaque("psk")),
                "state.resumption",
            )
        )
        tree_of_secrets = secret_tree or SecretTree(suite, secrets.encryption_secret, tree.n_leaves)
        epoch = EpochState(
            context=context, tree=tree, private=private, secrets=secrets, interim=interim,
            secret_tree=tree_of_secrets, confirmation_tag=tag,
        )  # fmt: skip
        return suite, epoch, resumption, active

    decoded: tuple[CipherSuite, EpochState, dict[tuple[bytes, int], bytes], bool]
    decoded = _exact(data, read, "EpochBlob")
    return decoded


def _exact(data: bytes, read: Any, field: str) -> Any:
    try:
        return decode_exact(data, read, field)
    except StateFormatError:
        raise
    except SealwireError as exc:  # a field that decodes but is not valid (a suite, a tree)
        raise StateFormatError(f"corrupt group state: {type(exc).__name__}", field=field) from None
    except (ValueError, KeyError, TypeError, IndexError):
        raise StateFormatError("corrupt group state", field=field) from None


# -- the secret tree ------------------------------------------------------------------------


@attrs.frozen
class SecretTreeRecords:
    """What to store of a group's secret tree (:func:`dump_secret_tree`)."""

    nodes: bytes | None = attrs.field(repr=False)
    """The RatchetsBlob of its node secrets alone (no ratchets); None: unchanged."""
    leaves: Mapping[int, bytes] = attrs.field(repr=False)
    """Each leaf's LeafRatchets blob, for the leaves whose ratchets changed."""


def dump_secret_tree(group: Group, *, whole: bool = False) -> SecretTreeRecords:
    """The records of ``group``'s secret tree that changed since they were last stored
    (:func:`secret_tree_stored`), or all of them when ``whole``.

    A message changes one sender's ratchets: its record alone is written again, not
    every ratchet of the epoch (once N members have sent, that would be O(N) bytes and
    work for each message, O(N^2) for a round of them).
    """
    tree = group._epoch.secret_tree
    nodes_changed, leaves = tree.unsaved()
    if whole:
        nodes_changed, leaves = True, frozenset(leaf for leaf, _ in tree._ratchets)
    nodes = _dump_ratchets(group.epoch, tree, ratchets=False) if nodes_changed else None
    records = {}
    for leaf in leaves:  # the leaves' own ratchets, not a walk over every leaf's
        items = [
            ((leaf, kind), state)
            for kind in RatchetType
            if (state := tree._ratchets.get((leaf, kind))) is not None
        ]
        records[leaf] = _dump_leaf(group.epoch, items)
    return SecretTreeRecords(nodes=nodes, leaves=records)


def secret_tree_stored(group: Group, records: SecretTreeRecords) -> None:
    """``records`` (of :func:`dump_secret_tree`) are committed to the store."""
    group._epoch.secret_tree.saved(records.nodes is not None, records.leaves)


def _ratchet_state(w: Writer, item: tuple[tuple[int, RatchetType], _Ratchet]) -> None:
    (leaf, kind), state = item
    w.uint32(leaf).uint8(_RATCHET_TYPES[kind]).uint32(state.generation).opaque(state.secret)
    w.vector(state.skipped, lambda w2, s: w2.uint32(s[0]).opaque(s[1]).opaque(s[2]))


def _read_ratchet_state(r: Reader) -> tuple[tuple[int, RatchetType], _Ratchet]:
    leaf, kind = r.uint32("ratchet.leaf"), _RATCHET_BY_CODE[r.uint8("ratchet.type")]
    generation, secret = r.uint32("ratchet.generation"), r.opaque("ratchet.secret")
    skipped = r.vector(
        lambda r2: (r2.uint32("skipped"), r2.opaque("skipped"), r2.opaque("skipped")),
        "ratchet.skipped",
    )
    return (leaf, kind), _Ratchet(generation, secret, tuple(skipped))


def _by_leaf(item: tuple[tuple[int, RatchetType], _Ratchet]) -> tuple[int, bytes]:
    return item[0][0], item[0][1].value


def _dump_ratchets(epoch: int, tree: SecretTree, *, ratchets: bool = True) -> bytes:
    w = Writer().uint16(STATE_VERSION).uint64(epoch)
    _node_keys(w, tree._nodes)
    w.vector(sorted(tree._ratchets.items(), key=_by_leaf) if ratchets else (), _ratchet_state)
    return w.getvalue()


def _dump_leaf(epoch: int, items: list[tuple[tuple[int, RatchetType], _Ratchet]]) -> bytes:
    w = Writer().uint16(STATE_VERSION).uint64(epoch)
    w.vector(sorted(items, key=_by_leaf), _ratchet_state)
    return w.getvalue()


def _load_ratchets(
    data: bytes, leaves: Iterable[bytes], suite: CipherSuite, n_leaves: int
) -> tuple[int, SecretTree]:
    def read(r: Reader) -> tuple[int, SecretTree]:
        _check_version(r)
        epoch = r.uint64("ratchets.epoch")
        tree = SecretTree(suite, b"", n_leaves)
        tree._nodes = _read_node_keys(r, "ratchets.nodes")
        tree._ratchets = dict(r.vector(_read_ratchet_state, "ratchets.ratchets"))
        return epoch, tree

    def read_leaf(r: Reader) -> tuple[int, list[tuple[tuple[int, RatchetType], _Ratchet]]]:
        _check_version(r)
        return r.uint64("ratchets.epoch"), r.vector(_read_ratchet_state, "ratchets.leaf")

    epoch, tree = _exact(data, read, "RatchetsBlob")
    if tree._ratchets:
        # Ratchets inside the RatchetsBlob (a whole group dumped, or a store from before
        # leaves had records): the next store writes them as their leaves' records, and
        # the blob again without them, so that no older ratchet secret is left in it.
        tree._changed_leaves.update(leaf for leaf, _ in tree._ratchets)
    else:
        tree.saved(True, ())
    for blob in leaves:
        leaf_epoch, items = _exact(blob, read_leaf, "LeafRatchets")
        if leaf_epoch != epoch:
            raise StateFormatError("ratchets of another epoch", field="ratchets.epoch")
        tree._ratchets.update(items)
    return epoch, tree


# -- a whole group -------------------------------------------------------------------------


def dump_group(group: Group) -> tuple[bytes, bytes]:
    """(EpochBlob, RatchetsBlob) of ``group``'s current epoch, its ratchets in the latter."""
    return dump_epoch(group), _dump_ratchets(group.epoch, group._epoch.secret_tree)


def dump_epoch(group: Group) -> bytes:
    """The EpochBlob of ``group``'s current epoch."""
    epoch: EpochState = group._epoch
    return encode_epoch(group._suite, epoch, dict(group._resumption), active=group.active)


def dump_pending(group: Group) -> tuple[bytes, CommitApplied] | None:
    """The EpochBlob of the commit ``group`` staged, if any (its ratchets start fresh),
    and what merging it will report."""
    pending: tuple[EpochState, CommitApplied] | None = group._pending
    if pending is None:
        return None
    blob = encode_epoch(group._suite, pending[0], dict(group._resumption), active=True)
    return blob, pending[1]


def load_group(
    epoch_blob: bytes,
    ratchets_blob: bytes | None,
    *,
    signature_priv: bytes,
    leaf_ratchets: Iterable[bytes] = (),
    pending: tuple[bytes, CommitApplied] | None = None,
) -> Group:
    """The group stored by :func:`dump_group`, or by :func:`dump_epoch` and
    :func:`dump_secret_tree` (``ratchets_blob`` its nodes, ``leaf_ratchets`` its leaves'
    records), and a staged commit, if one was stored."""
    suite, epoch, resumption, active = decode_epoch(epoch_blob)
    if ratchets_blob is not None:
        ratchet_epoch, tree = _load_ratchets(
            ratchets_blob, leaf_ratchets, suite, epoch.tree.n_leaves
        )
        if ratchet_epoch != epoch.context.epoch:
            raise StateFormatError("ratchets of another epoch", field="ratchets.epoch")
        epoch = attrs.evolve(epoch, secret_tree=tree)
    group = Group(suite, epoch, signature_priv, {}, resumption)
    if not active:
        group._mark_removed()
    if pending is not None:
        blob, event = pending
        _, staged, _, _ = decode_epoch(blob)
        group._pending = (staged, event)
    return group
