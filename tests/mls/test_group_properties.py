"""Issue item 6 as a Hypothesis state machine over several members (RFC 9420 §8, §12).

Random adds, removes, Updates (by commit path and by proposal), external joins and
application messages. After every step all members hold the same epoch
authenticator and exporter secret; a removed member can neither open later
application messages nor process later commits; a joiner cannot open messages
of epochs before it joined; an echoed message of our own is recognised.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from sealwire.errors import SealwireError
from sealwire_mls.group import ApplicationMessage, Group, OwnMessage
from sealwire_mls.welcome import MLSMessage

#: Members at most: keeps each example (and the whole mls folder) fast.
MAX_MEMBERS = 5
PICK = st.integers(0, 99)


def _opens(group: Group, sealed: bytes) -> bool:
    try:
        return isinstance(group.process(sealed), ApplicationMessage)
    except SealwireError:
        return False


class GroupLife(RuleBasedStateMachine):
    """Members of one group; ``make_member`` is the conftest factory, set by the test."""

    make_member: Callable[[int, bytes], Any]

    def __init__(self) -> None:
        super().__init__()
        first = self.make_member(1, b"m0")
        creator = Group.create(
            1, b"g", first.leaf, encryption_priv=first.encryption_priv,
            signature_priv=first.signature_priv, random=os.urandom,
        )  # fmt: skip
        self.groups = [creator]
        self.removed: list[Group] = []
        self.history: list[bytes] = []  # every application message sent so far
        self.names = iter(range(1, 10_000))

    def _actor(self, pick: int) -> Group:
        return self.groups[pick % len(self.groups)]

    def _deliver(self, commit: bytes, sender: Group) -> None:
        sender.merge_pending_commit()
        for g in self.groups:
            if g is not sender:
                g.process(commit)
        for gone in self.removed:  # removed members cannot follow later commits
            before = gone.epoch
            with pytest.raises(SealwireError):
                gone.process(commit)
            assert gone.epoch == before and not gone.active

    def _welcome(self, welcome: bytes | None, joiner: Any) -> None:
        assert welcome is not None
        new = Group.join(
            MLSMessage.from_bytes(welcome).body, joiner.key_package, init_priv=joiner.init_priv,
            encryption_priv=joiner.encryption_priv, signature_priv=joiner.signature_priv,
        )  # fmt: skip
        self._joined(new)

    def _joined(self, new: Group) -> None:
        assert not any(_opens(new, old) for old in self.history)
        self.groups.append(new)

    @precondition(lambda self: len(self.groups) < MAX_MEMBERS)
    @rule(pick=PICK)
    def add(self, pick: int) -> None:
        actor, joiner = self._actor(pick), self.make_member(1, b"m%d" % next(self.names))
        commit, welcome = actor.commit(os.urandom, add=[joiner.key_package])
        self._deliver(commit, actor)
        self._welcome(welcome, joiner)

    @precondition(lambda self: len(self.groups) > 1)
    @rule(pick=PICK, victim=PICK)
    def remove(self, pick: int, victim: int) -> None:
        actor = self._actor(pick)
        others = [g for g in self.groups if g is not actor]
        gone = others[victim % len(others)]
        commit, _ = actor.commit(os.urandom, remove=[gone.leaf_index])
        actor.merge_pending_commit()
        for g in self.groups:
            if g is not actor:
                g.process(commit)
        assert not gone.active
        self.groups.remove(gone)
        self.removed.append(gone)

    @rule(pick=PICK)
    def update_by_commit(self, pick: int) -> None:
        actor = self._actor(pick)
        commit, _ = actor.commit(os.urandom)  # an empty commit: a path refreshing our keys
        self._deliver(commit, actor)

    @precondition(lambda self: len(self.groups) > 1)
    @rule(pick=PICK, by=PICK)
    def update_by_proposal(self, pick: int, by: int) -> None:
        proposer = self._actor(pick)
        proposal = proposer.propose_update(os.urandom)
        for g in self.groups:
            if g is not proposer:
                g.process(proposal)
        others = [g for g in self.groups if g is not proposer]
        committer = others[by % len(others)]
        commit, _ = committer.commit(os.urandom)  # takes the Update by reference
        self._deliver(commit, committer)

    @precondition(lambda self: len(self.groups) < MAX_MEMBERS)
    @rule(pick=PICK)
    def external_join(self, pick: int) -> None:
        outsider = self.make_member(1, b"m%d" % next(self.names))
        new, commit = Group.join_external(
            self._actor(pick).group_info(), outsider.leaf,
            signature_priv=outsider.signature_priv, random=os.urandom,
        )  # fmt: skip
        for g in self.groups:
            g.process(commit)
        self._joined(new)

    @rule(pick=PICK)
    def send(self, pick: int) -> None:
        actor = self._actor(pick)
        sealed = actor.encrypt(b"secret %d" % len(self.history), os.urandom)
        self.history.append(sealed)
        assert actor.process(sealed) == OwnMessage("application")  # a delivery echo
        assert all(_opens(g, sealed) for g in self.groups if g is not actor)
        assert not any(_opens(g, sealed) for g in self.removed)

    @invariant()
    def secrets_agree(self) -> None:
        reference = self.groups[0]
        exported = reference.export_secret(b"l", b"c", 32)
        for g in self.groups[1:]:
            assert g.epoch == reference.epoch
            assert g.epoch_authenticator() == reference.epoch_authenticator()
            assert g.export_secret(b"l", b"c", 32) == exported
        for gone in self.removed:
            assert gone.export_secret(b"l", b"c", 32) != exported


def test_group_life_keeps_secrets_where_they_belong(member: Any) -> None:
    GroupLife.make_member = staticmethod(member)
    run_state_machine_as_test(
        GroupLife, settings=settings(max_examples=30, stateful_step_count=10, deadline=None)
    )
