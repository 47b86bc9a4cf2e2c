"""The secret tree and its hash ratchets (RFC 9420 §9), plus sender-data keys (§6.3.2).

Rules of this module:

* Secrets are derived lazily from the root ``encryption_secret`` and a node's
  secret is deleted as soon as both children are derived (§9.2).
* Each leaf has a handshake and an application ratchet. A receiver may skip
  ahead at most :data:`MAX_FORWARD_GENERATIONS` and keeps at most
  :data:`MAX_RETAINED_KEYS` skipped keys per ratchet; a key is deleted once
  used, so a replayed generation fails (forward secrecy, §9.2).
* Lookups are staged: :meth:`SecretTree.stage_receive` computes a key without
  touching the tree and :meth:`SecretTree.commit` applies it, so a message
  that fails to decrypt leaves the tree unchanged.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator

from attrs import field, frozen

from sealwire_mls import tree_math
from sealwire_mls.crypto import CipherSuite
from sealwire_mls.errors import MLSLocalError, MLSProtocolError

__all__ = [
    "MAX_FORWARD_GENERATIONS",
    "MAX_RETAINED_KEYS",
    "RatchetType",
    "SecretTree",
    "StagedKey",
    "sender_data_key_nonce",
]

#: How far past the next expected generation a received message may be. Each
#: skipped generation costs three KDF calls, so this bounds the work one
#: hostile message can cause (and matches common out-of-order tolerances).
MAX_FORWARD_GENERATIONS = 1024
#: Skipped keys kept per ratchet for late messages; older ones are evicted
#: first. Bounds memory per sender while tolerating moderate reordering.
MAX_RETAINED_KEYS = 128
#: Generations are uint32 on the wire (§6.3.2).
_MAX_GENERATION = 0xFFFF_FFFF


class RatchetType(enum.Enum):
    """Which of a leaf's two ratchets (§9.1)."""

    HANDSHAKE = b"handshake"
    APPLICATION = b"application"


@frozen
class _Ratchet:
    """One hash ratchet: the next generation, its secret and retained skipped keys."""

    generation: int
    secret: bytes = field(repr=False)
    skipped: tuple[tuple[int, bytes, bytes], ...] = field(default=(), repr=False)


_LeafRatchet = tuple[int, RatchetType, _Ratchet]


@frozen(kw_only=True)
class StagedKey:
    """A derived key and nonce plus the tree changes that :meth:`SecretTree.commit` applies."""

    leaf: int
    ratchet_type: RatchetType
    generation: int
    key: bytes = field(repr=False)
    nonce: bytes = field(repr=False)
    _removed_nodes: tuple[int, ...] = field(repr=False)
    _added_nodes: tuple[tuple[int, bytes], ...] = field(repr=False)
    _ratchets: tuple[_LeafRatchet, ...] = field(repr=False)


