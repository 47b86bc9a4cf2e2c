"""RFC 9420 TreeKEM vectors (``mls/treekem.json``).

Format: per case a ``cipher_suite``, ``group_id``, ``epoch``,
``confirmed_transcript_hash``, a serialized ``ratchet_tree``,
``leaves_private`` (per leaf ``index``: ``encryption_priv``,
``signature_priv`` and ``path_secrets`` at parent nodes) and
``update_paths`` (per ``sender``: the serialized ``update_path``, the path
secret each leaf decrypts, the ``commit_secret`` and ``tree_hash_after``).

Checks (test-vectors.md "TreeKEM"): each private state is consistent with
the tree; each UpdatePath re-encodes byte for byte, merges parent-hash
valid, gives every other member the listed path secret and commit secret,
and yields ``tree_hash_after``; a fresh UpdatePath created by the sender is
processed by every other member to the same commit secret. The provisional
GroupContext uses the tree hash after the merge and empty extensions.
"""

from __future__ import annotations

import os
from typing import Any

from sealwire.testing.vectors import load_json
from sealwire_mls.codec import Writer, decode_exact
from sealwire_mls.crypto import CipherSuite, cipher_suite
from sealwire_mls.schedule import GroupContext
from sealwire_mls.tree import RatchetTree
from sealwire_mls.treekem import (
    TreeKEMPrivate,
    UpdatePath,
    create_update_path,
    merge_update_path,
    process_update_path,
)

h = bytes.fromhex


def _context_for(v: dict[str, Any]) -> Any:
    def make(tree_hash: bytes) -> bytes:
        ctx = GroupContext(
            cipher_suite=v["cipher_suite"],
            group_id=h(v["group_id"]),
            epoch=v["epoch"],
            tree_hash=tree_hash,
            confirmed_transcript_hash=h(v["confirmed_transcript_hash"]),
        )
        w = Writer()
        ctx.encode(w)
        return w.getvalue()

    return make


def _privates(cs: CipherSuite, v: dict[str, Any], tree: RatchetTree) -> dict[int, TreeKEMPrivate]:
    out = {}
    for lp in v["leaves_private"]:
        keys = {2 * lp["index"]: h(lp["encryption_priv"])}
        for ps in lp["path_secrets"]:
            node_secret = cs.derive_secret(h(ps["path_secret"]), b"node")
            keys[ps["node"]] = cs.derive_key_pair(node_secret)[0]
        private = TreeKEMPrivate(lp["index"], keys)
        assert private.consistent_with(cs, tree)
        out[lp["index"]] = private
    return out


def _check_path(v: dict[str, Any], up: dict[str, Any], privs: dict[int, TreeKEMPrivate]) -> None:
    cs = cipher_suite(v["cipher_suite"])
    base = RatchetTree.decode(cs, h(v["ratchet_tree"]))
    group_id, sender, ctx = h(v["group_id"]), up["sender"], _context_for(v)
    path = decode_exact(h(up["update_path"]), UpdatePath.decode)
    w = Writer()
    path.encode(w)
    assert w.getvalue().hex() == up["update_path"]
    merged = base.copy()
    merge_update_path(merged, sender, path, group_id)
    merged.verify_parent_hashes()
    assert merged.tree_hash().hex() == up["tree_hash_after"]
    for j, private in privs.items():
        if j == sender:
            continue
        res = process_update_path(
            base.copy(), private, sender, path, group_id=group_id, group_context=ctx
        )
        assert res.path_secret.hex() == up["path_secrets"][j], f"path secret of leaf {j}"
        assert res.commit_secret.hex() == up["commit_secret"]
    signer = next(lp for lp in v["leaves_private"] if lp["index"] == sender)
    staged = base.copy()
    template = base.leaf(sender)
    assert template is not None
    new_path, mine = create_update_path(
        staged,
        privs[sender],
        template,
        signature_priv=h(signer["signature_priv"]),
        group_id=group_id,
        group_context=ctx,
        rng=os.urandom,
    )
    staged.verify_parent_hashes()
    assert mine.private.consistent_with(cs, staged)
    for j, private in privs.items():
        if j != sender:
            res = process_update_path(
                base.copy(), private, sender, new_path, group_id=group_id, group_context=ctx
            )
            assert res.commit_secret == mine.commit_secret
            assert res.private.leaf_index == j


def _check(v: dict[str, Any]) -> None:
    cs = cipher_suite(v["cipher_suite"])
    tree = RatchetTree.decode(cs, h(v["ratchet_tree"]))
    assert tree.to_bytes().hex() == v["ratchet_tree"]
    privs = _privates(cs, v, tree)
    assert {i for i, _ in tree.leaves()} == set(privs)
    for up in v["update_paths"]:
        _check_path(v, up, privs)


def test_treekem_vectors(tally: Any, suite_supported: Any) -> None:
    counter = tally("treekem")
    counter.run(
        load_json("mls/treekem.json"),
        _check,
        name=lambda v: f"suite {v['cipher_suite']} tree {v['ratchet_tree'][:12]}",
        supported=suite_supported,
    )
    counter.assert_all_passed()
