"""TreeKEM: UpdatePaths, path secrets and the commit secret (RFC 9420 §7.4-7.6).

Both directions work on a *staged* :class:`~sealwire_mls.tree.RatchetTree`
(the tree after the Commit's proposals, a copy the caller may discard): they
merge the path into it and return the commit secret and the member's new
private state. ``group_context`` maps the new root tree hash to the encoded
provisional GroupContext used as HPKE context ("UpdatePathNode", §7.6).
Randomness is passed in as ``rng(n) -> bytes``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs
from attrs import field, frozen

from sealwire_mls import tree_math as tm
from sealwire_mls.codec import Reader, Writer
from sealwire_mls.crypto import CipherSuite
from sealwire_mls.errors import MLSLocalError, MLSProtocolError
from sealwire_mls.keypackage import LeafNode, LeafNodeSource, validate_leaf_node
from sealwire_mls.tree import ParentNode, RatchetTree

__all__ = [
    "HPKECiphertext",
    "PathResult",
    "TreeKEMPrivate",
    "UpdatePath",
    "UpdatePathNode",
    "create_update_path",
    "derive_path_keys",
    "joiner_private",
    "path_secret_for_joiner",
    "merge_update_path",
    "process_update_path",
]

GroupContextFor = Callable[[bytes], bytes]
_LABEL = b"UpdatePathNode"


@frozen
class HPKECiphertext:
    """``struct { opaque kem_output<V>; opaque ciphertext<V>; } HPKECiphertext;`` (§7.6)."""

    kem_output: bytes
    ciphertext: bytes

    def encode(self, w: Writer) -> None:
        """Write the ``HPKECiphertext`` struct."""
        w.opaque(self.kem_output).opaque(self.ciphertext)

    @classmethod
    def decode(cls, r: Reader) -> HPKECiphertext:
        """Read an ``HPKECiphertext`` struct."""
        return cls(r.opaque("kem_output"), r.opaque("ciphertext"))


@frozen
class UpdatePathNode:
    """One filtered-direct-path node of an UpdatePath (§7.6)."""

    encryption_key: bytes
    encrypted_path_secret: tuple[HPKECiphertext, ...]

    # struct {
    #     HPKEPublicKey encryption_key;
    #     HPKECiphertext encrypted_path_secret<V>;
    # } UpdatePathNode;
    def encode(self, w: Writer) -> None:
        """Write the ``UpdatePathNode`` struct."""
        w.opaque(self.encryption_key)
        w.vector(self.encrypted_path_secret, lambda w2, c: c.encode(w2))

    @classmethod
    def decode(cls, r: Reader) -> UpdatePathNode:
        """Read an ``UpdatePathNode`` struct."""
        key = r.opaque("encryption_key")
        return cls(key, tuple(r.vector(HPKECiphertext.decode, "encrypted_path_secret")))


@frozen
class UpdatePath:
    """The sender's new leaf and filtered-direct-path nodes (§7.6)."""

    leaf_node: LeafNode
    nodes: tuple[UpdatePathNode, ...]

    # struct {
    #     LeafNode leaf_node;
    #     UpdatePathNode nodes<V>;
    # } UpdatePath;
    def encode(self, w: Writer) -> None:
        """Write the ``UpdatePath`` struct."""
        self.leaf_node.encode(w)
        w.vector(self.nodes, lambda w2, n: n.encode(w2))

    @classmethod
    def decode(cls, r: Reader) -> UpdatePath:
        """Read an ``UpdatePath`` struct."""
        leaf = LeafNode.decode(r)
        return cls(leaf, tuple(r.vector(UpdatePathNode.decode, "nodes")))


@frozen
class TreeKEMPrivate:
    """A member's private TreeKEM state: its leaf and the HPKE private keys it holds.

    ``keys`` maps node index to the serialized HPKE private key (leaf
    included); it is never shown in ``repr``.
    """

    leaf_index: int
    keys: Mapping[int, bytes] = field(repr=False, factory=dict)

    def key(self, x: int) -> bytes | None:
        """The private key of node ``x``, if held."""
        return self.keys.get(x)

    def with_keys(self, drop: set[int], add: Mapping[int, bytes]) -> TreeKEMPrivate:
        """A new state without the nodes in ``drop`` and with ``add``."""
        keys = {x: k for x, k in self.keys.items() if x not in drop}
        keys.update(add)
        return attrs.evolve(self, keys=keys)

    def consistent_with(self, cs: CipherSuite, tree: RatchetTree) -> bool:
        """Whether every held key's public half is the tree's key at that node."""
        for x, priv in self.keys.items():
            node = tree.node(x) if x < tree.width else None
            if node is None or node.encryption_key != cs.hpke_public_key(priv):
                return False
        return True


