"""Proposals sent by members and committed by another (RFC 9420 §12.1, §12.2, §12.4)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from sealwire_mls.errors import MLSProtocolError
from sealwire_mls.group import ApplicationMessage, CommitApplied, Group, ProposalReceived
from sealwire_mls.welcome import MLSMessage


def _deliver(message: bytes, groups: list[Group], sender: Group) -> list[Any]:
    return [g.process(message) for g in groups if g is not sender]


def _same(groups: list[Group]) -> None:
    for g in groups[1:]:
        assert g.epoch_authenticator() == groups[0].epoch_authenticator()


def test_own_update_committed_by_another_member(member: Any, group_of: Any) -> None:
    a, b, c = groups = group_of([b"alice", b"bob", b"carol"])[0]
    proposal = b.propose_update(os.urandom)
    events = _deliver(proposal, groups, b)
    assert all(isinstance(e, ProposalReceived) for e in events)
    commit, _ = a.commit(os.urandom)  # includes Bob's Update by reference
    a.merge_pending_commit()
    _deliver(commit, groups, a)
    _same(groups)
    # Bob's new leaf key works: messages flow after the next commit too.
    commit2, _ = c.commit(os.urandom)
    c.merge_pending_commit()
    _deliver(commit2, groups, c)
    _same(groups)
    got = a.process(b.encrypt(b"after update", os.urandom))
    assert isinstance(got, ApplicationMessage) and got.data == b"after update"


def test_remove_and_add_proposals_committed_by_reference(member: Any, group_of: Any) -> None:
    a, b, c = groups = group_of([b"alice", b"bob", b"carol"])[0]
    dave = member(1, b"dave")
    for message, sender in (
        (b.propose_remove(c.leaf_index), b),
        (b.propose_add(dave.key_package), b),
    ):
        _deliver(message, groups, sender)
    commit, welcome = a.commit(os.urandom)
    event = a.merge_pending_commit()
    assert event.removed == (c.leaf_index,) and len(event.added) == 1
    assert isinstance(b.process(commit), CommitApplied)
    gone = c.process(commit)
    assert isinstance(gone, CommitApplied) and gone.removed_me
    assert welcome is not None
    d = Group.join(MLSMessage.from_bytes(welcome).body, dave.key_package,
                   init_priv=dave.init_priv, encryption_priv=dave.encryption_priv,
                   signature_priv=dave.signature_priv)  # fmt: skip
    _same([a, b, d])


def test_val_12_2_committer_drops_conflicting_proposals(member: Any, group_of: Any) -> None:
    a, b, c = groups = group_of([b"alice", b"bob", b"carol"])[0]
    _deliver(b.propose_remove(c.leaf_index), groups, b)  # Remove Carol...
    _deliver(c.propose_update(os.urandom), groups, c)  # ...and Carol's Update: dropped
    _deliver(b.propose_remove(a.leaf_index), groups, b)  # Remove the committer: dropped
    commit, _ = a.commit(os.urandom, remove=[c.leaf_index])  # the same Remove by value
    assert a.merge_pending_commit().removed == (c.leaf_index,)
    b.process(commit)
    _same([a, b])


def test_commit_referencing_an_unknown_proposal_is_refused(member: Any, group_of: Any) -> None:
    a, b, c = group_of([b"alice", b"bob", b"carol"])[0]
    proposal = b.propose_update(os.urandom)
    a.process(proposal)  # Carol never saw it
    commit, _ = a.commit(os.urandom)
    a.merge_pending_commit()
    epoch = c.epoch
    with pytest.raises(MLSProtocolError, match="unknown proposal"):
        c.process(commit)
    assert c.epoch == epoch


def test_commit_without_path_where_allowed(member: Any, group_of: Any) -> None:
    a, b, c = groups = group_of([b"alice", b"bob", b"carol"])[0]
    dave = member(1, b"dave")
    commit, welcome = a.commit(os.urandom, add=[dave.key_package], path=False)
    a.merge_pending_commit()
    _deliver(commit, groups, a)
    assert welcome is not None
    d = Group.join(MLSMessage.from_bytes(welcome).body, dave.key_package,
                   init_priv=dave.init_priv, encryption_priv=dave.encryption_priv,
                   signature_priv=dave.signature_priv)  # fmt: skip
    _same([a, b, c, d])
    got = d.process(b.encrypt(b"pathless", os.urandom))
    assert isinstance(got, ApplicationMessage) and got.data == b"pathless"
    from sealwire_mls.errors import MLSLocalError

    with pytest.raises(MLSLocalError, match="UpdatePath"):
        a.commit(os.urandom, remove=[c.leaf_index], path=False)