class SecretTree:
    """The §9 secret tree of one epoch (mutable; changes are staged then committed)."""

    __slots__ = ("_changed_leaves", "_n_leaves", "_nodes", "_nodes_changed", "_ratchets", "_suite")

    def __init__(self, suite: CipherSuite, encryption_secret: bytes, n_leaves: int) -> None:
        if n_leaves < 1:
            raise MLSLocalError("a secret tree has at least one leaf")
        self._suite = suite
        self._n_leaves = n_leaves
        self._nodes: dict[int, bytes] = {tree_math.root(n_leaves): encryption_secret}
        self._ratchets: dict[tuple[int, RatchetType], _Ratchet] = {}
        # What changed since the state was last stored (see unsaved / saved).
        self._nodes_changed = True
        self._changed_leaves: set[int] = set()

    def __repr__(self) -> str:
        return f"SecretTree(n_leaves={self._n_leaves}, <secrets redacted>)"

    @property
    def n_leaves(self) -> int:
        """The number of leaves the tree was built for."""
        return self._n_leaves

    # -- derivation --------------------------------------------------------

    def _leaf_secret(self, leaf: int) -> tuple[bytes, list[int], list[tuple[int, bytes]]]:
        """The leaf's node secret, with the node removals/additions deriving it implies."""
        target = tree_math.leaf_to_node(leaf)
        path = list(self._path_to(target))
        for i in range(len(path) - 1, -1, -1):
            if path[i] in self._nodes:
                start = i
                break
        else:
            raise MLSProtocolError("leaf secret already consumed")
        secret = self._nodes[path[start]]
        removed, added = [path[start]], []
        for node, child in zip(path[start:], path[start + 1 :], strict=False):
            left, right = tree_math.left(node), tree_math.right(node)
            ls = self._suite.expand_with_label(secret, b"tree", b"left", self._suite.Nh)
            rs = self._suite.expand_with_label(secret, b"tree", b"right", self._suite.Nh)
            secret, other = (ls, (right, rs)) if child == left else (rs, (left, ls))
            added.append(other)
        return secret, removed, added

    def _path_to(self, target: int) -> Iterator[int]:
        node = tree_math.root(self._n_leaves)
        yield node
        while node != target:
            node = tree_math.left(node) if target < node else tree_math.right(node)
            yield node

    def _ratchet_key(self, secret: bytes, generation: int) -> tuple[bytes, bytes, bytes]:
        """(key, nonce, next secret) for one ratchet step (§9.1)."""
        s = self._suite
        key = s.derive_tree_secret(secret, b"key", generation, s.Nk)
        nonce = s.derive_tree_secret(secret, b"nonce", generation, s.Nn)
        return key, nonce, s.derive_tree_secret(secret, b"secret", generation, s.Nh)

    def _current(
        self, leaf: int, rtype: RatchetType
    ) -> tuple[
        _Ratchet, list[int], list[tuple[int, bytes]], list[tuple[int, RatchetType, _Ratchet]]
    ]:
        """The ratchet for (leaf, type), initializing both of the leaf's ratchets if needed."""
        if not 0 <= leaf < self._n_leaves:
            raise MLSProtocolError(f"leaf {leaf} outside the tree")
        existing = self._ratchets.get((leaf, rtype))
        if existing is not None:
            return existing, [], [], []
        leaf_secret, removed, added = self._leaf_secret(leaf)
        fresh = []
        for kind in RatchetType:
            secret = self._suite.expand_with_label(leaf_secret, kind.value, b"", self._suite.Nh)
            fresh.append((leaf, kind, _Ratchet(0, secret)))
        ratchet = next(r for (_, k, r) in fresh if k is rtype)
        return ratchet, removed, added, fresh

    # -- staged lookups ------------------------------------------------------

    def stage_receive(self, leaf: int, rtype: RatchetType, generation: int) -> StagedKey:
        """Key and nonce for a received (leaf, type, generation); the tree is untouched."""
        if not 0 <= generation <= _MAX_GENERATION:
            raise MLSProtocolError("generation out of range")
        ratchet, removed, added, fresh = self._current(leaf, rtype)
        if generation < ratchet.generation:
            for gen, key, nonce in ratchet.skipped:
                if gen == generation:
                    kept = tuple(e for e in ratchet.skipped if e[0] != generation)
                    new = _Ratchet(ratchet.generation, ratchet.secret, kept)
                    return self._staged(leaf, rtype, gen, key, nonce, removed, added, fresh, new)
            raise MLSProtocolError("generation already used or too old")
        if generation - ratchet.generation > MAX_FORWARD_GENERATIONS:
            raise MLSProtocolError("generation too far ahead")
        skipped = list(ratchet.skipped)
        secret = ratchet.secret
        for gen in range(ratchet.generation, generation):
            key, nonce, secret = self._ratchet_key(secret, gen)
            skipped.append((gen, key, nonce))
        key, nonce, secret = self._ratchet_key(secret, generation)
        new = _Ratchet(generation + 1, secret, tuple(skipped[-MAX_RETAINED_KEYS:]))
        return self._staged(leaf, rtype, generation, key, nonce, removed, added, fresh, new)

    def stage_send(self, leaf: int, rtype: RatchetType) -> StagedKey:
        """Key and nonce for our next message from ``leaf``; commit it before sending."""
        ratchet, removed, added, fresh = self._current(leaf, rtype)
        if ratchet.generation > _MAX_GENERATION:
            raise MLSLocalError("ratchet exhausted")
        key, nonce, secret = self._ratchet_key(ratchet.secret, ratchet.generation)
        new = _Ratchet(ratchet.generation + 1, secret, ratchet.skipped)
        return self._staged(leaf, rtype, ratchet.generation, key, nonce, removed, added, fresh, new)

    @staticmethod
    def _staged(
        leaf: int,
        rtype: RatchetType,
        generation: int,
        key: bytes,
        nonce: bytes,
        removed: list[int],
        added: list[tuple[int, bytes]],
        fresh: list[_LeafRatchet],
        new: _Ratchet,
    ) -> StagedKey:
        ratchets = [r for r in fresh if r[1] is not rtype] + [(leaf, rtype, new)]
        return StagedKey(
            leaf=leaf,
            ratchet_type=rtype,
            generation=generation,
            key=key,
            nonce=nonce,
            removed_nodes=tuple(removed),
            added_nodes=tuple(added),
            ratchets=tuple(ratchets),
        )

    def commit(self, staged: StagedKey) -> None:
        """Apply a staged lookup: the used key and consumed node secrets are deleted."""
        if staged._removed_nodes or staged._added_nodes:
            self._nodes_changed = True
        for node in staged._removed_nodes:
            self._nodes.pop(node, None)
        self._nodes.update(staged._added_nodes)
        for leaf, rtype, ratchet in staged._ratchets:
            self._ratchets[(leaf, rtype)] = ratchet
            self._changed_leaves.add(leaf)

    # -- what to store -------------------------------------------------------

    def unsaved(self) -> tuple[bool, frozenset[int]]:
        """Whether the node secrets changed, and the leaves whose ratchets did, since
        :meth:`saved` (a new tree: its nodes, and no leaf yet)."""
        return self._nodes_changed, frozenset(self._changed_leaves)

    def saved(self, nodes: bool, leaves: Iterable[int]) -> None:
        """The node secrets (when ``nodes``) and ``leaves``' ratchets are stored as they are."""
        if nodes:
            self._nodes_changed = False
        self._changed_leaves.difference_update(leaves)

    def key_nonce(self, leaf: int, rtype: RatchetType, generation: int) -> tuple[bytes, bytes]:
        """Receive-side lookup committed at once: (key, nonce) for ``generation``."""
        staged = self.stage_receive(leaf, rtype, generation)
        self.commit(staged)
        return staged.key, staged.nonce


def sender_data_key_nonce(
    suite: CipherSuite, sender_data_secret: bytes, ciphertext: bytes
) -> tuple[bytes, bytes]:
    """sender_data_key and sender_data_nonce (§6.3.2), sampled from the ciphertext.

    ``ciphertext_sample = ciphertext[0..KDF.Nh-1]`` (the whole ciphertext if shorter).
    """
    sample = ciphertext[: suite.Nh]
    key = suite.expand_with_label(sender_data_secret, b"key", sample, suite.Nk)
    nonce = suite.expand_with_label(sender_data_secret, b"nonce", sample, suite.Nn)
    return key, nonce
