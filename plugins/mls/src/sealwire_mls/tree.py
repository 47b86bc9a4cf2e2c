"""The ratchet tree (RFC 9420 §4.1, §7, §12.4.3.3).

Rules of this module:

* The tree is the §4.2 node array: leaf ``i`` at index ``2i``, parents at odd
  indices, always ``2^d`` leaves. Blank nodes are ``None``.
* :class:`RatchetTree` is mutable for speed (a commit touches ``log2 N``
  nodes); callers stage changes on :meth:`RatchetTree.copy` (an ``O(N)``
  pointer copy, no re-hashing) and swap it in only when everything succeeded.
* Tree hashes (§7.8) are cached per node. Setting a node invalidates it and
  its ancestors only, so a commit re-hashes its path, not the whole tree.
* Decoding hostile bytes raises :class:`MLSDecodeError`; a well-formed tree
  that breaks a rule raises :class:`MLSProtocolError` (or
  :class:`MLSAuthenticationError` for a bad leaf signature).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import attrs
from attrs import frozen

from sealwire_mls import tree_math as tm
from sealwire_mls.codec import Reader, Writer, decode_exact, encode_varint
from sealwire_mls.crypto import CipherSuite
from sealwire_mls.errors import MLSDecodeError, MLSLocalError, MLSProtocolError
from sealwire_mls.extensions import Extension, ExtensionType, RequiredCapabilities
from sealwire_mls.keypackage import LeafNode, LeafNodeSource, check_leaf_contents
from sealwire_mls.signatures import PendingVerification

__all__ = [
    "MAX_LEAVES",
    "Node",
    "NodeType",
    "ParentNode",
    "RatchetTree",
    "decode_node",
    "encode_node",
]

#: Largest group this engine holds (2^20 leaves, ~2M nodes): bounds the node
#: array a hostile ratchet_tree or a run of Adds can make us allocate.
MAX_LEAVES = 1 << 20


class NodeType:
    """``uint8 NodeType`` (§7.8)."""

    LEAF = 1
    PARENT = 2


@frozen(kw_only=True)
class ParentNode:
    """A ``ParentNode`` (§7.1); ``unmerged_leaves`` are leaf indices, sorted."""

    encryption_key: bytes
    parent_hash: bytes = b""
    unmerged_leaves: tuple[int, ...] = ()

    # struct {
    #     HPKEPublicKey encryption_key;
    #     opaque parent_hash<V>;
    #     uint32 unmerged_leaves<V>;
    # } ParentNode;
    def encode(self, w: Writer) -> None:
        """Write the ``ParentNode`` struct."""
        w.opaque(self.encryption_key).opaque(self.parent_hash)
        w.vector(self.unmerged_leaves, lambda w2, i: w2.uint32(i))

    @classmethod
    def decode(cls, r: Reader) -> ParentNode:
        """Read a ``ParentNode`` struct."""
        return cls(
            encryption_key=r.opaque("encryption_key"),
            parent_hash=r.opaque("parent_hash"),
            unmerged_leaves=tuple(r.vector(lambda r2: r2.uint32("unmerged_leaves"))),
        )


Node = LeafNode | ParentNode


# struct {
#     NodeType node_type;
#     select (Node.node_type) {
#         case leaf:   LeafNode leaf_node;
#         case parent: ParentNode parent_node;
#     };
# } Node;
def encode_node(w: Writer, node: Node) -> None:
    """Write a ``Node`` struct (§7.8)."""
    w.uint8(NodeType.LEAF if isinstance(node, LeafNode) else NodeType.PARENT)
    node.encode(w)


def _node_bytes(node: Node) -> bytes:
    if isinstance(node, LeafNode):
        return node.to_bytes()  # memoized
    w = Writer()
    node.encode(w)
    return w.getvalue()


def decode_node(r: Reader) -> Node:
    """Read a ``Node`` struct."""
    kind = r.uint8("node_type")
    if kind == NodeType.LEAF:
        return LeafNode.decode(r)
    if kind == NodeType.PARENT:
        return ParentNode.decode(r)
    raise MLSDecodeError(f"unknown node type {kind}", field="node_type")


def _leaf_span(x: int) -> tuple[int, int]:
    """The leaf indices ``[lo, hi)`` under node ``x``."""
    k = tm.level(x)
    return (x - (1 << k) + 1) >> 1, ((x + (1 << k) - 1) >> 1) + 1


def _n_leaves_for(width: int) -> int:
    n = 1
    while tm.node_width(n) < width:
        n <<= 1
    return n


class RatchetTree:
    """A ratchet tree over one cipher suite, with cached tree hashes."""

    __slots__ = ("_blank_hint", "_hashes", "_nodes", "cs")

    def __init__(self, cs: CipherSuite, nodes: list[Node | None]) -> None:
        self.cs = cs
        self._nodes = nodes
        self._hashes: list[bytes | None] = [None] * len(nodes)
        # Every leaf below this index is non-blank: Adds scan from here, so a
        # run of Adds costs O(1) each instead of an O(N) scan.
        self._blank_hint = 0

    # -- construction and the ratchet_tree extension (§12.4.3.3) -----------

    @classmethod
    def create(cls, cs: CipherSuite, leaf: LeafNode) -> RatchetTree:
        """A one-member tree."""
        return cls(cs, [leaf])

    @classmethod
    def from_nodes(cls, cs: CipherSuite, nodes: Sequence[Node | None]) -> RatchetTree:
        """A tree from its (possibly truncated) node array; checks its shape."""
        if not nodes or nodes[-1] is None:
            raise MLSDecodeError("last node must be non-blank", field="ratchet_tree")
        n = _n_leaves_for(len(nodes))
        if n > MAX_LEAVES:
            raise MLSDecodeError("tree too large", field="ratchet_tree")
        full: list[Node | None] = list(nodes) + [None] * (tm.node_width(n) - len(nodes))
        for x, node in enumerate(full):
            if node is not None and isinstance(node, LeafNode) != tm.is_leaf(x):
                raise MLSDecodeError(f"wrong node type at {x}", field="ratchet_tree")
        return cls(cs, full)

    # optional<Node> ratchet_tree<V>;
    @classmethod
    def decode(cls, cs: CipherSuite, data: bytes) -> RatchetTree:
        """Decode a serialized ``optional<Node> ratchet_tree<V>``."""
        nodes = decode_exact(data, lambda r: r.vector(lambda r2: r2.optional(decode_node)))
        return cls.from_nodes(cs, nodes)

    @classmethod
    def decode_checking_leaves(
        cls, cs: CipherSuite, data: bytes, group_id: bytes
    ) -> tuple[RatchetTree, PendingVerification]:
        """:meth:`decode` a joiner's tree, starting each leaf's signature check (§7.3)
        as the leaf is read: with worker processes running, a large tree's checks run
        on them while the rest is decoded. Hand the checks to :meth:`validate`."""
        checks = cs.verify_batch()
        nodes: list[Node | None] = []

        def node(r: Reader) -> Node | None:
            read = r.optional(decode_node)
            if isinstance(read, LeafNode):
                leaf_index = len(nodes) >> 1  # a leaf at an odd index: from_nodes rejects it
                checks.add(
                    read.signature_key, b"LeafNodeTBS", read.tbs(group_id, leaf_index),
                    read.signature,
                )  # fmt: skip
            nodes.append(read)
            return read

        try:
            decode_exact(data, lambda r: r.vector(node))
            return cls.from_nodes(cs, nodes), checks
        except BaseException:
            checks.cancel()
            raise

    def encode(self, w: Writer) -> None:
        """Write ``optional<Node> ratchet_tree<V>`` without trailing blanks."""
        end = len(self._nodes)
        while end > 0 and self._nodes[end - 1] is None:
            end -= 1
        # Joined from each node's bytes (leaves' are memoized): a Welcome carries
        # the whole tree, 10,000 leaves at 10,000 members.
        blank, leaf, parent = b"\x00", bytes((1, NodeType.LEAF)), bytes((1, NodeType.PARENT))
        w.opaque(
            b"".join(
                blank if node is None
                else leaf + node.to_bytes() if isinstance(node, LeafNode)
                else parent + _node_bytes(node)
                for node in self._nodes[:end]
            )
        )  # fmt: skip

    def to_bytes(self) -> bytes:
        """The serialized ratchet tree."""
        w = Writer()
        self.encode(w)
        return w.getvalue()

    def to_extension(self) -> Extension:
        """The ``ratchet_tree`` GroupInfo extension carrying this tree."""
        return Extension(ExtensionType.RATCHET_TREE, self.to_bytes())

    @classmethod
    def from_extension(cls, cs: CipherSuite, ext: Extension) -> RatchetTree:
        """The tree carried by a ``ratchet_tree`` extension."""
        return cls.decode(cs, ext.extension_data)

    def copy(self) -> RatchetTree:
        """An independent copy sharing the (immutable) nodes and cached hashes."""
        other = RatchetTree(self.cs, list(self._nodes))
        other._hashes = list(self._hashes)
        other._blank_hint = self._blank_hint
        return other

    # -- access -------------------------------------------------------------

    @property
    def n_leaves(self) -> int:
        """The number of leaves, blank or not (a power of two)."""
        return (len(self._nodes) + 1) // 2

    @property
    def width(self) -> int:
        """The number of nodes."""
        return len(self._nodes)

    def node(self, x: int) -> Node | None:
        """Node ``x`` (``None`` if blank)."""
        return self._nodes[x]

    def leaf(self, index: int) -> LeafNode | None:
        """The LeafNode at leaf ``index``, ``None`` if blank or outside the tree."""
        if not 0 <= index < self.n_leaves:
            return None
        node = self._nodes[2 * index]
        assert node is None or isinstance(node, LeafNode)
        return node

    def parent_node(self, x: int) -> ParentNode | None:
        """The ParentNode at odd index ``x``, ``None`` if blank."""
        node = self._nodes[x]
        assert node is None or isinstance(node, ParentNode)
        return node

    def leaves(self) -> Iterator[tuple[int, LeafNode]]:
        """``(leaf index, LeafNode)`` for every non-blank leaf."""
        for x in range(0, len(self._nodes), 2):
            node = self._nodes[x]
            if isinstance(node, LeafNode):
                yield x >> 1, node

    def set_node(self, x: int, node: Node | None) -> None:
        """Replace node ``x``, invalidating its cached tree hash and its ancestors'."""
        if node is not None and isinstance(node, LeafNode) != tm.is_leaf(x):
            raise MLSLocalError(f"wrong node type for index {x}")
        self._nodes[x] = node
        if node is None and tm.is_leaf(x):
            self._blank_hint = min(self._blank_hint, x >> 1)
        n, r = self.n_leaves, tm.root(self.n_leaves)
        self._hashes[x] = None
        while x != r:
            x = tm.parent(x, n)
            self._hashes[x] = None

    # -- resolution and paths (§4.1) ---------------------------------------

    def resolution(self, x: int, exclude: frozenset[int] = frozenset()) -> list[int]:
        """The resolution of node ``x`` (§4.1.2), minus the leaves in ``exclude``."""
        node = self._nodes[x]
        if tm.is_leaf(x):
            return [] if node is None or (x >> 1) in exclude else [x]
        if isinstance(node, ParentNode):
            return [x, *(2 * i for i in node.unmerged_leaves if i not in exclude)]
        if not self._has_member(x):  # a blank subtree (the right edge of a partial tree)
            return []
        return self.resolution(tm.left(x), exclude) + self.resolution(tm.right(x), exclude)

    def _has_member(self, x: int) -> bool:
        lo, hi = _leaf_span(x)
        leaves = self._nodes[2 * lo : 2 * hi : 2]  # list ops run in C: O(N) but fast
        return leaves.count(None) != len(leaves)

    def filtered_direct_path(self, leaf: int) -> list[tuple[int, int]]:
        """``(parent, copath child)`` along leaf's filtered direct path (§4.1.2)."""
        n = self.n_leaves
        out: list[tuple[int, int]] = []
        x = 2 * leaf
        for p in tm.direct_path(x, n):
            s = tm.sibling(x, n)
            if self._resolution_nonempty(s):
                out.append((p, s))
            x = p
        return out

    def _resolution_nonempty(self, x: int) -> bool:
        return self._nodes[x] is not None or (not tm.is_leaf(x) and self._has_member(x))

    # -- leaf operations (§7.7, §12.1) --------------------------------------

    def add_leaf(self, leaf: LeafNode) -> int:
        """Put ``leaf`` in the leftmost blank leaf (extending if none), mark it unmerged."""
        index = self._blank_hint
        while index < self.n_leaves and self._nodes[2 * index] is not None:
            index += 1
        self._blank_hint = index + 1
        if index == self.n_leaves:
            if self.n_leaves * 2 > MAX_LEAVES:
                raise MLSProtocolError("group is full")
            self._nodes.extend([None] * len(self._nodes) + [None])
            self._hashes.extend([None] * (len(self._nodes) - len(self._hashes)))
        n = self.n_leaves
        for p in tm.direct_path(2 * index, n):
            node = self._nodes[p]
            if isinstance(node, ParentNode):
                merged = tuple(sorted({*node.unmerged_leaves, index}))
                self.set_node(p, attrs.evolve(node, unmerged_leaves=merged))
        self.set_node(2 * index, leaf)
        return index

    def blank_path(self, index: int) -> None:
        """Blank the direct path of leaf ``index`` (not the leaf)."""
        for p in tm.direct_path(2 * index, self.n_leaves):
            if self._nodes[p] is not None:
                self.set_node(p, None)

    def update_leaf(self, index: int, leaf: LeafNode) -> None:
        """Apply an Update (§12.1.2): replace the leaf, blank its direct path."""
        if self.leaf(index) is None:
            raise MLSProtocolError(f"update of blank leaf {index}")
        self.set_node(2 * index, leaf)
        self.blank_path(index)

    def remove_leaf(self, index: int) -> None:
        """Apply a Remove (§12.1.3): blank the leaf and its path, then truncate."""
        if self.leaf(index) is None:
            raise MLSProtocolError(f"remove of blank leaf {index}")
        self.set_node(2 * index, None)
        self.blank_path(index)
        self._truncate()

    def _truncate(self) -> None:
        while self.n_leaves > 1 and not self._has_member(tm.right(tm.root(self.n_leaves))):
            half = self.n_leaves // 2
            del self._nodes[tm.node_width(half) :]
            del self._hashes[tm.node_width(half) :]

    # -- tree hashes (§7.8) --------------------------------------------------

    def tree_hash(self, x: int | None = None) -> bytes:
        """The tree hash of node ``x`` (default: the root), from the cache when valid."""
        if x is None:
            x = tm.root(self.n_leaves)
        cached = self._hashes[x]
        if cached is not None:
            return cached
        if tm.is_leaf(x):
            value = self._leaf_hash(x, self._nodes[x])
        else:
            node = self._nodes[x]
            left, right = self.tree_hash(tm.left(x)), self.tree_hash(tm.right(x))
            value = self._parent_hash_input(node, left, right)
        self._hashes[x] = value
        return value

    # struct { uint32 leaf_index; optional<LeafNode> leaf_node; } LeafNodeHashInput;
    def _leaf_hash(self, x: int, node: Node | None) -> bytes:
        # TreeHashInput built by hand (node_type, leaf_index, optional octet): hot path.
        head = bytes((NodeType.LEAF,)) + (x >> 1).to_bytes(4, "big")
        if node is None:
            return self.cs.hash(head + b"\x00")
        assert isinstance(node, LeafNode)
        return self.cs.hash(head + b"\x01" + node.to_bytes())

    # struct { optional<ParentNode> parent_node; opaque left_hash<V>;
    #          opaque right_hash<V>; } ParentNodeHashInput;
    def _parent_hash_input(self, node: Node | None, left: bytes, right: bytes) -> bytes:
        # Built by hand on this hot path (one call per parent in a full re-hash).
        body = b"\x00" if node is None else b"\x01" + _node_bytes(node)
        return self.cs.hash(
            b"\x02" + body + encode_varint(len(left)) + left + encode_varint(len(right)) + right
        )

    def _tree_hash_without(self, x: int, removed: frozenset[int]) -> bytes:
        """Tree hash of ``x`` with the leaves ``removed`` blanked and un-listed (§7.9)."""
        lo, hi = _leaf_span(x)
        if not any(lo <= i < hi for i in removed):
            return self.tree_hash(x)
        node = self._nodes[x]
        if tm.is_leaf(x):
            return self._leaf_hash(x, None)
        if isinstance(node, ParentNode):
            kept = tuple(i for i in node.unmerged_leaves if i not in removed)
            node = attrs.evolve(node, unmerged_leaves=kept)
        left = self._tree_hash_without(tm.left(x), removed)
        right = self._tree_hash_without(tm.right(x), removed)
        return self._parent_hash_input(node, left, right)

    # -- parent hashes (§7.9) ------------------------------------------------

    # struct {
    #     HPKEPublicKey encryption_key;
    #     opaque parent_hash<V>;
    #     opaque original_sibling_tree_hash<V>;
    # } ParentHashInput;
    def parent_hash(self, p: int, s: int) -> bytes:
        """The parent hash of parent ``p`` with copath child ``s`` (§7.9)."""
        node = self.parent_node(p)
        if node is None:
            raise MLSLocalError(f"parent hash of blank node {p}")
        sibling_hash = self._tree_hash_without(s, frozenset(node.unmerged_leaves))
        w = Writer().opaque(node.encryption_key).opaque(node.parent_hash).opaque(sibling_hash)
        return self.cs.hash(w.getvalue())

    def set_path_parent_hashes(self, leaf: int) -> bytes:
        """Fill ``parent_hash`` down leaf's filtered direct path; return the leaf's (§7.9.1).

        The path nodes must already hold their new keys and no unmerged leaves.
        """
        next_hash = b""
        for p, s in reversed(self.filtered_direct_path(leaf)):
            node = self.parent_node(p)
            if node is None:
                raise MLSLocalError(f"filtered direct path node {p} is blank")
            self.set_node(p, ParentNode(encryption_key=node.encryption_key, parent_hash=next_hash))
            next_hash = self.parent_hash(p, s)
        return next_hash

    def _chain_count(self, p: int, node: ParentNode) -> int:
        """How many descendants D are parent-hash valid w.r.t. ``p`` (§7.9.2)."""
        count = 0
        for c, s in ((tm.left(p), tm.right(p)), (tm.right(p), tm.left(p))):
            expected = self.parent_hash(p, s)
            lo, hi = _leaf_span(c)
            unmerged = {2 * i for i in node.unmerged_leaves if lo <= i < hi}
            res = self.resolution(c)
            for d in res:
                child = self._nodes[d]
                if isinstance(child, LeafNode) and child.leaf_node_source != LeafNodeSource.COMMIT:
                    continue
                assert child is not None
                if child.parent_hash == expected and unmerged == set(res) - {d}:
                    count += 1
        return count

    def verify_parent_hashes(self) -> None:
        """Check every non-blank parent is parent-hash valid (§7.9.2, top down)."""
        for p in range(1, len(self._nodes), 2):
            node = self.parent_node(p)
            if node is not None and self._chain_count(p, node) != 1:
                raise MLSProtocolError(f"parent node {p} is not parent-hash valid")

    # -- validation on join (§7.9.2, §7.3, §12.4.3.1) -------------------------

    def _check_unmerged(self) -> None:
        for p in range(1, len(self._nodes), 2):
            node = self.parent_node(p)
            if node is None:
                continue
            lo, hi = _leaf_span(p)
            leaves = node.unmerged_leaves
            if list(leaves) != sorted(set(leaves)):
                raise MLSProtocolError(f"unmerged_leaves of {p} not sorted")
            if any(not lo <= i < hi or self.leaf(i) is None for i in leaves):
                raise MLSProtocolError(f"bad unmerged leaf under {p}")

    def _check_unique_keys(self) -> None:
        seen_sig: set[bytes] = set()
        seen_enc: set[bytes] = set()
        for index, leaf in self.leaves():
            if leaf.encryption_key in seen_enc or leaf.signature_key in seen_sig:
                raise MLSProtocolError(f"leaf {index} repeats another member's key")
            seen_enc.add(leaf.encryption_key)
            seen_sig.add(leaf.signature_key)

    def verify_leaf_signatures(self, group_id: bytes) -> None:
        """Verify every leaf's LeafNodeTBS signature with ``group_id`` (§7.3), as one batch."""
        self._start_leaf_signatures(group_id).wait()

    def _start_leaf_signatures(self, group_id: bytes) -> PendingVerification:
        return self.cs.start_verify_many(
            [
                (leaf.signature_key, b"LeafNodeTBS", leaf.tbs(group_id, index), leaf.signature)
                for index, leaf in self.leaves()
            ]
        )

    def _check_leaves(self, now: int | None, required: RequiredCapabilities | None) -> None:
        in_use = {leaf.credential.credential_type for _, leaf in self.leaves()}
        for index, leaf in self.leaves():
            check_leaf_contents(leaf, now=now)
            if not in_use.issubset(leaf.capabilities.credentials):
                raise MLSProtocolError(f"leaf {index} lacks a credential type in use")
            if required is not None and not required.satisfied_by(leaf.capabilities):
                raise MLSProtocolError(f"leaf {index} lacks a required capability")

    def validate(
        self,
        group_id: bytes,
        *,
        now: int | None = None,
        required: RequiredCapabilities | None = None,
        leaf_signatures: PendingVerification | None = None,
    ) -> None:
        """The checks a joiner runs on a received tree (§7.3, §7.9.2, §12.4.3.1).

        Unmerged-leaf sanity, unique member keys, each leaf's own fields and
        lifetime (when ``now`` is given), credential types supported by all,
        ``required`` capabilities, parent-hash validity of every parent and
        every leaf's signature. The caller compares :meth:`tree_hash` with
        the GroupContext. ``leaf_signatures``: these leaves' checks with this
        ``group_id``, already started by :meth:`decode_checking_leaves`.
        """
        # A large batch of leaf signatures runs in worker processes meanwhile.
        signatures = (
            self._start_leaf_signatures(group_id) if leaf_signatures is None else leaf_signatures
        )
        try:
            if not any(True for _ in self.leaves()):
                raise MLSProtocolError("tree has no members")
            self._check_unmerged()
            self._check_unique_keys()
            self._check_leaves(now, required)
            self.verify_parent_hashes()
        except BaseException:
            signatures.cancel()
            raise
        signatures.wait()
