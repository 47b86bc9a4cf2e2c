"""RFC 9420 tree-math vectors (``mls/tree-math.json``).

Format: per tree size ``n_leaves``, the node count ``n_nodes``, the ``root``
and, for every node index ``i``, ``left[i]``, ``right[i]``, ``parent[i]`` and
``sibling[i]`` (``null`` where the node has none).

Checks: :mod:`sealwire_mls.tree_math` gives the same values for every node,
and raises for the ``null`` entries (a leaf's children, the root's parent).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealwire.testing.vectors import load_json
from sealwire_mls import tree_math as tm


def _expect(fn: Callable[..., int], args: tuple[int, ...], want: int | None, what: str) -> None:
    if want is None:
        with pytest.raises(ValueError):
            fn(*args)
    else:
        assert fn(*args) == want, what


def _check(v: dict[str, Any]) -> None:
    n = v["n_leaves"]
    assert tm.node_width(n) == v["n_nodes"]
    assert tm.root(n) == v["root"]
    for i in range(v["n_nodes"]):
        _expect(tm.left, (i,), v["left"][i], f"left[{i}]")
        _expect(tm.right, (i,), v["right"][i], f"right[{i}]")
        _expect(tm.parent, (i, n), v["parent"][i], f"parent[{i}]")
        _expect(tm.sibling, (i, n), v["sibling"][i], f"sibling[{i}]")


def test_tree_math_vectors(tally: Any) -> None:
    counter = tally("tree-math")
    counter.run(load_json("mls/tree-math.json"), _check, name=lambda v: f"n={v['n_leaves']}")
    counter.assert_all_passed()


@given(st.integers(0, 12).flatmap(lambda e: st.tuples(st.just(1 << e), st.integers(0, 1 << e))))
def test_paths_are_consistent(case: tuple[int, int]) -> None:
    n, leaf = case
    leaf %= n
    x = tm.leaf_to_node(leaf)
    path = tm.direct_path(x, n)
    cop = tm.copath(x, n)
    assert len(path) == len(cop) == tm.level(tm.root(n))
    assert (path[-1] if path else x) == tm.root(n)
    for node, sib in zip([x, *path][:-1], cop, strict=True):
        assert tm.parent(sib, n) == tm.parent(node, n)
        assert tm.common_ancestor(node, sib) == tm.parent(node, n)
    assert tm.node_to_leaf(x) == leaf


def test_common_ancestor_of_leaves() -> None:
    assert tm.common_ancestor(0, 2) == 1
    assert tm.common_ancestor(0, 6) == 3
    assert tm.common_ancestor(2, 12) == 7
    assert tm.common_ancestor(5, 5) == 5
    assert tm.common_ancestor(1, 2) == 1
