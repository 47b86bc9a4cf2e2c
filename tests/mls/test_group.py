"""The Group state machine (RFC 9420 §11-§12) in an in-memory group harness."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealwire_mls.errors import (
    MLSAuthenticationError,
    MLSDecodeError,
    MLSProtocolError,
    MLSStateError,
)
from sealwire_mls.group import ApplicationMessage, CommitApplied, Group
from sealwire_mls.welcome import MLSMessage


def _create(member: Any, suite_id: int = 1) -> Group:
    alice = member(suite_id, b"alice")
    return Group.create(
        suite_id, b"group-1", alice.leaf, encryption_priv=alice.encryption_priv,
        signature_priv=alice.signature_priv, random=os.urandom,
    )  # fmt: skip


def _join(welcome: bytes, m: Any) -> Group:
    return Group.join(
        MLSMessage.from_bytes(welcome).body, m.key_package, init_priv=m.init_priv,
        encryption_priv=m.encryption_priv, signature_priv=m.signature_priv,
    )  # fmt: skip


def _same_epoch(*groups: Group) -> None:
    first = groups[0]
    for g in groups[1:]:
        assert g.epoch == first.epoch
        assert g.epoch_authenticator() == first.epoch_authenticator()
        assert g.export_secret(b"test", b"ctx", 32) == first.export_secret(b"test", b"ctx", 32)


@pytest.mark.parametrize("suite_id", [1, 2, 3])
def test_add_message_remove(member: Any, suite_id: int) -> None:
    alice = _create(member, suite_id)
    bob, carol = member(suite_id, b"bob"), member(suite_id, b"carol")
    commit, welcome = alice.commit(os.urandom, add=[bob.key_package])
    assert alice.epoch == 0  # staged only
    assert alice.merge_pending_commit().added == (1,)
    assert welcome is not None
    b = _join(welcome, bob)
    _same_epoch(alice, b)
    commit, welcome = b.commit(os.urandom, add=[carol.key_package])
    b.merge_pending_commit()
    event = alice.process(commit)
    assert isinstance(event, CommitApplied) and event.added == (2,)
    assert welcome is not None
    c = _join(welcome, carol)
    _same_epoch(alice, b, c)
    sealed = c.encrypt(b"hello group", os.urandom, b"meta")
    for g in (alice, b):
        got = g.process(sealed)
        assert got == ApplicationMessage(sender=2, data=b"hello group", authenticated_data=b"meta")
    commit, _ = c.commit(os.urandom, remove=[1])
    c.merge_pending_commit()
    assert alice.process(commit) == CommitApplied(committer=2, epoch=3, added=(), removed=(1,))
    gone = b.process(commit)
    assert isinstance(gone, CommitApplied) and gone.removed_me and not b.active
    _same_epoch(alice, c)
    with pytest.raises(MLSStateError):
        b.encrypt(b"x", os.urandom)


def test_tampered_commit_changes_nothing(member: Any) -> None:
    alice = _create(member)
    bob, carol = member(1, b"bob"), member(1, b"carol")
    _, welcome = alice.commit(os.urandom, add=[bob.key_package])
    alice.merge_pending_commit()
    assert welcome is not None
    b = _join(welcome, bob)
    commit, _ = alice.commit(os.urandom, add=[carol.key_package])
    before = b.epoch_authenticator()
    for index in range(0, len(commit), max(1, len(commit) // 40)):
        tampered = bytearray(commit)
        tampered[index] ^= 0x01
        with pytest.raises((MLSDecodeError, MLSAuthenticationError, MLSProtocolError)):
            b.process(bytes(tampered))
        assert b.epoch == 1 and b.epoch_authenticator() == before
    alice.merge_pending_commit()
    b.process(commit)
    _same_epoch(alice, b)


def test_replayed_application_message_is_rejected(member: Any) -> None:
    alice = _create(member)
    bob = member(1, b"bob")
    _, welcome = alice.commit(os.urandom, add=[bob.key_package])
    alice.merge_pending_commit()
    assert welcome is not None
    b = _join(welcome, bob)
    sealed = alice.encrypt(b"once", os.urandom)
    assert isinstance(b.process(sealed), ApplicationMessage)
    with pytest.raises(MLSProtocolError):
        b.process(sealed)
    with pytest.raises(MLSStateError):
        alice.merge_pending_commit()
    assert "redacted" in repr(alice)


# ``member`` is a pure factory, so sharing it across examples is safe.
@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.sampled_from(["add", "remove", "send"]), st.integers(0, 7)),
                min_size=1, max_size=6))  # fmt: skip
def test_random_operations_keep_members_in_sync(member: Any, ops: list[tuple[str, int]]) -> None:
    make_member = member
    groups = [_create(make_member)]
    names = iter(range(1000))
    for op, pick in ops:
        actor = groups[pick % len(groups)]
        if op == "send":
            sealed = actor.encrypt(b"msg", os.urandom)
            for g in groups:
                if g is not actor:
                    assert g.process(sealed).data == b"msg"  # type: ignore[union-attr]
            continue
        new = make_member(1, b"m%d" % next(names))
        others = [g for g in groups if g is not actor]
        if op == "remove" and others:
            victim = others[pick % len(others)]
            commit, welcome = actor.commit(os.urandom, remove=[victim.leaf_index])
            groups.remove(victim)
        else:
            commit, welcome = actor.commit(os.urandom, add=[new.key_package])
        actor.merge_pending_commit()
        for g in groups:
            if g is not actor:
                g.process(commit)
        if welcome is not None:
            groups.append(_join(welcome, new))
        _same_epoch(*groups)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_leave_the_group_unchanged(member: Any, data: bytes) -> None:
    group = _GROUP.get("g") or _GROUP.setdefault("g", _create(member))
    before = (group.epoch, group.epoch_authenticator())
    with pytest.raises((MLSDecodeError, MLSProtocolError, MLSAuthenticationError)):
        group.process(data)
    assert (group.epoch, group.epoch_authenticator()) == before


_GROUP: dict[str, Group] = {}  # one group shared by the examples above (creation is costly)
