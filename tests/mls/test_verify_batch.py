"""Leaf signatures checked as one batch, spread over worker processes when it is large
(issue 23 item 3: cryptography's Ed25519 verify holds the GIL, so threads would not help)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

import sealwire_mls.signatures as signatures
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.errors import MLSAuthenticationError, MLSDecodeError
from sealwire_mls.group import Group
from sealwire_mls.keypackage import LeafNode
from sealwire_mls.tree import RatchetTree
from sealwire_mls.welcome import MLSMessage

BATCH = 12


@pytest.fixture
def spread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Two worker processes; batches of 4 or more go to them. Stopped afterwards."""
    monkeypatch.setattr(signatures, "PARALLEL_VERIFY_MIN", 4)
    signatures.start_verify_pool(2)
    try:
        yield
    finally:
        signatures.shutdown_verify_pool()


def _signed(suite_id: int, n: int) -> list[tuple[bytes, bytes, bytes, bytes]]:
    suite = cipher_suite(suite_id)
    out = []
    for i in range(n):
        priv, pub = suite.signature_key_pair()
        content = b"leaf %d" % i
        out.append(
            (pub, b"LeafNodeTBS", content, suite.sign_with_label(priv, b"LeafNodeTBS", content))
        )
    return out


@pytest.mark.parametrize("suite_id", [1, 2])
def test_a_spread_batch_accepts_good_and_rejects_any_bad_signature(
    spread: None, suite_id: int
) -> None:
    suite = cipher_suite(suite_id)
    items = _signed(suite_id, BATCH)
    # the first, a middle and the last signature: each of the two workers' chunks
    for bad in (0, BATCH // 2, BATCH - 1):
        tampered = list(items)
        pub, label, content, sig = tampered[bad]
        tampered[bad] = (pub, label, content + b"!", sig)
        with pytest.raises(MLSAuthenticationError):
            suite.verify_many_with_label(tampered)
    broken_key = list(items)
    broken_key[-1] = (b"\x01" * 3, *broken_key[-1][1:])
    with pytest.raises(MLSAuthenticationError):
        suite.verify_many_with_label(broken_key)
    suite.verify_many_with_label(items)
    assert signatures.POOL.workers() == 2  # the workers did run


def test_a_join_verifies_the_leaves_over_the_workers(spread: None, member: Any) -> None:
    people = [member(1, b"m%d" % i) for i in range(BATCH)]
    first = people[0]
    alice = Group.create(
        1, b"g", first.leaf, encryption_priv=first.encryption_priv,
        signature_priv=first.signature_priv, random=os.urandom,
    )  # fmt: skip
    _, welcome = alice.commit(os.urandom, add=[p.key_package for p in people[1:]])
    alice.merge_pending_commit()
    assert welcome is not None
    last = people[-1]
    suite = cipher_suite(1)
    suite.signature_checks.forget()  # the creator's process saw these signatures verified
    joined = Group.join(
        MLSMessage.from_bytes(welcome).body, last.key_package, init_priv=last.init_priv,
        encryption_priv=last.encryption_priv, signature_priv=last.signature_priv,
    )  # fmt: skip
    assert joined.epoch_authenticator() == alice.epoch_authenticator()
    assert signatures.POOL.workers() == 2


def test_without_a_started_pool_a_large_batch_is_verified_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(signatures, "PARALLEL_VERIFY_MIN", 4)
    suite = cipher_suite(1)
    items = _signed(1, BATCH)
    pending = suite.start_verify_many(items)
    assert signatures.POOL.executor() is None and pending._futures == []
    pending.wait()
    pub, label, content, sig = items[3]
    with pytest.raises(MLSAuthenticationError):
        suite.verify_many_with_label([*items[:3], (pub, label, content, sig[::-1]), *items[4:]])


def test_a_killed_worker_leaves_the_batch_to_this_process(spread: None) -> None:
    executor = signatures.POOL.executor()
    assert executor is not None
    for pid in list(executor._processes):  # kill -9 the workers
        os.kill(pid, signal.SIGKILL)
    suite = cipher_suite(1)
    items = _signed(1, BATCH)
    suite.verify_many_with_label(items)
    pub, label, content, sig = items[-1]
    with pytest.raises(MLSAuthenticationError):
        suite.verify_many_with_label([*items[:-1], (pub, label, content + b"!", sig)])
    assert signatures.POOL.workers() == 0  # the broken pool was dropped


def _tree_of_a_group(member: Any) -> tuple[Group, bytes]:
    people = [member(1, b"m%d" % i) for i in range(BATCH)]
    first = people[0]
    alice = Group.create(
        1, b"g", first.leaf, encryption_priv=first.encryption_priv,
        signature_priv=first.signature_priv, random=os.urandom,
    )  # fmt: skip
    alice.commit(os.urandom, add=[p.key_package for p in people[1:]])
    alice.merge_pending_commit()
    cipher_suite(1).signature_checks.forget()  # as a joiner, which saw none verified
    return alice, alice.ratchet_tree().to_bytes()


def test_a_joiners_tree_sends_its_leaf_checks_out_while_it_is_being_decoded(
    spread: None, member: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signatures, "VERIFY_CHUNK", 2)
    alice, data = _tree_of_a_group(member)
    suite = cipher_suite(1)
    sent_during_decode: list[int] = []
    real_add = signatures.PendingVerification.add

    def add(self: signatures.PendingVerification, *item: bytes) -> None:
        real_add(self, *item)
        sent_during_decode.append(len(self._futures))

    monkeypatch.setattr(signatures.PendingVerification, "add", add)
    tree, checks = RatchetTree.decode_checking_leaves(suite, data, alice.group_id)
    assert sent_during_decode[-1] > 1  # jobs went to the workers before the last leaf was read
    tree.validate(alice.group_id, leaf_signatures=checks)
    assert tree.tree_hash() == alice.ratchet_tree().tree_hash()


@pytest.mark.parametrize("pool", [False, True])
def test_a_tampered_leaf_fails_the_checks_started_while_decoding(
    request: pytest.FixtureRequest, member: Any, pool: bool
) -> None:
    if pool:
        request.getfixturevalue("spread")
    # Leaves under blank parents: no parent hash covers them, only their signatures.
    leaves = [member(1, b"m%d" % i).leaf for i in range(BATCH)]
    leaves[-1] = attrs.evolve(leaves[-1], signature=leaves[-1].signature[::-1])
    nodes: list[LeafNode | None] = []
    for leaf in leaves:
        nodes += [leaf, None]
    data = RatchetTree.from_nodes(cipher_suite(1), nodes[:-1]).to_bytes()
    cipher_suite(1).signature_checks.forget()
    tree, checks = RatchetTree.decode_checking_leaves(cipher_suite(1), data, b"g")
    with pytest.raises(MLSAuthenticationError):
        tree.validate(b"g", leaf_signatures=checks)
    tree, checks = RatchetTree.decode_checking_leaves(
        cipher_suite(1), RatchetTree.from_nodes(cipher_suite(1), nodes[:-3]).to_bytes(), b"g"
    )
    tree.validate(b"g", leaf_signatures=checks)  # without the tampered leaf


def test_a_tree_that_fails_to_decode_cancels_the_checks_it_started(
    spread: None, member: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signatures, "VERIFY_CHUNK", 2)
    alice, data = _tree_of_a_group(member)
    cancelled: list[int] = []
    real_cancel = signatures.PendingVerification.cancel

    def cancel(self: signatures.PendingVerification) -> None:
        cancelled.append(len(self._futures))
        real_cancel(self)

    monkeypatch.setattr(signatures.PendingVerification, "cancel", cancel)
    with pytest.raises(MLSDecodeError):  # a trailing byte, read after every leaf
        RatchetTree.decode_checking_leaves(cipher_suite(1), data + b"\x00", alice.group_id)
    assert len(cancelled) == 1 and cancelled[0] > 1  # jobs had gone out, and were dropped
