"""Leaf signatures checked as one batch, spread over worker processes when it is large
(issue 23 item 3: cryptography's Ed25519 verify holds the GIL, so threads would not help)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

import sealwire_mls.crypto as crypto
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.errors import MLSAuthenticationError
from sealwire_mls.group import Group
from sealwire_mls.welcome import MLSMessage

BATCH = 12


@pytest.fixture
def spread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Two worker processes; batches of 4 or more go to them. Stopped afterwards."""
    monkeypatch.setattr(crypto, "PARALLEL_VERIFY_MIN", 4)
    crypto.start_verify_pool(2)
    try:
        yield
    finally:
        crypto.shutdown_verify_pool()


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
    assert crypto._POOL.workers() == 2  # the workers did run


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
    suite._verified._data.clear()  # the creator's process saw these signatures verified
    joined = Group.join(
        MLSMessage.from_bytes(welcome).body, last.key_package, init_priv=last.init_priv,
        encryption_priv=last.encryption_priv, signature_priv=last.signature_priv,
    )  # fmt: skip
    assert joined.epoch_authenticator() == alice.epoch_authenticator()
    assert crypto._POOL.workers() == 2


def test_without_a_started_pool_a_large_batch_is_verified_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(crypto, "PARALLEL_VERIFY_MIN", 4)
    suite = cipher_suite(1)
    items = _signed(1, BATCH)
    pending = suite.start_verify_many(items)
    assert crypto._POOL.executor() is None and pending._futures == []
    pending.wait()
    pub, label, content, sig = items[3]
    with pytest.raises(MLSAuthenticationError):
        suite.verify_many_with_label([*items[:3], (pub, label, content, sig[::-1]), *items[4:]])


def test_a_killed_worker_leaves_the_batch_to_this_process(spread: None) -> None:
    executor = crypto._POOL.executor()
    assert executor is not None
    for pid in list(executor._processes):  # kill -9 the workers
        os.kill(pid, signal.SIGKILL)
    suite = cipher_suite(1)
    items = _signed(1, BATCH)
    suite.verify_many_with_label(items)
    pub, label, content, sig = items[-1]
    with pytest.raises(MLSAuthenticationError):
        suite.verify_many_with_label([*items[:-1], (pub, label, content + b"!", sig)])
    assert crypto._POOL.workers() == 0  # the broken pool was dropped
