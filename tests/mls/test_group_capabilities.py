"""Required capabilities (RFC 9420 §11.1, §12.4.3.1) and delivery-service echoes of our
own messages."""

from __future__ import annotations

import os
from typing import Any

import attrs
import pytest

from sealwire_mls import applying
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.errors import MLSProtocolError
from sealwire_mls.extensions import RequiredCapabilities
from sealwire_mls.group import CommitApplied, Group, OwnMessage, ProposalReceived
from sealwire_mls.keypackage import KeyPackage
from sealwire_mls.welcome import MLSMessage

CUSTOM_PROPOSAL = 0x0A0A  # a private-use proposal type (§17.4) the group requires


def _capable(m: Any) -> Any:
    """``m`` with a KeyPackage whose leaf also supports :data:`CUSTOM_PROPOSAL`."""
    suite = cipher_suite(1)
    caps = attrs.evolve(m.leaf.capabilities, proposals=(CUSTOM_PROPOSAL,))
    leaf = attrs.evolve(m.leaf, capabilities=caps).sign(suite, m.signature_priv)
    kp = KeyPackage(cipher_suite=1, init_key=m.key_package.init_key, leaf_node=leaf)
    return attrs.evolve(m, key_package=kp.sign(suite, m.signature_priv))


def _demanding_group(member: Any) -> Group:
    alice = _capable(member(1, b"alice"))
    required = RequiredCapabilities(proposal_types=(CUSTOM_PROPOSAL,)).to_extension()
    return Group.create(
        1, b"demanding", alice.leaf, encryption_priv=alice.encryption_priv,
        signature_priv=alice.signature_priv, random=os.urandom, extensions=(required,),
    )  # fmt: skip


def _join(welcome: bytes | None, m: Any) -> Group:
    assert welcome is not None
    return Group.join(
        MLSMessage.from_bytes(welcome).body, m.key_package, init_priv=m.init_priv,
        encryption_priv=m.encryption_priv, signature_priv=m.signature_priv,
    )  # fmt: skip


def test_val_11_1_add_of_a_capable_member(member: Any) -> None:
    a, bob = _demanding_group(member), _capable(member(1, b"bob"))
    _commit, welcome = a.commit(os.urandom, add=[bob.key_package])
    a.merge_pending_commit()
    assert _join(welcome, bob).epoch_authenticator() == a.epoch_authenticator()


def test_val_11_1_add_lacking_a_required_capability_is_refused(member: Any) -> None:
    a = _demanding_group(member)
    with pytest.raises(MLSProtocolError):
        a.commit(os.urandom, add=[member(1, b"bob").key_package])
    assert a.epoch == 0


def test_val_11_1_joiner_refuses_a_group_it_cannot_support(
    member: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, bob = _demanding_group(member), member(1, b"bob")
    # A committer that skips its own §7.3 check: the joiner must still refuse.
    monkeypatch.setattr(applying.GroupLeaves, "check", lambda *args, **kw: None)
    _commit, welcome = a.commit(os.urandom, add=[bob.key_package])
    with pytest.raises(MLSProtocolError, match=r"VAL-11\.1"):
        _join(welcome, bob)


def test_echo_of_our_own_messages_changes_nothing(group_of: Any) -> None:
    a, b = group_of([b"alice", b"bob"])[0]
    sealed = a.encrypt(b"hello", os.urandom)
    assert a.process(sealed) == OwnMessage("application")
    assert b.process(sealed).data == b"hello"
    proposal = a.propose_remove(b.leaf_index)
    assert a.process(proposal) == OwnMessage("proposal")
    assert isinstance(b.process(proposal), ProposalReceived)
    commit, _ = a.commit(os.urandom)
    assert a.process(commit) == OwnMessage("commit")
    assert a.epoch == 1  # the echo did not apply the commit ...
    assert isinstance(a.merge_pending_commit(), CommitApplied)  # ... merging does
    gone = b.process(commit)
    assert isinstance(gone, CommitApplied) and gone.removed_me


def test_someone_elses_copy_of_a_message_is_not_an_echo(group_of: Any) -> None:
    a, b, c = group_of([b"alice", b"bob", b"carol"])[0]
    sealed = b.encrypt(b"hi", os.urandom)
    assert c.process(sealed).data == b"hi"
    with pytest.raises(MLSProtocolError):  # a second copy is a replay (§6.3.2 reuse guard)
        c.process(sealed)
    assert a.process(sealed).data == b"hi"
