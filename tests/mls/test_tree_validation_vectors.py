"""RFC 9420 tree-validation vectors (``mls/tree-validation.json``).

Format: per case a ``cipher_suite``, a serialized ``tree`` (``optional<Node>
ratchet_tree<V>``), the ``group_id`` and, per node index ``i``, its
``resolutions[i]`` (node indices) and ``tree_hashes[i]``.

Checks: the tree decodes and re-encodes byte for byte; every node's
resolution and tree hash match; every non-blank parent is parent-hash valid
(§7.9.2); every leaf signature verifies with ``group_id``; the full
validation a joiner runs passes. Suites this engine lacks are counted as
unsupported. Negative checks: a flipped parent hash or signature is caught.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from sealwire.testing.vectors import load_json
from sealwire_mls.codec import Writer, decode_exact
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.errors import MLSAuthenticationError, MLSProtocolError
from sealwire_mls.tree import ParentNode, RatchetTree

h = bytes.fromhex


def _tree(v: dict[str, Any]) -> RatchetTree:
    return RatchetTree.decode(cipher_suite(v["cipher_suite"]), h(v["tree"]))


def _check(v: dict[str, Any]) -> None:
    tree = _tree(v)
    assert tree.to_bytes().hex() == v["tree"]
    assert tree.width == len(v["tree_hashes"])
    for x, (res, th) in enumerate(zip(v["resolutions"], v["tree_hashes"], strict=True)):
        assert tree.resolution(x) == res, f"resolution[{x}]"
        assert tree.tree_hash(x).hex() == th, f"tree_hash[{x}]"
    tree.verify_parent_hashes()
    tree.verify_leaf_signatures(h(v["group_id"]))
    tree.validate(h(v["group_id"]))


def test_tree_validation_vectors(tally: Any, suite_supported: Any) -> None:
    counter = tally("tree-validation")
    counter.run(
        load_json("mls/tree-validation.json"),
        _check,
        name=lambda v: f"suite {v['cipher_suite']} {v['tree'][:16]}",
        supported=suite_supported,
    )
    counter.assert_all_passed()


def _cases_with_parents() -> list[dict[str, Any]]:
    cases = [v for v in load_json("mls/tree-validation.json") if v["cipher_suite"] == 1]
    return cases[:4]


@pytest.mark.parametrize("index", range(4))
def test_tampered_parent_hash_is_rejected(index: int) -> None:
    v = _cases_with_parents()[index]
    tree = _tree(v)
    p = next(x for x in range(1, tree.width, 2) if tree.node(x) is not None)
    node = tree.parent_node(p)
    assert node is not None
    bad = bytes([node.encryption_key[0] ^ 1]) + node.encryption_key[1:]
    tree.set_node(p, attrs.evolve(node, encryption_key=bad))
    with pytest.raises(MLSProtocolError):
        tree.verify_parent_hashes()


def test_tampered_leaf_signature_is_rejected() -> None:
    v = _cases_with_parents()[0]
    tree = _tree(v)
    leaf = tree.leaf(0)
    assert leaf is not None
    tree.set_node(0, attrs.evolve(leaf, signature=bytes(len(leaf.signature))))
    with pytest.raises(MLSAuthenticationError):
        tree.verify_leaf_signatures(h(v["group_id"]))


def test_parent_node_round_trip() -> None:
    node = ParentNode(encryption_key=b"k", parent_hash=b"p", unmerged_leaves=(1, 3))
    w = Writer()
    node.encode(w)
    assert decode_exact(w.getvalue(), ParentNode.decode) == node
