"""Issue item 6: random adds, external joins, removes and messages keep every member's epoch
authenticator and exporter secret equal; a removed member cannot open anything
sent afterwards, and a joiner cannot open anything sent before it joined."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealwire.errors import SealwireError
from sealwire_mls.group import ApplicationMessage, Group
from sealwire_mls.welcome import MLSMessage

STEPS = st.sampled_from(["add", "add", "remove", "send", "external"])
OPS = st.lists(st.tuples(STEPS, st.integers(0, 9)), min_size=2, max_size=8)


def _opens(group: Group, sealed: bytes) -> bool:
    try:
        return isinstance(group.process(sealed), ApplicationMessage)
    except SealwireError:
        return False


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(OPS)
def test_membership_changes_keep_secrets_where_they_belong(member: Any, ops) -> None:
    first = member(1, b"m0")
    groups = [
        Group.create(
            1,
            b"g",
            first.leaf,
            encryption_priv=first.encryption_priv,
            signature_priv=first.signature_priv,
            random=os.urandom,
        )
    ]
    removed: list[Group] = []
    history: list[bytes] = []  # every application message sent so far
    names = iter(range(1, 1000))
    for op, pick in ops:
        actor = groups[pick % len(groups)]
        if op == "send":
            sealed = actor.encrypt(b"secret %d" % len(history), os.urandom)
            history.append(sealed)
            assert all(_opens(g, sealed) for g in groups if g is not actor)
            assert not any(_opens(g, sealed) for g in removed)
            continue
        if op == "external":
            outsider = member(1, b"m%d" % next(names))
            new, commit = Group.join_external(actor.group_info(), outsider.leaf,
                                              signature_priv=outsider.signature_priv,
                                              random=os.urandom)  # fmt: skip
            for g in groups:
                g.process(commit)
            assert not any(_opens(new, old) for old in history)
            groups.append(new)
            _check_equal(groups, removed)
            continue
        others = [g for g in groups if g is not actor]
        joiner = None
        if op == "remove" and others:
            victim = others[pick % len(others)]
            commit, welcome = actor.commit(os.urandom, remove=[victim.leaf_index])
            groups.remove(victim)
            removed.append(victim)
        else:
            joiner = member(1, b"m%d" % next(names))
            commit, welcome = actor.commit(os.urandom, add=[joiner.key_package])
        actor.merge_pending_commit()
        for g in groups:
            if g is not actor:
                g.process(commit)
        if joiner is not None and welcome is not None:
            new = Group.join(
                MLSMessage.from_bytes(welcome).body,
                joiner.key_package,
                init_priv=joiner.init_priv,
                encryption_priv=joiner.encryption_priv,
                signature_priv=joiner.signature_priv,
            )
            assert not any(_opens(new, old) for old in history)
            groups.append(new)
        _check_equal(groups, removed)


def _check_equal(groups: list[Group], removed: list[Group]) -> None:
    reference = groups[0]
    for g in groups[1:]:
        assert g.epoch_authenticator() == reference.epoch_authenticator()
        assert g.export_secret(b"l", b"c", 32) == reference.export_secret(b"l", b"c", 32)
    for gone in removed:
        assert gone.export_secret(b"l", b"c", 32) != reference.export_secret(b"l", b"c", 32)
