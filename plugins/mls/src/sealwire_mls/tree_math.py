"""Array-based left-balanced binary tree arithmetic (RFC 9420 §4.2, Appendix C).

Nodes are numbered in-order: leaves are the even indices (leaf ``i`` is node
``2 * i``), parent nodes the odd ones, and a node's *level* is the number of
trailing 1 bits in its index. All functions are pure integer arithmetic; the
arguments are node indices unless named ``leaf`` / ``n_leaves``. Callers must
pass nodes inside the tree: a programmer error raises :class:`ValueError`
(decoders check hostile indices before calling in here).
"""

from __future__ import annotations

__all__ = [
    "common_ancestor",
    "copath",
    "direct_path",
    "is_leaf",
    "leaf_to_node",
    "left",
    "level",
    "node_to_leaf",
    "node_width",
    "parent",
    "right",
    "root",
    "sibling",
]


def level(x: int) -> int:
    """The level of node ``x`` in the tree: 0 for leaves (trailing 1 bits)."""
    return ((x + 1) & ~x).bit_length() - 1


def is_leaf(x: int) -> bool:
    """Whether node ``x`` is a leaf (an even index)."""
    return x & 1 == 0


def leaf_to_node(leaf: int) -> int:
    """The node index of leaf index ``leaf``."""
    return 2 * leaf


def node_to_leaf(x: int) -> int:
    """The leaf index of leaf node ``x``."""
    if not is_leaf(x):
        raise ValueError(f"node {x} is not a leaf")
    return x >> 1


def node_width(n_leaves: int) -> int:
    """The number of nodes in a tree with ``n_leaves`` leaves (§4.2)."""
    return 0 if n_leaves == 0 else 2 * (n_leaves - 1) + 1


def root(n_leaves: int) -> int:
    """The root node index of a tree with ``n_leaves`` leaves."""
    if n_leaves < 1:
        raise ValueError("a tree has at least one leaf")
    return (1 << (node_width(n_leaves).bit_length() - 1)) - 1


def left(x: int) -> int:
    """The left child of intermediate node ``x``."""
    k = level(x)
    if k == 0:
        raise ValueError(f"leaf {x} has no children")
    return x ^ (0x01 << (k - 1))


def right(x: int) -> int:
    """The right child of intermediate node ``x`` (the tree is complete, §4.2)."""
    k = level(x)
    if k == 0:
        raise ValueError(f"leaf {x} has no children")
    return x ^ (0x03 << (k - 1))


def parent(x: int, n_leaves: int) -> int:
    """The parent of node ``x`` in a tree with ``n_leaves`` leaves (not the root)."""
    if x == root(n_leaves):
        raise ValueError("the root has no parent")
    k = level(x)
    b = (x >> (k + 1)) & 0x01
    return (x | (1 << k)) ^ (b << (k + 1))


def sibling(x: int, n_leaves: int) -> int:
    """The other child of ``x``'s parent."""
    p = parent(x, n_leaves)
    return right(p) if x < p else left(p)


def direct_path(x: int, n_leaves: int) -> list[int]:
    """The ancestors of ``x`` from its parent up to and including the root (§4.1)."""
    r = root(n_leaves)
    path: list[int] = []
    while x != r:
        x = parent(x, n_leaves)
        path.append(x)
    return path


def copath(x: int, n_leaves: int) -> list[int]:
    """The siblings of ``x`` and of each of its ancestors below the root (§4.1)."""
    r = root(n_leaves)
    path = [x, *direct_path(x, n_leaves)]
    return [sibling(y, n_leaves) for y in path if y != r]


def common_ancestor(x: int, y: int) -> int:
    """The lowest common ancestor of nodes ``x`` and ``y`` (RFC 9420 Appendix C)."""
    lx, ly = level(x) + 1, level(y) + 1
    if lx <= ly and x >> ly == y >> ly:
        return y
    if ly <= lx and x >> lx == y >> lx:
        return x
    xn, yn, k = x, y, 0
    while xn != yn:
        xn, yn, k = xn >> 1, yn >> 1, k + 1
    return (xn << k) + (1 << (k - 1)) - 1