@frozen
class PathResult:
    """What creating or processing an UpdatePath yields.

    ``commit_secret`` feeds the key schedule (§8); ``path_secret`` is the
    secret the receiver decrypted (the sender's first one when creating),
    which the Welcome forwards to joiners (§12.4.3.1); ``private`` is the
    member's new private state.
    """

    commit_secret: bytes = field(repr=False)
    path_secret: bytes = field(repr=False)
    private: TreeKEMPrivate


def _node_key_pair(cs: CipherSuite, path_secret: bytes) -> tuple[bytes, bytes]:
    # node_secret[n] = DeriveSecret(path_secret[n], "node"); KEM.DeriveKeyPair (§7.4)
    return cs.derive_key_pair(cs.derive_secret(path_secret, b"node"))


def derive_path_keys(
    cs: CipherSuite, path_secret: bytes, count: int
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """``count`` (private, public) node key pairs from ``path_secret`` (§7.4), then the
    commit secret: ``path_secret[n] = DeriveSecret(path_secret[n-1], "path")``."""
    pairs = []
    secret = path_secret
    for _ in range(count):
        pairs.append(_node_key_pair(cs, secret))
        secret = cs.derive_secret(secret, b"path")
    return pairs, secret


def _put_path(tree: RatchetTree, sender: int, publics: list[bytes]) -> bytes:
    """Blank sender's direct path, set the filtered path keys, return leaf parent hash."""
    fdp = tree.filtered_direct_path(sender)
    tree.blank_path(sender)
    for (p, _), pub in zip(fdp, publics, strict=True):
        tree.set_node(p, ParentNode(encryption_key=pub))
    return tree.set_path_parent_hashes(sender)


def merge_update_path(
    tree: RatchetTree, sender: int, path: UpdatePath, group_id: bytes
) -> list[tuple[int, int]]:
    """Merge ``path`` into ``tree`` (§7.5, receiver side); return the filtered path.

    Checks the node count, the leaf (§7.3, source ``commit``, signature over
    ``group_id`` and ``sender``) and that its parent hash is the recomputed one.
    """
    fdp = tree.filtered_direct_path(sender)
    if len(path.nodes) != len(fdp):
        raise MLSProtocolError("UpdatePath length differs from the filtered direct path")
    if tree.leaf(sender) is None:
        raise MLSProtocolError(f"UpdatePath from blank leaf {sender}")
    validate_leaf_node(
        path.leaf_node, tree.cs, source=LeafNodeSource.COMMIT, group_id=group_id, leaf_index=sender
    )
    leaf_hash = _put_path(tree, sender, [n.encryption_key for n in path.nodes])
    if path.leaf_node.parent_hash != leaf_hash:
        raise MLSProtocolError("UpdatePath leaf parent_hash does not match the tree")
    tree.set_node(2 * sender, path.leaf_node)
    return fdp


def create_update_path(
    tree: RatchetTree,
    private: TreeKEMPrivate,
    leaf_template: LeafNode,
    *,
    signature_priv: bytes,
    group_id: bytes,
    group_context: GroupContextFor,
    rng: Callable[[int], bytes],
    exclude: frozenset[int] = frozenset(),
) -> tuple[UpdatePath, PathResult]:
    """Refresh the sender's path in ``tree`` and encrypt it to the copath (§7.4-7.6).

    ``leaf_template`` carries the leaf's credential, capabilities and
    extensions (and may carry a new signature key); its encryption key,
    source, parent hash and signature are replaced. ``exclude`` lists the
    leaves added by this Commit, which receive the path secret by Welcome.
    """
    cs, sender = tree.cs, private.leaf_index
    fdp = tree.filtered_direct_path(sender)
    first_secret = rng(cs.Nh)
    pairs, commit_secret = derive_path_keys(cs, first_secret, len(fdp))
    leaf_priv, leaf_pub = cs.derive_key_pair(rng(cs.Nh))
    leaf_hash = _put_path(tree, sender, [pub for _, pub in pairs])
    leaf = attrs.evolve(
        leaf_template,
        encryption_key=leaf_pub,
        leaf_node_source=LeafNodeSource.COMMIT,
        lifetime=None,
        parent_hash=leaf_hash,
    ).sign(cs, signature_priv, group_id, sender)
    tree.set_node(2 * sender, leaf)
    context = group_context(tree.tree_hash())
    nodes, secret = [], first_secret
    for (_, s), (_, pub) in zip(fdp, pairs, strict=True):
        cts = []
        for x in tree.resolution(s, exclude):
            target = tree.node(x)
            assert target is not None
            kem_output, ct = cs.encrypt_with_label(target.encryption_key, _LABEL, context, secret)
            cts.append(HPKECiphertext(kem_output, ct))
        nodes.append(UpdatePathNode(pub, tuple(cts)))
        secret = cs.derive_secret(secret, b"path")
    new_keys = {p: priv for (p, _), (priv, _) in zip(fdp, pairs, strict=True)}
    new_keys[2 * sender] = leaf_priv
    path_nodes = set(tm.direct_path(2 * sender, tree.n_leaves))
    result = PathResult(commit_secret, first_secret, private.with_keys(path_nodes, new_keys))
    return UpdatePath(leaf, tuple(nodes)), result


def _covering_index(fdp: list[tuple[int, int]], leaf: int) -> int:
    """The position in ``fdp`` whose copath child's subtree holds ``leaf``."""
    for i, (_, s) in enumerate(fdp):
        lo = (s - (1 << tm.level(s)) + 1) >> 1
        if lo <= leaf < lo + (1 << tm.level(s)):
            return i
    raise MLSProtocolError(f"leaf {leaf} is not below the sender's filtered direct path")


def path_secret_for_joiner(
    tree: RatchetTree, sender: int, first_path_secret: bytes, joiner: int
) -> bytes:
    """The path secret a Welcome gives ``joiner``: the one at its lowest common
    ancestor with ``sender`` on the sender's filtered direct path (§12.4.3.1)."""
    secret = first_path_secret
    for _ in range(_covering_index(tree.filtered_direct_path(sender), joiner)):
        secret = tree.cs.derive_secret(secret, b"path")
    return secret


def joiner_private(
    tree: RatchetTree, leaf_index: int, encryption_priv: bytes, sender: int, path_secret: bytes
) -> TreeKEMPrivate:
    """A new member's private state from its Welcome ``path_secret`` (§12.4.3.1).

    ``tree`` is the group's tree after the Commit; ``path_secret`` belongs to
    the lowest common ancestor of the joiner and the committer ``sender``.
    The derived public keys must match the tree.
    """
    cs = tree.cs
    fdp = tree.filtered_direct_path(sender)
    i = _covering_index(fdp, leaf_index)
    pairs, _ = derive_path_keys(cs, path_secret, len(fdp) - i)
    keys = {2 * leaf_index: encryption_priv}
    for (p, _), (priv, pub) in zip(fdp[i:], pairs, strict=True):
        node = tree.node(p)
        if node is None or node.encryption_key != pub:
            raise MLSProtocolError(f"Welcome path secret does not match node {p}")
        keys[p] = priv
    return TreeKEMPrivate(leaf_index, keys)


def _find_decryption(
    tree: RatchetTree,
    private: TreeKEMPrivate,
    fdp: list[tuple[int, int]],
    exclude: frozenset[int],
) -> tuple[int, int, bytes]:
    """``(path position, ciphertext index, private key)`` the receiver can use (§7.5)."""
    i = _covering_index(fdp, private.leaf_index)
    for j, x in enumerate(tree.resolution(fdp[i][1], exclude)):
        key = private.key(x)
        if key is not None:
            return i, j, key
    raise MLSProtocolError("no private key for this UpdatePath")


def process_update_path(
    tree: RatchetTree,
    private: TreeKEMPrivate,
    sender: int,
    path: UpdatePath,
    *,
    group_id: bytes,
    group_context: GroupContextFor,
    exclude: frozenset[int] = frozenset(),
) -> PathResult:
    """Merge ``path`` into ``tree`` and decrypt the receiver's path secret (§7.5).

    Raises :class:`MLSProtocolError` for a malformed or inconsistent path and
    :class:`MLSAuthenticationError` when a signature or decryption fails.
    """
    cs = tree.cs
    if sender == private.leaf_index:
        raise MLSLocalError("a member cannot process its own UpdatePath")
    # Find the ciphertext against the tree before the merge: the copath side
    # of the tree is unchanged by it, and our old path keys are still valid.
    fdp = tree.filtered_direct_path(sender)
    i, j, key = _find_decryption(tree, private, fdp, exclude)
    merge_update_path(tree, sender, path, group_id)
    cts = path.nodes[i].encrypted_path_secret
    if len(cts) != len(tree.resolution(fdp[i][1], exclude)):
        raise MLSProtocolError("encrypted_path_secret count differs from the resolution")
    context = group_context(tree.tree_hash())
    path_secret = cs.decrypt_with_label(key, _LABEL, context, cts[j].kem_output, cts[j].ciphertext)
    pairs, commit_secret = derive_path_keys(cs, path_secret, len(fdp) - i)
    for (p, _), (_, pub) in zip(fdp[i:], pairs, strict=True):
        node = tree.node(p)
        if node is None or node.encryption_key != pub:
            raise MLSProtocolError(f"derived public key differs at node {p}")
    new_keys = {p: priv for (p, _), (priv, _) in zip(fdp[i:], pairs, strict=True)}
    stale = set(tm.direct_path(2 * sender, tree.n_leaves))
    return PathResult(commit_secret, path_secret, private.with_keys(stale, new_keys))
