"""RFC 9420 secret-tree vectors (``mls/secret-tree.json``).

Format: per case a ``cipher_suite``, ``sender_data`` (secret, ciphertext,
expected key and nonce), the root ``encryption_secret`` and, per leaf, a list
of generations with the expected handshake/application keys and nonces.

Checks: sender-data key and nonce from the ciphertext sample; a secret tree
with as many leaves as ``leaves`` yields, for every leaf and generation, the
listed keys and nonces. Generations are requested in order, so earlier ones
are skipped and retained; each case is checked again on a fresh tree in
reverse order to exercise retained (skipped) keys.
"""

from __future__ import annotations

from typing import Any

import pytest

from sealwire.testing.vectors import load_json
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.errors import MLSProtocolError
from sealwire_mls.secret_tree import (
    MAX_FORWARD_GENERATIONS,
    RatchetType,
    SecretTree,
    sender_data_key_nonce,
)

h = bytes.fromhex


def _check(v: dict[str, Any]) -> None:
    suite = cipher_suite(v["cipher_suite"])
    sd = v["sender_data"]
    key, nonce = sender_data_key_nonce(suite, h(sd["sender_data_secret"]), h(sd["ciphertext"]))
    assert (key.hex(), nonce.hex()) == (sd["key"], sd["nonce"])
    n = len(v["leaves"])
    for order in (1, -1):
        tree = SecretTree(suite, h(v["encryption_secret"]), n)
        leaves = list(enumerate(v["leaves"]))[::order]
        for leaf, gens in leaves:
            for g in gens[::order]:
                gen = g["generation"]
                hk = tree.key_nonce(leaf, RatchetType.HANDSHAKE, gen)
                assert (hk[0].hex(), hk[1].hex()) == (g["handshake_key"], g["handshake_nonce"])
                ak = tree.key_nonce(leaf, RatchetType.APPLICATION, gen)
                assert (ak[0].hex(), ak[1].hex()) == (g["application_key"], g["application_nonce"])


def test_secret_tree_vectors(tally: Any, suite_supported: Any) -> None:
    counter = tally("secret-tree")
    counter.run(
        load_json("mls/secret-tree.json"),
        _check,
        name=lambda v: f"suite {v['cipher_suite']} leaves={len(v['leaves'])}",
        supported=suite_supported,
    )
    counter.assert_all_passed()


def test_used_keys_are_deleted_and_bounds_hold() -> None:
    tree = SecretTree(cipher_suite(1), b"\x07" * 32, 4)
    tree.key_nonce(2, RatchetType.APPLICATION, 3)
    with pytest.raises(MLSProtocolError):  # replay of a used generation
        tree.key_nonce(2, RatchetType.APPLICATION, 3)
    tree.key_nonce(2, RatchetType.APPLICATION, 1)  # skipped key retained once
    with pytest.raises(MLSProtocolError):
        tree.key_nonce(2, RatchetType.APPLICATION, 1)
    with pytest.raises(MLSProtocolError):
        tree.key_nonce(2, RatchetType.APPLICATION, 4 + MAX_FORWARD_GENERATIONS + 1)
    with pytest.raises(MLSProtocolError):
        tree.key_nonce(4, RatchetType.APPLICATION, 0)  # outside the tree


def test_staged_lookup_does_not_change_tree() -> None:
    tree = SecretTree(cipher_suite(1), b"\x07" * 32, 4)
    first = tree.stage_receive(1, RatchetType.HANDSHAKE, 0)
    again = tree.stage_receive(1, RatchetType.HANDSHAKE, 0)
    assert (first.key, first.nonce) == (again.key, again.nonce)
    tree.commit(first)
    sent = tree.stage_send(1, RatchetType.HANDSHAKE)
    assert sent.generation == 1
    assert "redacted" in repr(tree)
    assert first.key.hex() not in repr(first)
