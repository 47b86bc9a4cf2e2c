"""Proposals from non-members (RFC 9420 §12.1.8): external senders and new members."""

from __future__ import annotations

import os
from typing import Any

import pytest

from sealwire_mls.credentials import Credential
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.errors import MLSProtocolError
from sealwire_mls.extensions import ExternalSender, encode_external_senders
from sealwire_mls.framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    Sender,
    SenderType,
    WireFormat,
    protect_public,
)
from sealwire_mls.group import CommitApplied, Group, ProposalReceived
from sealwire_mls.proposals import Add, Proposal, Remove, Update
from sealwire_mls.welcome import MLSMessage

SUITE = cipher_suite(1)


def _from_outside(group: Group, sender: Sender, proposal: Proposal, sig_priv: bytes) -> bytes:
    """A PublicMessage proposal signed by a non-member (no membership tag, §6.2)."""
    content = FramedContent(
        group_id=group.group_id, epoch=group.epoch, sender=sender, authenticated_data=b"",
        content_type=ContentType.PROPOSAL, content=proposal,
    )  # fmt: skip
    ac = AuthenticatedContent.sign(
        SUITE, WireFormat.PUBLIC_MESSAGE, content, sig_priv, group.context
    )
    message = protect_public(SUITE, ac, group.context, None)
    return MLSMessage(WireFormat.PUBLIC_MESSAGE, message).to_bytes()


def _group_with_ds(member: Any) -> tuple[list[Group], bytes]:
    """Alice, Bob and Carol in a group whose ``external_senders`` names one service key."""
    ds_priv, ds_pub = SUITE.signature_key_pair()
    ext = encode_external_senders([ExternalSender(ds_pub, Credential.basic(b"ds"))])
    people = [member(1, name) for name in (b"alice", b"bob", b"carol")]
    a = Group.create(
        1, b"ds-group", people[0].leaf, encryption_priv=people[0].encryption_priv,
        signature_priv=people[0].signature_priv, random=os.urandom, extensions=(ext,),
    )  # fmt: skip
    _commit, welcome = a.commit(os.urandom, add=[p.key_package for p in people[1:]])
    a.merge_pending_commit()
    assert welcome is not None
    body = MLSMessage.from_bytes(welcome).body
    others = [
        Group.join(body, p.key_package, init_priv=p.init_priv,
                   encryption_priv=p.encryption_priv, signature_priv=p.signature_priv)
        for p in people[1:]
    ]  # fmt: skip
    return [a, *others], ds_priv


def test_external_sender_removes_a_member(member: Any) -> None:
    (a, b, c), ds_priv = _group_with_ds(member)
    proposal = _from_outside(a, Sender(SenderType.EXTERNAL, 0), Remove(b.leaf_index), ds_priv)
    for g in (a, b, c):
        event = g.process(proposal)
        assert (
            isinstance(event, ProposalReceived) and event.sender.sender_type is SenderType.EXTERNAL
        )
    commit, _ = a.commit(os.urandom)  # includes the service's Remove by reference
    assert a.merge_pending_commit().removed == (b.leaf_index,)
    seen = c.process(commit)
    assert isinstance(seen, CommitApplied) and seen.removed == (b.leaf_index,)
    gone = b.process(commit)
    assert isinstance(gone, CommitApplied) and gone.removed_me
    assert a.epoch_authenticator() == c.epoch_authenticator()


def test_val_12_1_8_1_unknown_external_sender_is_refused(member: Any) -> None:
    (a, b, _c), _ds_priv = _group_with_ds(member)
    stranger_priv, _ = SUITE.signature_key_pair()
    proposal = _from_outside(a, Sender(SenderType.EXTERNAL, 1), Remove(b.leaf_index), stranger_priv)
    with pytest.raises(MLSProtocolError, match="unknown external sender"):
        a.process(proposal)
    _commit, _ = a.commit(os.urandom)  # nothing was stored: an empty commit removes nobody
    assert a.merge_pending_commit().removed == ()


def test_val_12_1_8_1_external_sender_cannot_send_an_update(member: Any) -> None:
    (a, b, _c), ds_priv = _group_with_ds(member)
    leaf = a.ratchet_tree().leaf(b.leaf_index)
    assert leaf is not None
    proposal = _from_outside(a, Sender(SenderType.EXTERNAL, 0), Update(leaf), ds_priv)
    with pytest.raises(MLSProtocolError, match="external sender cannot"):
        a.process(proposal)


def test_new_member_proposes_to_add_itself(member: Any, group_of: Any) -> None:
    a, b = group_of([b"alice", b"bob"])[0]
    dave = member(1, b"dave")
    sender = Sender(SenderType.NEW_MEMBER_PROPOSAL)
    proposal = _from_outside(a, sender, Add(dave.key_package), dave.signature_priv)
    assert isinstance(b.process(proposal), ProposalReceived)
    a.process(proposal)
    commit, welcome = b.commit(os.urandom)
    b.merge_pending_commit()
    a.process(commit)
    assert welcome is not None
    d = Group.join(MLSMessage.from_bytes(welcome).body, dave.key_package,
                   init_priv=dave.init_priv, encryption_priv=dave.encryption_priv,
                   signature_priv=dave.signature_priv)  # fmt: skip
    assert d.epoch_authenticator() == a.epoch_authenticator() == b.epoch_authenticator()


def test_val_12_1_8_2_new_member_may_only_add_itself(member: Any, group_of: Any) -> None:
    a, _b = group_of([b"alice", b"bob"])[0]
    dave = member(1, b"dave")
    sender = Sender(SenderType.NEW_MEMBER_PROPOSAL)
    proposal = _from_outside(a, sender, Remove(0), dave.signature_priv)
    with pytest.raises(MLSProtocolError, match="only propose to add"):
        a.process(proposal)
