"""RFC 9420 tree-operations vectors (``mls/tree-operations.json``).

Format: per case a ``cipher_suite``, ``tree_before`` and its
``tree_hash_before``, a serialized ``proposal`` (Add, Update or Remove) sent
by leaf ``proposal_sender``, and the expected ``tree_after`` and
``tree_hash_after``.

Checks: the tree hash before matches; applying the proposal (§12.1.1-3,
including extension and truncation) gives exactly ``tree_after`` and its
hash; and the incrementally cached hash equals a from-scratch one.
"""

from __future__ import annotations

from typing import Any

from sealwire.testing.vectors import load_json
from sealwire_mls.codec import decode_exact
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.proposals import Add, Proposal, Remove, Update
from sealwire_mls.tree import RatchetTree

h = bytes.fromhex


def apply(tree: RatchetTree, proposal: Proposal, sender: int) -> None:
    if isinstance(proposal, Add):
        tree.add_leaf(proposal.key_package.leaf_node)
    elif isinstance(proposal, Update):
        tree.update_leaf(sender, proposal.leaf_node)
    elif isinstance(proposal, Remove):
        tree.remove_leaf(proposal.removed)
    else:  # pragma: no cover - the vectors only hold the three tree proposals
        raise AssertionError(type(proposal))


def _check(v: dict[str, Any]) -> None:
    cs = cipher_suite(v["cipher_suite"])
    tree = RatchetTree.decode(cs, h(v["tree_before"]))
    assert tree.tree_hash().hex() == v["tree_hash_before"]
    proposal = decode_exact(h(v["proposal"]), Proposal.decode)
    assert proposal.to_bytes().hex() == v["proposal"]
    apply(tree, proposal, v["proposal_sender"])
    assert tree.to_bytes().hex() == v["tree_after"]
    assert tree.tree_hash().hex() == v["tree_hash_after"]
    fresh = RatchetTree.decode(cs, tree.to_bytes())
    assert fresh.tree_hash() == tree.tree_hash()


def test_tree_operations_vectors(tally: Any, suite_supported: Any) -> None:
    counter = tally("tree-operations")
    counter.run(
        load_json("mls/tree-operations.json"),
        _check,
        name=lambda v: f"suite {v['cipher_suite']} proposal {v['proposal'][:8]}",
        supported=suite_supported,
    )
    counter.assert_all_passed()
